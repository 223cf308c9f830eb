"""`talkclip generate` end to end with a tiny random-init checkpoint on real fixture media."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from talkclip import InputError
from talkclip.annotate.media import iter_frames, load_audio
from talkclip.pipelines.generate import (SYNTHETIC_TAG, generate, silence_gate, smooth_curves,
                                         timecode)
from talkclip.schemas import ARKIT_NAMES, BLENDSHAPE_NAMES

from support import FACES, SPEECH, tiny_checkpoint

TALKCLIP = [sys.executable, "-c", "from talkclip.cli import app; app()"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def _streams(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        return {"types": sorted(s.type for s in c.streams),
                "codecs": {s.type: s.codec_context.name for s in c.streams},
                "comment": c.metadata.get("comment"),
                "duration": c.duration / 1e6}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(TALKCLIP + list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_generate_portrait_speech_text(tmp_path, tiny_ckpt, landmarker):
    out, csv_path = tmp_path / "talk.mp4", tmp_path / "talk.csv"
    s = generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "hello_en.wav", "a man smiling broadly", out,
                 export_blendshapes=csv_path, size=256, fps=25)
    audio_s = len(load_audio(SPEECH / "hello_en.wav")) / 16_000
    assert s.frames == round(audio_s * 25) and s.style_source == "text"
    info = _streams(out)
    assert info["types"] == ["audio", "video"]
    assert info["codecs"] == {"video": "h264", "audio": "aac"}
    assert info["comment"] == SYNTHETIC_TAG
    frames = [f.rgb for f in iter_frames(out)]
    assert abs(len(frames) / 25 - audio_s) <= 1 / 25 + 1e-6
    assert frames[0].shape == (256, 256, 3)
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, frames[1:])]
    assert max(diffs) > 0.5, "the face must move"
    assert abs(len(load_audio(out)) / 16_000 - audio_s) < 0.1
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Timecode", "BlendShapeCount", *ARKIT_NAMES] and len(ARKIT_NAMES) == 52
    assert "tongueOut" in ARKIT_NAMES and "_neutral" not in ARKIT_NAMES
    assert len(rows) - 1 == len(frames) == s.frames
    assert rows[1][:2] == ["00:00:00:00", "52"] and rows[26][0] == "00:00:01:00"
    vals = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert vals.shape == (s.frames, 52) and vals.min() >= 0 and vals.max() <= 1
    # the visible mark: the bottom-right corner (which the warp leaves alone) differs from the
    # portrait crop there, the bottom-left corner does not
    from talkclip.annotate.media import load_image
    from talkclip.model.renderer import Renderer

    crop = (Renderer().prepare(load_image(FACES / "smile.jpg")).src[0].permute(1, 2, 0).numpy() * 255)
    assert s.watermark
    d_mark = np.abs(frames[0][-20:, -30:].astype(float) - crop[-20:, -30:]).mean()
    d_free = np.abs(frames[0][-20:, :30].astype(float) - crop[-20:, :30]).mean()
    assert d_mark > 15 and d_free < 6, (d_mark, d_free)


def test_style_video_pose_video_intensity_fps30(tmp_path, tiny_ckpt, landmarker):
    out = tmp_path / "styled.mp4"
    s = generate(tiny_ckpt, FACES / "happy.jpg", SPEECH / "weather_en.wav", None, out,
                 style_video=FACES / "single_face.mp4", pose_video=FACES / "single_face.mp4",
                 intensity=1.5, fps=30, watermark=False)
    audio_s = len(load_audio(SPEECH / "weather_en.wav")) / 16_000
    assert s.style_source == "video" and s.frames == round(audio_s * 30)
    assert abs(_streams(out)["duration"] - audio_s) <= 1 / 30 + 0.05
    assert set(s.timings) >= {"text", "motion", "render", "encode"}


def test_text_mix_and_bad_options(tmp_path, tiny_ckpt, landmarker):
    out = tmp_path / "mix.mp4"
    s = generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "silence_2s.wav", "a happy man", out,
                 text_mix=[("an angry man", 0.3)], size=256)
    assert s.style_source == "text-mix" and out.is_file()
    with pytest.raises(InputError, match="mix-weight must be"):
        generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "hello_en.wav", "x", out, text_mix=[("y", 1.5)])
    with pytest.raises(InputError, match="--size must be one of 256, 512"):
        generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "hello_en.wav", "x", out, size=300)
    with pytest.raises(InputError, match="either --text .* or --style-video"):
        generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "hello_en.wav", "x", out,
                 style_video=FACES / "single_face.mp4")
    with pytest.raises(InputError, match="a style is needed"):
        generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "hello_en.wav", None, out)


def test_pose_video_and_intensity_change_the_output(tmp_path, tiny_ckpt, landmarker):
    """issue 8.10: a pose video moves the head (frames change, curves do not); intensity 1.5
    changes the curves by half the styled-minus-neutral gap and the frames with them."""
    def run(name, **kw):
        csv_path = tmp_path / f"{name}.csv"
        generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "hello_en.wav", "a furious man, brows extremely lowered",
                 tmp_path / f"{name}.mp4", export_blendshapes=csv_path, watermark=False, threads=1, **kw)
        with open(csv_path) as f:
            curves = np.array([[float(v) for v in r[2:]] for r in list(csv.reader(f))[1:]])
        return curves, np.stack([f.rgb for f in iter_frames(tmp_path / f"{name}.mp4")]).astype(np.float32)

    plain_bs, plain = run("plain")
    posed_bs, posed = run("posed", pose_video=FACES / "single_face.mp4")
    strong_bs, strong = run("strong", intensity=1.5)
    assert np.array_equal(posed_bs, plain_bs), "the pose video must not change the expression curves"
    head = np.abs(posed - plain).mean(axis=(1, 2, 3))          # (T,) mean abs pixel change per frame
    assert head.max() > 2.0, f"the head did not move: {head.max():.2f}"
    gap = np.abs(strong_bs - plain_bs).max()
    assert gap > 1e-3, f"intensity 1.5 left the curves unchanged ({gap})"
    assert np.abs(strong - plain).mean(axis=(1, 2, 3)).max() > 0.5


def test_curve_helpers():
    assert timecode(0, 25) == "00:00:00:00" and timecode(25 * 3661 + 7, 25) == "01:01:01:07"
    flat = np.full((20, 3), 0.4, np.float32)
    assert np.allclose(smooth_curves(flat, 2.0), 0.4, atol=1e-6)
    spiky = np.zeros((21, 1), np.float32)
    spiky[10] = 1
    sm = smooth_curves(spiky, 1.5)
    assert sm.max() < 0.5 and abs(sm.sum() - 1) < 1e-3
    bs = np.full((10, 52), 0.7, np.float32)
    db = np.array([-20.0] * 5 + [-90.0] * 5)
    gated, n = silence_gate(bs, db)
    jaw = BLENDSHAPE_NAMES.index("jawOpen")
    assert n == 5 and gated[0, jaw] == pytest.approx(0.7) and gated[-1, jaw] < 0.05
    assert gated[-1, BLENDSHAPE_NAMES.index("browInnerUp")] == pytest.approx(0.7)


def test_cli_silent_audio_makes_closed_mouth_video(tmp_path, tiny_ckpt, landmarker):
    from talkclip.annotate.tracker import track_media

    out = tmp_path / "silent.mp4"
    r = _cli("generate", "--checkpoint", str(tiny_ckpt), "--image", str(FACES / "smile.jpg"),
             "--audio", str(SPEECH / "silence_2s.wav"), "--text", "a calm man", "--out", str(out),
             "--no-watermark", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _streams(out)["types"] == ["audio", "video"]
    track = track_media(out)
    assert track.frames == 50 and track.frames_with_face == 50
    jaw = track.blendshapes[:, BLENDSHAPE_NAMES.index("jawOpen")]
    assert jaw.max() < 0.15, jaw.max()


@pytest.mark.parametrize("case", ["no_face", "bad_audio", "no_checkpoint", "size", "device", "csv_is_folder",
                                  "missing_option", "precision"])
def test_cli_bad_inputs_exit_2_one_line(tmp_path, tiny_ckpt, case, landmarker):
    from PIL import Image

    image, audio, ckpt = FACES / "smile.jpg", SPEECH / "hello_en.wav", tiny_ckpt
    extra = {"size": ["--size", "300"], "device": ["--device", "gpu"], "precision": ["--precision", "fp16"],
             "csv_is_folder": ["--export-blendshapes", str(tmp_path)]}.get(case, [])
    if case == "no_face":
        image = tmp_path / "empty.png"
        Image.fromarray(next(iter_frames(FACES / "no_face.mp4")).rgb).save(image)
    elif case == "bad_audio":
        audio = tmp_path / "noise.wav"
        audio.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        ckpt = tmp_path / "nowhere"
    out = tmp_path / "x.mp4"
    args = ["--checkpoint", str(ckpt), "--image", str(image), "--audio", str(audio), "--text", "a man",
            "--out", str(out), *extra]
    if case == "missing_option":
        args = args[2:]
    r = _cli("generate", *args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_intensity_scales_the_style_deviation(tmp_path, tiny_ckpt, landmarker):
    """intensity 0 speaks in the neutral sentence's style; 1 is the model's own output."""
    from talkclip.pipelines.generate import NEUTRAL_TEXT

    def curves(text, intensity, name):
        generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "silence_2s.wav", text, tmp_path / f"{name}.mp4",
                 intensity=intensity, export_blendshapes=tmp_path / f"{name}.csv", watermark=False, threads=1)
        with open(tmp_path / f"{name}.csv") as f:
            return np.array([[float(v) for v in r[2:]] for r in list(csv.reader(f))[1:]])

    neutral = curves(NEUTRAL_TEXT, 1.0, "neutral")
    styled = curves("a furious man, brows extremely lowered", 1.0, "styled")
    zero = curves("a furious man, brows extremely lowered", 0.0, "zero")
    half = curves("a furious man, brows extremely lowered", 0.5, "half")
    assert np.abs(styled - neutral).max() > 1e-3, "different sentences must give different curves"
    assert np.allclose(zero, neutral, atol=2e-5)
    # smoothing and the gate are linear per channel, so half intensity lands halfway (clipping aside)
    assert np.allclose(half, (styled + neutral) / 2, atol=2e-3)
