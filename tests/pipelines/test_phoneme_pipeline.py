"""Phoneme labels through the whole path (issue 13): a build made with --phonemes stores a
phoneme track per clip, a tiny phoneme-config model trains on it and generates from speech."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from talkclip.annotate.phonemes import n_phonemes

from support import FACES, SPEECH, assert_one_line_error, make_mini_mead, run_data_cli


@pytest.fixture(scope="module")
def phoneme_build(tmp_path_factory, landmarker, fixtures):
    root = tmp_path_factory.mktemp("phoneme_build")
    facts = make_mini_mead(root / "mead", with_tar=False)
    out = root / "out"
    proc = run_data_cli("build-ta-mead", "--mead", facts["root"], "--out", out, "--phonemes")
    assert proc.returncode in (0, 1), proc.stderr          # 1: the mini corpus's broken clips fail
    return facts, out


def test_build_writes_one_phoneme_track_per_clip(phoneme_build):
    facts, out = phoneme_build
    clips = pq.read_table(out / "clips").select(["clip_id", "frames", "fps"]).to_pylist()
    tracks = {r["clip_id"]: r for r in pq.read_table(out / "phonemes").to_pylist()}
    assert clips and set(tracks) == {c["clip_id"] for c in clips}
    for c in clips:
        t = tracks[c["clip_id"]]
        assert len(t["frame_ids"]) == c["frames"] and t["fps"] == pytest.approx(c["fps"])
        assert t["method"] == "recognition" and t["sentence"] is None    # MEAD: no sentences known
        assert 0 <= min(t["frame_ids"]) and max(t["frame_ids"]) < n_phonemes()
        assert t["starts"][0] == 0.0 and all(a < b for a, b in zip(t["starts"], t["ends"]))
        assert sum(i != 0 for i in t["frame_ids"]) > 0.3 * c["frames"]    # the clips hold speech
    manifest = json.loads((out / "manifest.json").read_text())
    ph = manifest["phonemes"]
    assert ph["enabled"] is True and ph["methods"] == {"recognition": len(clips)}
    assert "recognised" in ph["sentences"] and "MEAD" in ph["sentences"]


def test_a_rerun_without_phonemes_is_refused(phoneme_build):
    facts, out = phoneme_build
    line = assert_one_line_error(run_data_cli("build-ta-mead", "--mead", facts["root"], "--out", out))
    assert "phonemes" in line


@pytest.fixture(scope="module")
def phoneme_checkpoint(phoneme_build, tmp_path_factory):
    from talkclip.pipelines.train import train

    _, out = phoneme_build
    ckpt = tmp_path_factory.mktemp("phoneme_ckpt") / "run"
    summary = train(out, "tiny-phoneme", ckpt, steps=3, stage="1")
    assert summary is not None
    return ckpt


def test_tiny_phoneme_model_trains_from_the_build(phoneme_checkpoint):
    from talkclip.model.checkpoint import read_config

    cfg = read_config(phoneme_checkpoint)
    assert cfg.model.audio_input == "phoneme" and cfg.model.n_phonemes == n_phonemes()
    assert (phoneme_checkpoint / "model.safetensors").is_file()



def test_generate_extracts_phonemes(phoneme_checkpoint, tmp_path):
    """A phoneme checkpoint generates from plain speech: phones recognised, or aligned to
    --transcript; the ids reach the model (the curves differ) and streaming matches offline."""
    import csv

    def curves(path) -> np.ndarray:
        return np.array([[float(x) for x in r[2:]] for r in list(csv.reader(open(path)))[1:]])   # (T, 52)

    from talkclip.pipelines.generate import generate

    args = (phoneme_checkpoint, FACES / "happy.jpg", SPEECH / "kids_door_en.wav", "A person is happy.")
    fps = 10                                           # few frames to render: the test is about the motion
    runs = {}
    for name, opts in (("aligned", dict(transcript="Kids are talking by the door.")), ("recognised", {}),
                       ("streamed", dict(transcript="Kids are talking by the door.", stream=True))):
        s = generate(*args, tmp_path / f"{name}.mp4", export_blendshapes=tmp_path / f"{name}.csv", fps=fps, **opts)
        assert s.frames == round(2.1768 * fps) and (tmp_path / f"{name}.mp4").stat().st_size > 0
        runs[name] = (s, curves(tmp_path / f"{name}.csv"))
    assert runs["aligned"][0].phonemes == "alignment" and runs["recognised"][0].phonemes == "recognition"
    assert np.abs(runs["aligned"][1] - runs["recognised"][1]).max() > 1e-3
    assert np.abs(runs["aligned"][1] - runs["streamed"][1]).max() < 1e-5


def test_generate_cli_refuses_an_empty_transcript(phoneme_checkpoint, tmp_path, capsys):
    import sys

    from talkclip.cli import app

    argv, sys.argv = sys.argv, ["talkclip", "generate", "--checkpoint", str(phoneme_checkpoint), "--image",
                                str(FACES / "happy.jpg"), "--audio", str(SPEECH / "kids_door_en.wav"), "--text",
                                "A person.", "--transcript", " ?! ", "--out", str(tmp_path / "o.mp4")]
    try:
        with pytest.raises(SystemExit) as e:
            app()
    finally:
        sys.argv = argv
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--transcript" in err[0], err
    assert not (tmp_path / "o.mp4").exists()


def test_streaming_api_refuses_a_phoneme_checkpoint(phoneme_checkpoint):
    from talkclip import InputError
    from talkclip.pipelines.generate import GenerateRequest, Session

    session = Session(GenerateRequest(phoneme_checkpoint, FACES / "happy.jpg", None, "A person.", None))
    with pytest.raises(InputError, match="reads phonemes.*whole audio"):
        next(session.stream(iter([np.zeros(1600, np.float32)])))
