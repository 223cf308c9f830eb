"""`talkclip train` / `train-sync`: resume equals an uninterrupted run; end to end on built data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from talkclip import CheckpointError, ConfigError, InputError, LayoutError
from talkclip.model.checkpoint import load_checkpoint
from talkclip.model.config import load_config

from support import SPEECH, write_synthetic_tamead

CLI = [sys.executable, "-c", "from talkclip.cli import app; app()"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_synthetic_tamead(tmp_path_factory.mktemp("synth") / "ta", n_clips=6, frames=60, seed=2)


@pytest.fixture(scope="module")
def dropout_config(tmp_path_factory) -> Path:
    """tiny with dropout on, so the torch RNG state matters for resuming."""
    c = load_config("tiny").to_dict()
    c["name"] = "tiny_dropout"
    c["model"]["dropout"] = 0.1
    c["train"]["p_ramp_steps"] = 3
    p = tmp_path_factory.mktemp("cfg") / "tiny_dropout.json"
    p.write_text(json.dumps(c))
    return p


def _params(path: Path) -> dict[str, torch.Tensor]:
    return dict(load_checkpoint(path).state_dict())


def _assert_same(a: Path, b: Path) -> None:
    pa_, pb = _params(a), _params(b)
    assert pa_.keys() == pb.keys()
    worst = max(float((pa_[k].float() - pb[k].float()).abs().max()) for k in pa_ if pa_[k].numel())
    assert worst <= 1e-6, f"resumed run differs from the straight one by {worst}"


def test_resume_continues_identically(synth, dropout_config, tmp_path):
    from talkclip.pipelines.train import train

    kw = dict(stage="2", seed=7, workers=0, log_every=1)
    straight = train(synth, str(dropout_config), tmp_path / "a", steps=6, **kw)
    assert straight.steps == 6
    first = train(synth, str(dropout_config), tmp_path / "b", steps=3, **kw)
    assert first.steps == 3
    with pytest.raises(InputError, match="already holds a checkpoint"):
        train(synth, str(dropout_config), tmp_path / "b", steps=6, **kw)
    with pytest.raises(ConfigError, match="differs"):
        train(synth, "tiny", tmp_path / "b", steps=6, resume=True, **kw)
    resumed = train(synth, None, tmp_path / "b", steps=6, resume=True, **kw)
    assert (resumed.start_step, resumed.steps) == (3, 6)
    _assert_same(tmp_path / "a", tmp_path / "b")
    rows_a = list(csv.DictReader((tmp_path / "a" / "train_log.csv").open()))
    rows_b = list(csv.DictReader((tmp_path / "b" / "train_log.csv").open()))
    assert [r["step"] for r in rows_b] == [str(i) for i in range(1, 7)]
    for ra, rb in zip(rows_a, rows_b):
        assert (ra["use_text"], ra["p"]) == (rb["use_text"], rb["p"])
        assert float(ra["rec"]) == pytest.approx(float(rb["rec"]), rel=1e-4)
    assert {r["use_text"] for r in rows_a} == {"0", "1"}  # stage 2 fed both style codes


def test_crash_and_resume_equals_straight_run_with_workers(synth, dropout_config, tmp_path):
    from talkclip.pipelines.train import train

    kw = dict(stage="both", seed=3, workers=1, log_every=2, checkpoint_every=3)
    train(synth, str(dropout_config), tmp_path / "a", steps=6, **kw)

    def crash(step, _losses):
        if step == 5:
            raise KeyboardInterrupt  # killed after the step-3 checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(synth, str(dropout_config), tmp_path / "b", steps=6, on_step=crash, **kw)
    assert json.loads((tmp_path / "b" / "trainer_state.json").read_text())["step"] == 3
    train(synth, None, tmp_path / "b", steps=6, resume=True, **kw)
    _assert_same(tmp_path / "a", tmp_path / "b")


def test_train_rejects_bad_input(synth, tmp_path):
    from talkclip.pipelines.train import train, train_sync

    with pytest.raises(InputError, match="not found"):
        train(tmp_path / "nope", "tiny", tmp_path / "o", steps=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="not a TA-MEAD directory"):
        train(tmp_path / "empty", "tiny", tmp_path / "o", steps=1)
    with pytest.raises(CheckpointError, match="no resumable"):
        train(synth, None, tmp_path / "o2", steps=1, resume=True)
    (tmp_path / "badsync").mkdir()
    (tmp_path / "badsync" / "config.json").write_text(json.dumps(load_config("tiny").to_dict()))
    (tmp_path / "badsync" / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="corrupt checkpoint file"):
        train(synth, "tiny", tmp_path / "o3", steps=1, sync_checkpoint=tmp_path / "badsync")
    with pytest.raises(InputError, match="stage"):
        train(synth, "tiny", tmp_path / "o4", steps=1, stage="3")
    with pytest.raises(InputError, match="CUDA") if not torch.cuda.is_available() else pytest.raises(InputError, match="device"):
        train_sync(synth, "tiny", tmp_path / "o5", steps=1, device="cuda" if not torch.cuda.is_available() else "tpu")


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _e2e(data: Path, tmp_path: Path) -> None:
    sync_dir, ck = tmp_path / "sync", tmp_path / "ck"
    r = _cli("train-sync", "--data", str(data), "--config", "tiny", "--out", str(sync_dir), "--steps", "8")
    assert r.returncode == 0, r.stderr
    r = _cli("train", "--data", str(data), "--config", "tiny", "--out", str(ck), "--steps", "6",
             "--sync-checkpoint", str(sync_dir), "--workers", "1", "--batch-size", "3")
    assert r.returncode == 0, r.stderr
    assert "checkpoint:" in r.stdout and "Traceback" not in r.stderr
    rows = list(csv.DictReader((ck / "train_log.csv").open()))
    assert rows[-1]["step"] == "6" and float(rows[-1]["sync"]) > 0 and float(rows[-1]["rec"]) > 0
    model = load_checkpoint(ck)
    assert bool(model.sync_ready)
    from talkclip.annotate.media import load_audio
    from talkclip.model.audio import audio_features

    feats = audio_features(load_audio(SPEECH / "hello_en.wav"), 25.0, None, model.config)
    y = model.generate(feats, model.text_style(["A woman is happy and smiles."])[0])
    assert y.shape == (feats.shape[0], 52) and torch.isfinite(y).all()
    # bad input through the CLI: one line on stderr, exit 2
    r = _cli("train", "--data", str(tmp_path), "--config", "tiny", "--out", str(tmp_path / "x"), "--steps", "1")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not a TA-MEAD directory" in r.stderr
    r = _cli("train", "--data", str(data), "--out", str(ck), "--steps", "1")
    assert r.returncode == 2 and "already holds a checkpoint" in r.stderr


def test_end_to_end_cli_on_build_ta_mead_output(tmp_path, landmarker, fixtures):
    """The mini-MEAD (fixture media) built by build-ta-mead, then train-sync + train as subprocesses."""
    from support import cached_mini_build

    _, data = cached_mini_build()
    _e2e(data, tmp_path)


def test_end_to_end_cli_on_synthetic_tamead(synth, tmp_path):
    """Same flow on the synthetic set (no landmarker needed)."""
    r = _cli("train", "--data", str(synth), "--config", "tiny", "--out", str(tmp_path / "ck"), "--steps", "3",
             "--stage", "1")
    assert r.returncode == 0, r.stderr
    assert "L_sync skipped" in r.stdout
    assert load_checkpoint(tmp_path / "ck").config.name == "tiny"


def test_sync_discriminator_learns_to_tell_shifted_audio(synth, tmp_path):
    import numpy as np

    from talkclip.model.checkpoint import load_sync_checkpoint
    from talkclip.model.data import TAMEADWindows, load_tamead, make_loader
    from talkclip.pipelines.train import sync_batch, train_sync

    s = train_sync(synth, "tiny", tmp_path / "sync", steps=200, batch_size=8, log_every=50)
    assert s.steps == 200 and s.last["loss"] < s.first["loss"]
    disc = load_sync_checkpoint(tmp_path / "sync")
    cfg = load_config("tiny")
    # fresh windows (another seed) of the train clips: in-sync pairs score above shifted ones
    ds = TAMEADWindows(load_tamead(synth, cfg), cfg, seed=99)
    batch = next(iter(make_loader(ds, 64, 0, 1)))
    m, a, y = sync_batch(batch, cfg.model.sync_window, cfg.model.window, cfg.train.sync_min_shift,
                         np.random.default_rng(5))
    with torch.no_grad():
        logits = disc(m, a)
    acc = float(((logits > 0).float() == y).float().mean())
    assert logits[y == 1].mean() > logits[y == 0].mean() and acc >= 0.6, acc


def test_ddp_two_ranks_equal_one_process_with_the_global_batch(synth, tmp_path):
    """torchrun with 2 CPU ranks (gloo), batch 2 each == one process with batch 4."""
    from talkclip.pipelines.train import train

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip("torchrun not installed beside this python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    c = load_config("tiny").to_dict()
    c["train"]["p_ramp_steps"] = 0          # p = p_max from the first step: the text branch is fed too
    cfg = tmp_path / "tiny_p.json"
    cfg.write_text(json.dumps(c))
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "--no-python", *CLI,
                        "train", "--data", str(synth), "--config", str(cfg), "--out", str(tmp_path / "ddp"),
                        "--steps", "3", "--stage", "2", "--batch-size", "2", "--workers", "0", "--seed", "0"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("checkpoint:") == 1  # only rank 0 reports
    rows = list(csv.DictReader((tmp_path / "ddp" / "train_log.csv").open()))
    assert {row["use_text"] for row in rows} == {"0", "1"}, "the coin flips fed both style codes under DDP"
    train(synth, str(cfg), tmp_path / "one", steps=3, stage="2", batch_size=4, workers=0, seed=0)
    # reference scale: the same run on half the data (one rank's share only)
    train(synth, str(cfg), tmp_path / "half", steps=3, stage="2", batch_size=2, workers=0, seed=0)
    ddp, one, half = _params(tmp_path / "ddp"), _params(tmp_path / "one"), _params(tmp_path / "half")

    def dist(a, b):
        return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())

    # Adam turns float-rounding differences of near-zero gradients into steps of up to lr, so
    # "equal" means: far closer to the global-batch run than a run on one rank's data is
    assert dist(ddp, one) < 0.1 * dist(half, one), (dist(ddp, one), dist(half, one))
    assert dist(ddp, one) < 5e-4


def test_resumed_log_drops_rows_after_the_checkpoint(tmp_path):
    """A run that crashed after logging steps past its last checkpoint logs those steps once."""
    import csv

    from talkclip.pipelines.train import LOG_COLUMNS, CsvLog

    log = tmp_path / "train_log.csv"
    first = CsvLog(log, LOG_COLUMNS, True, None)
    for step in range(1, 6):
        first.row({"step": step, "total": float(step)})
    first.close()
    resumed = CsvLog(log, LOG_COLUMNS, True, None, start=3)   # checkpoint at step 3
    for step in range(4, 7):
        resumed.row({"step": step, "total": 10.0 + step})
    resumed.close()
    with log.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["total"]) for r in rows][3:] == [14.0, 15.0, 16.0]


def test_sync_resume_continues_identically(synth, tmp_path):
    """train-sync on the shared loop: 2 steps + resume to 5 == 5 straight steps (weights, log)."""
    from talkclip.model.checkpoint import load_sync_checkpoint
    from talkclip.pipelines.train import train_sync

    kw = dict(seed=4, workers=0, log_every=1, batch_size=4)
    train_sync(synth, "tiny", tmp_path / "a", steps=5, **kw)
    train_sync(synth, "tiny", tmp_path / "b", steps=2, **kw)
    with pytest.raises(ConfigError, match="differs from the checkpoint's at model.d_model"):
        train_sync(synth, str(_bigger_tiny(tmp_path)), tmp_path / "b", steps=5, resume=True, **kw)
    resumed = train_sync(synth, None, tmp_path / "b", steps=5, resume=True, **kw)
    assert (resumed.start_step, resumed.steps) == (2, 5)
    state = json.loads((tmp_path / "b" / "trainer_state.json").read_text())
    assert state["kind"] == "sync" and state["step"] == 5 and len(state["data"]["manifest_sha256"]) == 64
    a, b = load_sync_checkpoint(tmp_path / "a").state_dict(), load_sync_checkpoint(tmp_path / "b").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a = list(csv.DictReader((tmp_path / "a" / "sync_log.csv").open()))
    rows_b = list(csv.DictReader((tmp_path / "b" / "sync_log.csv").open()))
    assert [r["step"] for r in rows_b] == ["1", "2", "3", "4", "5"]
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


def _bigger_tiny(tmp_path: Path) -> Path:
    c = load_config("tiny").to_dict()
    c["model"]["d_model"] = 64
    p = tmp_path / "tiny64.json"
    p.write_text(json.dumps(c))
    return p


def test_cli_checks_options_and_output_before_loading_data(tmp_path):
    """Bad numbers and unusable --out: one line on stderr, exit 2, before the data is looked at
    (--data here is not a build at all, yet the message is about the option); nothing touched."""
    afile = tmp_path / "afile.txt"
    afile.write_text("the user's own file\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep me\n")
    o = ("--out", str(tmp_path / "o"))
    cases = [(("train", "--out", str(afile)), "is a file"),
             (("train", "--out", str(afile / "sub")), "cannot create"),
             (("train-sync", "--out", str(notes)), "holds other files"),
             (("train-renderer", "--out", str(afile)), "is a file"),
             (("train", *o, "--workers", "-2"), "--workers must be an integer >= 0, got -2"),
             (("train", *o, "--log-every", "0"), "--log-every must be an integer >= 1, got 0"),
             (("train", *o, "--checkpoint-every", "-5"), "--checkpoint-every must be an integer >= 0, got -5"),
             (("train-sync", *o, "--steps", "0"), "--steps must be an integer >= 1, got 0"),
             (("train-renderer", *o, "--frame-stride", "0"), "--frame-stride must be an integer >= 1, got 0")]
    for args, message in cases:
        cfg = "renderer-tiny" if args[0] == "train-renderer" else "tiny"
        r = _cli(*args, "--data", str(tmp_path), "--config", cfg)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert afile.read_text() == "the user's own file\n" and sorted(p.name for p in notes.iterdir()) == ["mine.txt"]
    assert not (tmp_path / "o").exists(), "nothing is created for a run refused on its options"


@pytest.mark.parametrize("option, value", [("steps", 0), ("batch_size", 0), ("workers", -2), ("log_every", 0),
                                           ("checkpoint_every", -5), ("threads", 0), ("seed", -1), ("max_clips", -1),
                                           ("frame_stride", 0), ("steps", 1.5), ("workers", True),
                                           ("stage", "3"), ("split", "dev")])
def test_train_options_range_checks_every_option(option, value, tmp_path):
    """TrainOptions holds the rules (not cli.py): every numeric option range-checked, choices checked."""
    from talkclip.pipelines.solver import TrainOptions

    flag = "--" + option.replace("_", "-")
    with pytest.raises(InputError, match=f"^{flag} must be"):
        TrainOptions(data_dir=tmp_path, out=tmp_path / "o", **{option: value})


def test_cli_prints_every_skip_reason_with_its_count(tmp_path):
    """Clips lacking a frames row or an audio row are dropped with a word: every reason, its count."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    data = write_synthetic_tamead(tmp_path / "ta", n_clips=6, frames=60, seed=2)
    ids = pq.read_table(data / "clips").column("clip_id").to_pylist()
    for table, drop in (("frames", ids[1]), ("audio", ids[2])):
        shard = data / table / "part-00000.parquet"
        t = pq.read_table(shard)
        pq.write_table(t.filter(pc.invert(pc.equal(t.column("clip_id"), drop))), shard)
    r = _cli("train", "--data", str(data), "--config", "tiny", "--out", str(tmp_path / "ck"), "--steps", "1",
             "--stage", "1")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("skipped "))
    assert line == ("skipped 3 clips: split 1, too_short 0, no_captions 0, no_face 0, av_mismatch 0, "
                    "no_frames 1, no_audio 1, no_phonemes 0"), line
    assert "on 3 clips" in r.stdout


def test_base_minilm_config_loads_and_builds():
    """The README's base command without CLIP weights: base sizes, the packaged MiniLM encoder."""
    from talkclip.model.talkclip import TalkCLIP

    cfg, base = load_config("base-minilm"), load_config("base")
    assert cfg.text.backend == "minilm" and cfg.model == base.model and cfg.train == base.train
    torch.manual_seed(0)
    model = TalkCLIP(cfg).eval()
    with torch.no_grad():
        s_t = model.text_style(["A woman is happy and smiles."])
        y = model.generate(torch.zeros(30, cfg.audio.n_mels), s_t[0])
    assert s_t.shape == (1, cfg.model.style_dim) and y.shape == (30, 52) and torch.isfinite(y).all()
