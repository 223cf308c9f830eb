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
    with pytest.raises(InputError):
        evaluate(FACES / "single_face.mp4", tmp_path)
