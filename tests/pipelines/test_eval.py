"""`talkclip eval` metrics on real fixture videos."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from talkclip import InputError
from talkclip.annotate.au import load_au_table
from talkclip.annotate.media import iter_frames
from talkclip.pipelines.evaluate import cpbd, evaluate, luma, parse_au_phrases, ssim
from talkclip.schemas import AU_IDS

from support import FACES

TALKCLIP = [sys.executable, "-c", "from talkclip.cli import app; app()"]


def _cli(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(TALKCLIP + list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_ssim_and_cpbd_behave(fixtures):
    frame = luma(next(iter_frames(FACES / "talking_pexels.mp4")).rgb)
    noisy = np.clip(frame + np.random.default_rng(0).normal(0, 25, frame.shape), 0, 255)
    s = ssim(np.stack([frame, frame]), np.stack([frame, noisy]))
    assert s[0] == pytest.approx(1.0, abs=1e-6) and s[1] < 0.6
    import cv2

    blurred = cv2.GaussianBlur(frame, (0, 0), 2.5)
    sharp, soft = cpbd(frame), cpbd(blurred)
    assert 0 <= soft < sharp <= 1, (sharp, soft)
    assert np.isnan(cpbd(np.full((128, 128), 90.0)))  # no edges at all


def test_au_phrases_round_trip_through_the_table():
    table = load_au_table()
    for au in AU_IDS:
        for level in (1, 2, 3):
            for seed in (0, 1):
                phrase = table.phrase(au, level, random.Random(seed))
                assert parse_au_phrases(f"A woman speaks, {phrase}.", table) == {au: level}, phrase
    assert parse_au_phrases("a calm person talking") == {}


def test_video_against_itself_and_another(fixtures, landmarker):
    same = evaluate(FACES / "single_face.mp4", FACES / "single_face.mp4",
                    text="a man with lip corners pulled and inner brows slightly raised")
    p = same.pairs[0]
    assert p.frames == 72 and p.lmd_frames == 72
    assert p.ssim > 0.999 and p.f_lmd < 1e-4 and p.m_lmd < 1e-4
    assert 0 < p.cpbd <= 1 and p.cpbd == pytest.approx(p.cpbd_reference)
    assert p.style_aus == {12: 2, 1: 1} and 0 <= p.style_score <= 1
    assert any("SyncNet" in n for n in same.notes)
    other = evaluate(FACES / "single_face.mp4", FACES / "talking_pexels.mp4").pairs[0]
    assert other.frames == 72  # paired by index up to the shorter video
    assert other.ssim < p.ssim - 0.2 and other.f_lmd > 0.03 and other.m_lmd > 0.03
    assert other.style_score is None


def test_cli_folders_paired_by_name_json(tmp_path, landmarker):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    shutil.copy(FACES / "single_face.mp4", gen / "a.mp4")
    shutil.copy(FACES / "single_face.mp4", ref / "a.mp4")
    shutil.copy(FACES / "single_face.mp4", gen / "only_here.mp4")
    r = _cli("eval", "--generated", str(gen), "--reference", str(ref), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [p["name"] for p in data["pairs"]] == ["a.mp4"]
    assert data["mean"]["ssim"] > 0.999


@pytest.mark.parametrize("case", ["missing", "no_common", "not_video", "syncnet"])
def test_cli_bad_input_exit_2(tmp_path, case, landmarker):
    gen = ref = FACES / "single_face.mp4"
    extra = []
    if case == "missing":
        gen = tmp_path / "nope.mp4"
    elif case == "no_common":
        (tmp_path / "g").mkdir()
        (tmp_path / "r").mkdir()
        shutil.copy(FACES / "single_face.mp4", tmp_path / "g" / "x.mp4")
        gen, ref = tmp_path / "g", tmp_path / "r"
    elif case == "not_video":
        gen = tmp_path / "junk.mp4"
        gen.write_bytes(b"\x00" * 3000)
    else:
        (tmp_path / "w.bin").write_bytes(b"weights")
        extra = ["--syncnet", str(tmp_path / "w.bin")]
    r = _cli("eval", "--generated", str(gen), "--reference", str(ref), *extra, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr, r.stderr


def test_mixed_file_and_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="both be files or both be folders"):
        evaluate(FACES / "single_face.mp4", tmp_path)


# ---- SyncNet (issue 5): random-init weights; the released ones are not available here ----

def _random_syncnet(path):
    import torch
    from safetensors.torch import save_file

    from talkclip.model.syncnet import SyncNet

    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in SyncNet().state_dict().items()}, str(path))
    return path


def test_syncnet_resampling_and_crop():
    from talkclip.pipelines.evaluate import resample_indices, syncnet_crop

    idx = resample_indices(np.arange(72) * 1000 / 30)              # 2.4 s at 30 fps -> 60 frames
    assert len(idx) == 60 and idx[0] == 0 and idx[-1] == 71 and (np.diff(idx) >= 1).all()
    assert list(idx[:6]) == [0, 1, 2, 4, 5, 6]                      # nearest frame to k * 40 ms
    assert resample_indices(np.arange(50) * 40).tolist() == list(range(50))
    assert len(resample_indices(np.arange(20) * 1000 / 12.5)) == 40  # 12.5 fps: every frame twice
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[..., 0] = 255                                               # pure red RGB frame
    crop = syncnet_crop(rgb, cx=100, cy=50, s=20)                  # rows 30..86, cols 72..128: inside
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert (crop[..., 2] == 255).all() and (crop[..., :2] == 0).all()  # BGR
    edge = syncnet_crop(rgb, cx=10, cy=90, s=20)                   # runs off the left and bottom
    assert (edge[-5:, :, 0] == 110).all() and (edge[:5, -5:, 2] == 255).all()


def test_syncnet_needs_a_face(fixtures, landmarker):
    from talkclip import NoFaceError
    from talkclip.pipelines.evaluate import syncnet_crops

    with pytest.raises(NoFaceError):
        syncnet_crops(FACES / "no_face.mp4", landmarker)


def test_cli_syncnet_json(tmp_path, landmarker):
    w = _random_syncnet(tmp_path / "syncnet.safetensors")
    r = _cli("eval", "--generated", str(FACES / "single_face.mp4"), "--reference", str(FACES / "single_face.mp4"),
             "--syncnet", str(w), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    p = data["pairs"][0]
    assert isinstance(p["syncnet_offset"], int) and -15 <= p["syncnet_offset"] <= 15
    assert np.isfinite(p["syncnet_confidence"]) and p["syncnet_confidence"] >= 0
    assert np.isfinite(p["syncnet_min_dist"]) and p["syncnet_min_dist"] > 0
    assert data["mean"]["syncnet_confidence"] == pytest.approx(p["syncnet_confidence"])
    assert not any("skipped" in n for n in data["notes"]) and any("SyncNet" in n for n in data["notes"])


def test_syncnet_without_audio_is_a_note(tmp_path, landmarker):
    from support import write_partial_face_video

    video = write_partial_face_video(tmp_path / "silent.mp4", n_each=6)
    rep = evaluate(video, video, syncnet=_random_syncnet(tmp_path / "w.safetensors"), landmarker=landmarker)
    assert rep.pairs[0].syncnet_confidence is None
    assert any("silent.mp4: SyncNet skipped" in n and "audio" in n for n in rep.notes), rep.notes


@pytest.mark.parametrize("case", ["torch_file", "wrong_key"])
def test_cli_bad_syncnet_weights_exit_2(tmp_path, case):
    import torch
    from safetensors.torch import load_file, save_file

    from talkclip.model.syncnet import SyncNet

    if case == "torch_file":
        w = tmp_path / "syncnet_v2.model"
        torch.save(SyncNet().state_dict(), w)
        expect = "safetensors conversion"
    else:
        sd = load_file(str(_random_syncnet(tmp_path / "ok.safetensors")))
        sd["netfcaud.3.weight_renamed"] = sd.pop("netfcaud.3.weight")
        w = tmp_path / "bad.safetensors"
        save_file(sd, str(w))
        expect = "missing key netfcaud.3.weight"
    r = _cli("eval", "--generated", str(FACES / "single_face.mp4"), "--reference", str(FACES / "single_face.mp4"),
             "--syncnet", str(w), cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.stderr
