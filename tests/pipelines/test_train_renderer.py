"""`talkclip train-renderer` on the mini TA-MEAD (real fixture media, tar members included) and
`talkclip generate --renderer DIR` with its checkpoint (issue 5)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from talkclip import InputError
from talkclip.pipelines.train_renderer import load_renderer_data, make_batch, media_ref

from support import FACES, SPEECH, cached_mini_build

TALKCLIP = [sys.executable, "-c", "from talkclip.cli import app; app()"]


def _cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(TALKCLIP + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def mini(landmarker):
    return cached_mini_build()


def test_media_ref_reads_paths_and_tar_members(tmp_path):
    ref = media_ref("W001/video.tar::video/front/happy/level_1/001.mp4", tmp_path)
    assert ref.path == str(tmp_path / "W001/video.tar") and ref.member == "video/front/happy/level_1/001.mp4"
    assert media_ref("M001/video/front/x.mp4", tmp_path).member is None


def test_load_renderer_data_on_mini_build(mini):
    facts, build = mini
    data = load_renderer_data(build, size=64, split="all", frame_stride=2)
    ids = [c.clip_id for c in data.clips]
    assert sorted(ids) == sorted(facts["expected_ok"]) and not data.failures
    assert any(cid.startswith(facts["tar_speaker"]) for cid in ids), "clips read from tar members"
    for c in data.clips:
        T = c.bs.shape[0]
        assert c.crops.shape == (len(c.keep), 64, 64, 3) and c.crops.dtype == np.uint8
        assert c.bs.shape == (T, 52) and c.pose.shape == (T, 4, 4) and c.keep.max() < T
        assert np.all(np.diff(c.keep) == 2) or len(c.keep) == 1
        assert c.crops.std() > 10, "crops show an image, not a flat fill"
    s, m, t = make_batch(data, 3, window=2, seed=0, step=5)
    assert s.shape == t.shape == (3, 3, 64, 64) and m.shape == (3, 110, 5)
    s2, m2, t2 = make_batch(data, 3, window=2, seed=0, step=5)
    assert np.array_equal(m.numpy(), m2.numpy()) and np.array_equal(s.numpy(), s2.numpy())
    assert not np.array_equal(m.numpy(), make_batch(data, 3, window=2, seed=0, step=6)[1].numpy())
    # split filter: the train split holds only the train speakers' clips
    train = load_renderer_data(build, size=64, split="train", frame_stride=8)
    assert 0 < len(train.clips) < len(data.clips)


def test_mead_root_resolution(mini, tmp_path):
    facts, build = mini
    copy = tmp_path / "build"
    shutil.copytree(build, copy, ignore=shutil.ignore_patterns("*.lock"))
    shutil.rmtree(copy / ".work")
    with pytest.raises(InputError, match="pass --mead"):
        load_renderer_data(copy, size=64, split="all")
    data = load_renderer_data(copy, size=64, split="all", frame_stride=8, mead=facts["root"], max_clips=2)
    assert len(data.clips) == 2
    with pytest.raises(InputError, match="--mead folder not found"):
        load_renderer_data(copy, size=64, mead=tmp_path / "nope")


def test_train_renderer_cli_then_generate(mini, tmp_path):
    import torch

    from talkclip.annotate.media import iter_frames, load_audio
    from talkclip.model.checkpoint import save_checkpoint
    from talkclip.model.config import load_config
    from talkclip.model.talkclip import TalkCLIP

    _, build = mini
    out = tmp_path / "renderer"
    r = _cli("train-renderer", "--data", build, "--config", "renderer-tiny", "--out", out, "--steps", 4,
             "--batch-size", 2, "--split", "all", "--threads", 1, "--seed", 1)
    assert r.returncode == 0, r.stderr
    assert {"model.safetensors", "config.json", "optimizer.safetensors", "trainer_state.json",
            "renderer_log.csv", "renderer_log.png"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 4
    # --resume continues to a later step and appends to the log
    r = _cli("train-renderer", "--data", build, "--out", out, "--steps", 10, "--resume", "--split", "all",
             "--threads", 1)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 10
    with open(out / "renderer_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(x["step"]) for x in rows] == [4, 10] and all(float(x["l1"]) > 0 for x in rows)

    torch.manual_seed(0)
    tiny = save_checkpoint(TalkCLIP(load_config("tiny")), tmp_path / "talkclip")
    mp4 = tmp_path / "neural.mp4"
    r = _cli("generate", "--checkpoint", tiny, "--image", FACES / "smile.jpg", "--audio", SPEECH / "hello_en.wav",
             "--text", "a man smiling", "--out", mp4, "--renderer", out, "--threads", 1)
    assert r.returncode == 0, r.stderr
    frames = [f.rgb for f in iter_frames(mp4)]
    audio_s = len(load_audio(SPEECH / "hello_en.wav")) / 16_000
    assert frames[0].shape == (256, 256, 3) and abs(len(frames) / 25 - audio_s) <= 1 / 25 + 1e-6
    # the neural renderer drew them: a 64 px network output upsampled to 256 px is far less
    # detailed than the same face cropped at 256 px by the rig renderer
    from talkclip.annotate.media import load_image
    from talkclip.model.renderer import Renderer

    rig_crop = (Renderer().prepare(load_image(FACES / "smile.jpg")).src[0].permute(1, 2, 0).numpy() * 255)
    assert _detail(frames[0]) * 4 < _detail(rig_crop), (_detail(frames[0]), _detail(rig_crop))


def _detail(rgb) -> float:
    """Variance of the Laplacian of the grey image (top-left 200 px, away from the watermark)."""
    g = np.asarray(rgb, float).mean(2)[:200, :200]
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


def test_renderer_resume_equals_a_straight_run(mini, tmp_path):
    """train-renderer on the shared loop: 2 steps + resume to 4 == 4 straight steps, bit for bit
    (weights and log), through the same checkpoint writer as TalkCLIP's."""
    import torch

    from talkclip import ConfigError
    from talkclip.model.neural_renderer import load_renderer
    from talkclip.pipelines.train_renderer import train_renderer

    _, build = mini
    kw = dict(split="all", max_clips=2, frame_stride=8, batch_size=2, seed=3, log_every=1, threads=1)
    train_renderer(build, "renderer-tiny", tmp_path / "a", steps=4, **kw)
    train_renderer(build, "renderer-tiny", tmp_path / "b", steps=2, **kw)
    state = json.loads((tmp_path / "b" / "trainer_state.json").read_text())
    assert state["kind"] == "neural-renderer" and state["step"] == 2 and "opt" in state["optimizers"]
    with pytest.raises(ConfigError, match="differs from the checkpoint's at edit_channels"):
        train_renderer(build, "renderer-base", tmp_path / "b", steps=4, resume=True, **kw)
    s = train_renderer(build, None, tmp_path / "b", steps=4, resume=True, **kw)
    assert (s.start_step, s.steps, s.clips) == (2, 4, 2)
    a, b = load_renderer(tmp_path / "a").state_dict(), load_renderer(tmp_path / "b").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "a" / LOG) as fa, open(tmp_path / "b" / LOG) as fb:
        rows_a, rows_b = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    assert [r["step"] for r in rows_b] == ["1", "2", "3", "4"]
    assert [r["total"] for r in rows_a] == [r["total"] for r in rows_b]


LOG = "renderer_log.csv"


def test_bad_inputs_exit_2(tmp_path):
    r = _cli("train-renderer", "--data", tmp_path / "missing", "--config", "renderer-tiny", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "data folder not found" in r.stderr
    assert "Traceback" not in r.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    r = _cli("generate", "--checkpoint", tmp_path / "no-talkclip", "--image", FACES / "smile.jpg",
             "--audio", SPEECH / "hello_en.wav", "--text", "a man", "--out", tmp_path / "x.mp4", "--renderer", bad)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "corrupt" in r.stderr and "Traceback" not in r.stderr


def test_stored_landmarks_give_the_same_crops_as_a_retrack(mini, tmp_path, monkeypatch):
    """A build made with --landmarks is cropped from its stored landmarks (no re-tracking); the
    crops match the re-tracked ones of the plain build to within the trackers' jitter."""
    from talkclip.pipelines.build_ta_mead import build_ta_mead

    facts, build = mini
    lm_build = tmp_path / "lm"
    build_ta_mead(facts["root"], lm_build, speakers=["W001"], landmarks=True, jobs=1)
    import talkclip.annotate.tracker as tracker_mod

    class NoTracking:
        def __init__(self, *a, **k):
            raise AssertionError("a build with landmarks must not be re-tracked")

    with monkeypatch.context() as mp:
        mp.setattr(tracker_mod, "FaceTracker", NoTracking)
        with_lm = load_renderer_data(lm_build, size=64, split="all", frame_stride=8)
    retracked = {c.clip_id: c for c in load_renderer_data(build, size=64, split="all", frame_stride=8).clips}
    assert with_lm.clips and all(c.clip_id.startswith("W001") for c in with_lm.clips)
    for c in with_lm.clips:
        other = retracked[c.clip_id]
        assert np.array_equal(c.keep, other.keep)
        diff = np.abs(c.crops.astype(int) - other.crops.astype(int)).mean()
        assert diff < 12, f"{c.clip_id}: crops differ by {diff:.1f} grey levels on average"
