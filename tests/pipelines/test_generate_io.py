"""`talkclip generate` as a hostile user meets it (issue 9): outputs that are inputs, damaged
audio and weights, wrong checkpoints, out-of-range numbers, signals mid-run. Each case goes
through the CLI and checks the exit code, the one stderr line and the files on disk."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support import FACES, SPEECH, long_speech, tiny_checkpoint

TALKCLIP = [sys.executable, "-c", "from talkclip.cli import app; app()"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(TALKCLIP + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def _cli_here(args, capsys) -> tuple[int, str, str]:
    """The CLI entry point in this process (for checks that fail before any loading)."""
    from talkclip.cli import app

    argv = sys.argv
    sys.argv = ["talkclip", *map(str, args)]
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_line(code: int, err: str) -> str:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) -> sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _args(ckpt, image, audio, out, *extra) -> list:
    return ["generate", "--checkpoint", ckpt, "--image", image, "--audio", audio, "--text", "a calm man",
            "--out", out, *extra]


@pytest.mark.parametrize("which", ["audio", "image", "style-video", "pose-video", "export-blendshapes"])
def test_out_equal_to_an_input_is_refused(tmp_path, tiny_ckpt, which, capsys):
    """issue 9.2: --out naming any input (compared resolved: ./x and x are one file) is refused."""
    for name, src in (("voice.wav", SPEECH / "hello_en.wav"), ("face.jpg", FACES / "smile.jpg"),
                      ("clip.mp4", FACES / "single_face.mp4")):
        shutil.copy(src, tmp_path / name)
    args = ["generate", "--checkpoint", tiny_ckpt, "--image", tmp_path / "face.jpg", "--audio", tmp_path / "voice.wav",
            "--out", tmp_path / "talk.mp4"]
    victim = {"audio": "voice.wav", "image": "face.jpg", "style-video": "clip.mp4", "pose-video": "clip.mp4",
              "export-blendshapes": "talk.mp4"}[which]
    args += ["--style-video", tmp_path / "clip.mp4"] if which == "style-video" else ["--text", "a man"]
    if which == "pose-video":
        args += ["--pose-video", tmp_path / "clip.mp4"]
    if which == "export-blendshapes":   # the CSV onto the video: both outputs, same file
        args += ["--export-blendshapes", tmp_path / "sub" / ".." / "talk.mp4"]
    else:
        args[args.index("--out") + 1] = f"{tmp_path}/./{victim}"
    before = _snapshot(tmp_path)
    line = _one_line(*_cli_here(args, capsys)[::2])
    assert "--out" in line and ("input" in line or "same file" in line), line
    assert _snapshot(tmp_path) == before


def test_nan_wav_is_one_line_and_writes_nothing(tmp_path, tiny_ckpt):
    """issue 9.3: a float WAV holding NaN/Inf is bad input, refused before anything is written."""
    x = np.sin(np.arange(16000, dtype=np.float32) / 10) * 0.3
    x[4000], x[9000] = np.nan, np.inf
    data = x.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 16000 * 4, 4, 32)            # IEEE float, mono
    wav = tmp_path / "nan.wav"
    wav.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
                    + b"data" + struct.pack("<I", len(data)) + data)
    before = _snapshot(tmp_path)
    r = _cli(*_args(tiny_ckpt, FACES / "smile.jpg", wav, tmp_path / "x.mp4", "--export-blendshapes", tmp_path / "x.csv"),
             cwd=tmp_path)
    assert "NaN or infinite" in _one_line(r.returncode, r.stderr)
    assert _snapshot(tmp_path) == before


def test_nan_weights_refused_at_load_after_the_inputs(tmp_path, tiny_ckpt):
    """issue 9.9: non-finite weights are refused with one line (no CSV of nan, no video);
    issue 9.12: the inputs are checked before the weights are read, so a portrait without a
    face is reported first even then (cheap checks of the checkpoint -- its config, the header
    of its weights -- come before both)."""
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from talkclip.annotate.media import iter_frames

    bad = tmp_path / "bad"
    shutil.copytree(tiny_ckpt, bad)
    sd = load_file(str(bad / "model.safetensors"))
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    sd[key][0] = float("nan")
    save_file(sd, str(bad / "model.safetensors"), metadata={"kind": "talkclip", "format": "pt"})
    empty = tmp_path / "empty.png"
    Image.fromarray(next(iter_frames(FACES / "no_face.mp4")).rgb).save(empty)
    before = _snapshot(tmp_path)
    r = _cli(*_args(bad, empty, SPEECH / "hello_en.wav", tmp_path / "x.mp4"), cwd=tmp_path)
    assert "no face" in _one_line(r.returncode, r.stderr)
    r = _cli(*_args(bad, FACES / "smile.jpg", SPEECH / "hello_en.wav", tmp_path / "x.mp4",
                    "--export-blendshapes", tmp_path / "x.csv"), cwd=tmp_path)
    assert "non-finite weights" in _one_line(r.returncode, r.stderr)
    assert _snapshot(tmp_path) == before
    # the output opens before the models load: folders it had to make are gone again
    r = _cli(*_args(bad, FACES / "smile.jpg", SPEECH / "hello_en.wav", tmp_path / "new" / "dir" / "x.mp4"),
             cwd=tmp_path)
    assert "non-finite weights" in _one_line(r.returncode, r.stderr)
    assert _snapshot(tmp_path) == before and not (tmp_path / "new").exists()


@pytest.mark.parametrize("option,value,words", [
    ("--smooth", "-5", "--smooth must be"), ("--smooth", "nan", "--smooth must be"),
    ("--intensity", "9", "--intensity must be"), ("--fps", "0", "--fps must be"),
    ("--threads", "-1", "--threads must be"), ("--mix-weight", "1.5", "--mix-weight must be"),
    ("--size", "300", "--size must be")])
def test_numeric_options_are_range_checked(tmp_path, tiny_ckpt, option, value, words, capsys):
    """issue 9.19 (and 9.16: one threads rule, 0 = all cores, negatives refused)."""
    extra = [option, value] + (["--mix-text", "an angry man"] if option == "--mix-weight" else [])
    code, out, err = _cli_here(_args(tiny_ckpt, FACES / "smile.jpg", SPEECH / "hello_en.wav", tmp_path / "x.mp4", *extra),
                               capsys)
    assert words in _one_line(code, err) and not (tmp_path / "x.mp4").exists()


def test_checkpoint_mixups_say_what_they_are(tmp_path, tiny_ckpt, capsys):
    """issue 9.17: a checkpoint FILE is called a file; a TalkCLIP checkpoint given as --renderer
    is named as such (not 'unknown key' from the renderer config)."""
    base = _args(tiny_ckpt, FACES / "smile.jpg", SPEECH / "hello_en.wav", tmp_path / "x.mp4")
    file_ckpt = list(base)
    file_ckpt[file_ckpt.index("--checkpoint") + 1] = tiny_ckpt / "model.safetensors"
    line = _one_line(*_cli_here(file_ckpt, capsys)[::2])
    assert "is a file" in line and "directory not found" not in line, line
    line = _one_line(*_cli_here(base + ["--renderer", tiny_ckpt], capsys)[::2])
    assert "is a TalkCLIP checkpoint, not a neural renderer" in line, line


def test_success_prints_no_blank_line_and_creates_folders(tmp_path, tiny_ckpt):
    """issue 9.15 (no stray blank line) and issue 8.9 (--out new/dir/out.mp4 makes the folders)."""
    out = tmp_path / "new" / "dir" / "out.mp4"
    r = _cli(*_args(tiny_ckpt, FACES / "smile.jpg", SPEECH / "silence_2s.wav", out, "--threads", "1"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and r.stderr == ""
    assert r.stdout.startswith("wrote ") and "" not in r.stdout.splitlines(), repr(r.stdout)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"]


def _start(args, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen(TALKCLIP + [str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(pred, proc: subprocess.Popen, limit: float = 240.0) -> None:
    """Poll until ``pred()`` holds while ``proc`` runs (a safety limit, not a timing check)."""
    end = time.monotonic() + limit
    while not pred():
        assert proc.poll() is None, f"finished before the signal could be sent: {proc.communicate()}"
        assert time.monotonic() < end, "the run never reached the point to interrupt"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_signal_mid_render_leaves_no_partial_output(tmp_path, tiny_ckpt, sig):
    """issue 9.7: SIGTERM while the mp4 is being written leaves no file under any name (SIGINT:
    test_cli_stream_sigint; it takes the same clean-up path)."""
    work = tmp_path / "work"
    work.mkdir()
    speech = long_speech(tmp_path / "long.wav", "weather_en.wav")
    out = work / "talk.mp4"
    before = _snapshot(work)
    proc = _start(_args(tiny_ckpt, FACES / "smile.jpg", speech, out, "--size", "512", "--threads", "1",
                        "--export-blendshapes", work / "talk.csv"), cwd=work)
    _wait_for(lambda: any(p.name.endswith(".tmp") for p in work.iterdir()), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert "Traceback" not in err
    assert _snapshot(work) == before


def test_crash_mid_render_leaves_no_partial_output(tmp_path, tiny_ckpt, landmarker):
    """A failure while frames are being written (here: the progress callback raising) removes
    the temporary mp4 and writes no CSV."""
    from talkclip.pipelines.generate import generate

    def boom(stage, done, total):
        if done > 40:
            raise RuntimeError("simulated crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(tiny_ckpt, FACES / "smile.jpg", SPEECH / "weather_en.wav", "a calm man", tmp_path / "x.mp4",
                 export_blendshapes=tmp_path / "x.csv", threads=1, progress=boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stream", [False, True])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_ckpt, stream):
    """The file system refusing the video mid-write (here: a 40 kB file-size limit, the way a full
    disk refuses it) is one "cannot write" line, exit 2, and no file under any name."""
    import resource

    def limit():   # in the child: writes past 40 kB fail with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    work = tmp_path / "work"
    work.mkdir()
    out = work / "talk.mp4"
    args = _args(tiny_ckpt, FACES / "smile.jpg", SPEECH / "weather_en.wav", out, "--threads", "1")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run(TALKCLIP + [str(a) for a in args] + (["--stream"] if stream else []), capture_output=True,
                       text=True, cwd=work, env=env, timeout=300, preexec_fn=limit)
    line = _one_line(r.returncode, r.stderr)
    assert "cannot write" in line and str(out) in line, line
    assert list(work.iterdir()) == []


def test_an_error_stops_the_sound_track_at_its_next_second(tmp_path):
    """The sound track is encoded on the encoder thread while the models load; an error then
    (a damaged checkpoint, Ctrl-C) calls BackgroundEncoder.stop, which cancels the rest of a long
    track instead of waiting for all of it: stopped after 5 of 60 s, nothing more is encoded."""
    import threading

    from talkclip.annotate.media import load_audio
    from talkclip.pipelines.generate import BackgroundEncoder, Mp4Writer

    speech = long_speech(tmp_path / "long.wav", "hello_en.wav", seconds=60.0)
    w = Mp4Writer(tmp_path / "a.mp4", 25, 256, load_audio(speech, 48_000))
    started, go = threading.Event(), threading.Event()

    def first() -> None:          # the sound track, held after its first 5 s until the stop arrives
        w._audio_until(5 * 48_000)
        started.set()
        go.wait()
        w.write_audio()
    try:
        enc = BackgroundEncoder(w, first=first)
        started.wait()
        stopper = threading.Thread(target=enc.stop)
        stopper.start()
        while not w.cancelled:
            time.sleep(0.001)
        go.set()
        stopper.join()
        assert w.audio_done == 5 * 48_000 and len(w.audio) == 60 * 48_000
    finally:
        go.set()
        w.abort()
