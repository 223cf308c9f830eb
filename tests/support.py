"""Paths and small builders shared by the tests (importable as `support`: pytest puts tests/ on
sys.path because tests/conftest.py lives there and tests/ has no __init__.py)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("TALKCLIP_FIXTURES", ROOT.parent / "shared" / "fixtures")).resolve()
FACES = FIXTURES / "faces"
SPEECH = FIXTURES / "speech"


# ---- synthetic TA-MEAD (issue 4) -------------------------------------------------------

SYNTH_STYLES = {
    # emotion -> (blendshape channels raised, caption phrase)
    "happy": (("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight"),
              "is happy and speaks with lip corners pulled"),
    "surprised": (("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight"),
                  "is surprised with brows raised"),
    "angry": (("browDownLeft", "browDownRight", "noseSneerLeft", "noseSneerRight"),
              "is angry with brows lowered"),
    "sad": (("mouthFrownLeft", "mouthFrownRight", "browInnerUp"), "is sad with lip corners depressed"),
    "neutral": ((), "is neutral and calm"),
}


def synthetic_clip(rng, emotion: str, frames: int, fps: float = 30.0, sr: int = 16_000):
    """(blendshapes (T, 52) float32, face (T,) bool, audio int16) of one synthetic talking clip:
    audio = noise bursts ("syllables") with an envelope; jawOpen/mouth channels follow the
    envelope; the emotion raises its own channels. Learnable from the audio and the caption."""
    import numpy as np

    from talkclip.schemas import BLENDSHAPE_NAMES

    idx = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
    n = int(round(frames / fps * sr))
    t = np.arange(n) / sr
    rate = rng.uniform(2.5, 4.5)
    env = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.28)), 0, None) ** 2  # (n,)
    env *= (rng.uniform(0, 1, size=int(t[-1] * rate) + 2) > 0.25)[(t * rate).astype(int)]
    audio = (env * rng.normal(0, 0.3, n) * np.sin(2 * np.pi * rng.uniform(150, 300) * t)).astype(np.float32)
    frame_env = env[(np.arange(frames) / fps * sr).astype(int).clip(0, n - 1)]    # (T,)
    bs = np.full((frames, len(BLENDSHAPE_NAMES)), 0.02, dtype=np.float32)
    bs[:, idx["jawOpen"]] = 0.05 + 0.6 * frame_env
    bs[:, idx["mouthLowerDownLeft"]] = bs[:, idx["mouthLowerDownRight"]] = 0.03 + 0.3 * frame_env
    bs[:, idx["mouthClose"]] = 0.2 * (1 - frame_env)
    for name in SYNTH_STYLES[emotion][0]:
        bs[:, idx[name]] = 0.5 + 0.15 * frame_env
    bs += rng.normal(0, 0.002, bs.shape).astype(np.float32)
    face = np.ones(frames, dtype=bool)
    return bs.clip(0, 1), face, (audio * 32767).clip(-32768, 32767).astype(np.int16)


def write_synthetic_tamead(out_dir, n_clips: int = 8, frames: int = 90, seed: int = 0, *,
                           missing_face_clip: bool = True, test_clips: int = 1):
    """A small TA-MEAD directory (clips/frames/audio/failures parquet + manifest.json) with
    synthetic but structured content (see :func:`synthetic_clip`), cast to the schemas.
    The last ``test_clips`` clips go to the test split; with ``missing_face_clip`` clip 0 has
    a few frames without a face. Returns the directory."""
    import dataclasses
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from talkclip.schemas import cast_table
    from talkclip.schemas.tamead import (AUDIO_SCHEMA, CLIPS_SCHEMA, FAILURES_SCHEMA, FRAMES_SCHEMA,
                                         AudioRow, ClipRow, FramesRow)

    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    emotions = list(SYNTH_STYLES)
    clips, frame_rows, audio_rows = [], [], []
    for k in range(n_clips):
        emo = emotions[k % len(emotions)]
        spk = "M003" if k % 2 == 0 else "W009"
        subject = "man" if spk.startswith("M") else "woman"
        bs, face, audio = synthetic_clip(rng, emo, frames)
        if missing_face_clip and k == 0:
            face[5:9] = False
            bs[5:9] = 0.0
        cid = f"{spk}_front_{emo}_level_1_{k:03d}"
        phrase = SYNTH_STYLES[emo][1]
        caps = [f"A {subject} {phrase}.", f"The {subject} {phrase}.", f"A {subject} is talking."]
        clips.append(ClipRow(
            clip_id=cid, speaker=spk, gender=subject, view="front", emotion=emo, level=1, take=f"{k:03d}",
            video_path=f"{cid}.mp4", audio_path=f"{cid}.m4a", audio_source="m4a", fps=30.0, frames=frames,
            frames_with_face=int(face.sum()), duration_s=frames / 30.0, audio_duration_s=len(audio) / 16000,
            av_mismatch=False, au_intensity_raw=[0.0] * 12, au_intensity=[0.0] * 12, au_level=[0] * 12,
            emotion_labels=[emo], captions=caps, split="test" if k >= n_clips - test_clips else "train"))
        frame_rows.append(FramesRow(clip_id=cid, fps=30.0, timestamp_ms=[int(i * 1000 / 30) for i in range(frames)],
                                    face=face.tolist(), blendshapes=bs.tolist(),
                                    pose=[np.eye(4, dtype=np.float32).ravel().tolist()] * frames, landmarks=None))
        audio_rows.append(AudioRow(clip_id=cid, sample_rate=16000, samples=audio.tolist()))
    for name, rows, schema in (("clips", clips, CLIPS_SCHEMA), ("frames", frame_rows, FRAMES_SCHEMA),
                               ("audio", audio_rows, AUDIO_SCHEMA), ("failures", [], FAILURES_SCHEMA)):
        (out / name).mkdir(parents=True, exist_ok=True)
        if rows:
            table = cast_table(pa.Table.from_pylist([dataclasses.asdict(r) for r in rows]), schema)
        else:
            table = schema.empty_table()
        pq.write_table(table, out / name / "part-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"tool": "synthetic (tests/support.py)", "clips": n_clips}))
    return out


def write_phoneme_track(out_dir, *, drop: int = 0, n_frames: int | None = None) -> dict[str, list[int]]:
    """Add a phonemes table (issue 13) to a synthetic TA-MEAD: phones recognised from each clip's
    audio by the real extractor, on its frame grid (``n_frames`` overrides the length; the last
    ``drop`` clips get no row). Returns clip id -> frame ids."""
    import dataclasses

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from talkclip.annotate.phonemes import clip_track
    from talkclip.schemas import cast_table
    from talkclip.schemas.tamead import PHONEMES_SCHEMA, PhonemesRow

    out = Path(out_dir)
    clips = pq.read_table(out / "clips").select(["clip_id", "fps", "frames"]).to_pylist()
    audio = {r["clip_id"]: r["samples"] for r in pq.read_table(out / "audio").to_pylist()}
    rows = []
    for c in clips[:len(clips) - drop]:
        track = clip_track(np.asarray(audio[c["clip_id"]], np.int16), c["fps"], n_frames or c["frames"])
        rows.append(PhonemesRow(clip_id=c["clip_id"], **track))
    (out / "phonemes").mkdir(exist_ok=True)
    table = cast_table(pa.Table.from_pylist([dataclasses.asdict(r) for r in rows]), PHONEMES_SCHEMA)
    pq.write_table(table, out / "phonemes" / "part-00000.parquet")
    return {r.clip_id: list(r.frame_ids) for r in rows}


# ---- tiny checkpoint (issues 5, 14) ------------------------------------------------------

def tiny_checkpoint(out_dir, seed: int = 0) -> Path:
    """A random-init TalkCLIP checkpoint of the ``tiny`` config (model.safetensors + config.json)."""
    import torch

    from talkclip.model.checkpoint import save_checkpoint
    from talkclip.model.config import load_config
    from talkclip.model.talkclip import TalkCLIP

    torch.manual_seed(seed)
    return save_checkpoint(TalkCLIP(load_config("tiny")), Path(out_dir))


# ---- CLI runner and partial-face video (issue 2) -----------------------------------------

def data_cli_command() -> list[str]:
    """The installed `talkclip-data` console script next to the running interpreter."""
    import sys

    script = Path(sys.executable).parent / "talkclip-data"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from talkclip.cli import data_app; data_app()"]


def run_data_cli(*args: str, env: dict | None = None, timeout: float = 300):
    """Run `talkclip-data ARGS` in a subprocess; returns the CompletedProcess (text mode)."""
    import subprocess

    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([*data_cli_command(), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def assert_one_line_error(proc) -> str:
    """A CLI run that failed as users should see it: exit 2, one stderr line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip() == ""
    return lines[0]


def write_partial_face_video(path, n_each: int = 12, size=(640, 360), fps: int = 24):
    """Write an H.264 mp4: ``n_each`` frames of no_face.mp4, then ``n_each`` of single_face.mp4."""
    import av
    import numpy as np
    from PIL import Image

    from talkclip.annotate.media import iter_frames

    frames = []
    for name in ("no_face.mp4", "single_face.mp4"):
        for k, fr in enumerate(iter_frames(FACES / name, check_complete=False)):
            if k >= n_each:
                break
            frames.append(np.asarray(Image.fromarray(fr.rgb).resize(size)))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# ---- mini-MEAD from the fixture media (issue 3) ------------------------------------------

MINI_CLIP_S = 1.2
# (speaker, view, emotion, level, take, source, start s, kind); kinds: "av" = mp4 with its own
# audio, "m4a" = silent mp4 + separate m4a, "mismatch" = m4a 0.6 s longer than the video,
# "noaudio" = silent mp4 and no m4a, "truncated" = faststart mp4 cut to 40 % of its bytes (opens,
# then stops decoding early, like an interrupted download).
MINI_MEAD_PLAN = (
    ("M001", "front", "neutral", 1, "001", "talking", 0.0, "av"),
    ("M001", "front", "neutral", 1, "002", "talking", 2.0, "av"),
    ("M001", "front", "angry", 1, "001", "talking", 4.0, "av"),
    ("M001", "front", "happy", 2, "001", "talking", 6.0, "av"),
    ("M001", "front", "happy", 3, "001", "talking", 8.0, "av"),
    ("M001", "front", "sad", 2, "001", "talking", 10.0, "m4a"),
    ("M001", "front", "fear", 1, "001", "talking", 12.0, "mismatch"),
    ("M001", "front", "surprised", 1, "001", "no_face", 0.5, "av"),
    ("M001", "front", "angry", 3, "001", "talking", 14.0, "truncated"),
    ("M001", "front", "disgusted", 1, "001", "talking", 16.0, "noaudio"),
    ("M001", "left_30", "neutral", 1, "001", "talking", 0.0, "av"),
    ("W001", "front", "neutral", 1, "001", "single_face", 0.0, "m4a"),
    ("W001", "front", "neutral", 1, "002", "single_face", 1.2, "av"),
    ("W001", "front", "happy", 1, "001", "talking", 17.5, "m4a"),
    ("W001", "front", "angry", 2, "001", "talking", 3.0, "av"),
)
MINI_EXPECTED_FAILURES = {  # clip id -> stage
    "M001_front_surprised_level_1_001": "track",
    "M001_front_angry_level_3_001": "decode",
    "M001_front_disgusted_level_1_001": "audio",
}


def make_mini_mead(root: Path, *, with_tar: bool = True) -> dict:
    """Build a mini-MEAD under ``root`` from the fixture media in about a second.

    Two speakers: M001 (extracted layout) and W001 (``video.tar`` + ``audio.tar`` when
    ``with_tar``, else extracted too); 1.2 s clips at half the fixtures' size. M001 has neutral
    and emotion clips plus the awkward cases: a clip with no face (no_face.mp4 cut), a truncated
    mp4, an mp4 without audio whose m4a exists, one whose m4a is 0.6 s too long (flagged), one
    with no audio at all, and a left_30 view clip. Returns facts the tests check against:
    ``root``, ``speakers``, ``front_clips`` (ids of the front view), ``expected_ok``,
    ``expected_failures`` (id -> stage), ``av_mismatch``, ``audio_source`` (id -> "m4a" | "video"),
    ``tar_speaker`` (or None), ``other_views``.
    """
    import tarfile

    import numpy as np

    from talkclip.annotate.media import load_audio
    from talkclip.pipelines.mead import clip_id
    from talkclip.pipelines.sample import cut, read_video, write_m4a, write_mp4

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sources = {
        "talking": (FACES / "talking_pexels.mp4", 2),
        "single_face": (FACES / "single_face.mp4", 2),
        "no_face": (FACES / "no_face.mp4", 2),
    }
    media = {}
    for name, (path, scale) in sources.items():
        frames, fps = read_video(path, scale=scale)
        frames = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]
        media[name] = (frames, fps, None)
    # The fixture videos' own audio is silent (talking_pexels) or near-silent, so every clip gets
    # real speech: the two espeak-ng sentences, looped, cut at the clip's start time.
    speech = np.concatenate([load_audio(SPEECH / "hello_en.wav", 16_000), load_audio(SPEECH / "weather_en.wav", 16_000)])
    speech = np.tile(speech, 3)                                            # (N,) ~28 s at 16 kHz
    for name, (frames, fps, _) in media.items():
        media[name] = (frames, fps, speech)

    facts = dict(root=root, speakers=["M001", "W001"], front_clips=[], expected_ok=[],
                 expected_failures=dict(MINI_EXPECTED_FAILURES), av_mismatch=[], audio_source={},
                 tar_speaker="W001" if with_tar else None, other_views=[])
    staged: dict[str, list[tuple[str, Path]]] = {}   # tar speaker -> [(member name, file)]
    tmp_root = root / ".staging" if with_tar else root
    for spk, view, emo, level, take, src, start, kind in MINI_MEAD_PLAN:
        cid = clip_id(spk, view, emo, level, take)
        base = tmp_root if (with_tar and spk == "W001") else root
        video = base / spk / "video" / view / emo / f"level_{level}" / f"{take}.mp4"
        m4a = base / spk / "audio" / emo / f"level_{level}" / f"{take}.m4a"
        frames, fps, audio = media[src]
        fr, au = cut(frames, fps, audio, start, MINI_CLIP_S)
        if kind in ("av", "truncated"):
            write_mp4(video, fr, fps, au, faststart=kind == "truncated")
        else:
            write_mp4(video, fr, fps, None)
        if kind == "m4a":
            write_m4a(m4a, au)
        elif kind == "mismatch":
            write_m4a(m4a, audio[int(start * 16_000): int((start + MINI_CLIP_S + 0.6) * 16_000)])
        if kind == "truncated":
            data = video.read_bytes()
            video.write_bytes(data[: int(len(data) * 0.4)])
        if view != "front":
            facts["other_views"].append(cid)
            continue
        facts["front_clips"].append(cid)
        if cid not in MINI_EXPECTED_FAILURES:
            facts["expected_ok"].append(cid)
            facts["audio_source"][cid] = "m4a" if kind in ("m4a", "mismatch") else "video"
        if kind == "mismatch":
            facts["av_mismatch"].append(cid)
        if with_tar and spk == "W001":
            staged.setdefault(spk, [])
    if with_tar:
        for spk in staged:
            src_dir = tmp_root / spk
            (root / spk).mkdir(parents=True, exist_ok=True)
            for part in ("video", "audio"):
                files = sorted(p for p in (src_dir / part).rglob("*") if p.is_file())
                with tarfile.open(root / spk / f"{part}.tar", "w") as tf:
                    for p in files:
                        tf.add(p, arcname=p.relative_to(src_dir).as_posix())
        import shutil

        shutil.rmtree(tmp_root)
    facts["front_clips"].sort()
    facts["expected_ok"].sort()
    return facts


_MINI_CACHE: dict = {}


def cached_mini_mead(with_tar: bool = True) -> dict:
    """make_mini_mead built once per test process (in a temp folder removed at exit)."""
    import atexit
    import shutil
    import tempfile

    key = ("mead", with_tar)
    if key not in _MINI_CACHE:
        root = Path(tempfile.mkdtemp(prefix="talkclip-mini-mead-"))
        atexit.register(shutil.rmtree, root, True)
        _MINI_CACHE[key] = make_mini_mead(root / "mead", with_tar=with_tar)
    return _MINI_CACHE[key]


def cached_mini_build(jobs: int = 2) -> tuple[dict, Path]:
    """(mini-MEAD facts, TA-MEAD folder) of one straight build_ta_mead run, once per test process.

    Tests that modify a build must copy the folder first (shutil.copytree).
    """
    import atexit
    import shutil
    import tempfile

    from talkclip.pipelines.build_ta_mead import build_ta_mead

    key = ("build", jobs)
    if key not in _MINI_CACHE:
        facts = cached_mini_mead()
        out = Path(tempfile.mkdtemp(prefix="talkclip-mini-build-")) / "ta_mead"
        atexit.register(shutil.rmtree, out.parent, True)
        summary = build_ta_mead(facts["root"], out, jobs=jobs)
        _MINI_CACHE[key] = (facts, out, summary)
    facts, out, _ = _MINI_CACHE[key]
    return facts, out


def read_build_tables(out: Path) -> dict:
    """Every published table of a build as a pyarrow Table sorted by clip id."""
    import pyarrow.parquet as pq

    tables = {}
    for name in ("clips", "frames", "audio", "failures"):
        files = sorted(p for p in (Path(out) / name).glob("*.parquet") if not p.name.startswith("."))
        if files:
            import pyarrow as pa

            tables[name] = pa.concat_tables([pq.read_table(p) for p in files]).sort_by("clip_id")
    return tables


def cached_mini_build_summary(jobs: int = 2):
    """The Summary returned by the build of :func:`cached_mini_build`."""
    cached_mini_build(jobs)
    return _MINI_CACHE[("build", jobs)][2]


# ---- mini corpora for the corpus recipes (issue 10) ---------------------------------------
# Each is cut from the fixture media with the real naming and containers of its corpus; the
# facts returned say what the recipe must make of it. Clips are short and small (0.8 s at half
# the fixtures' size) so a build of one corpus takes a few seconds.

RECIPE_CLIP_S = 0.8


def _recipe_media() -> dict:
    """name -> (frames at half size with even sides, fps); speech name -> 16 kHz float audio."""
    if "media" not in _MINI_CACHE:
        from talkclip.annotate.media import load_audio
        from talkclip.pipelines.sample import read_video

        media = {}
        for name, file in (("talking", "talking_pexels.mp4"), ("single_face", "single_face.mp4"),
                           ("no_face", "no_face.mp4")):
            frames, fps = read_video(FACES / file, scale=2)
            media[name] = ([f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames], fps)
        for name in ("kids_door_en", "dogs_door_en", "hello_en", "weather_en"):
            media[name] = load_audio(SPEECH / f"{name}.wav", 16_000)
        _MINI_CACHE["media"] = media
    return _MINI_CACHE["media"]


def _recipe_cut(source: str, start: float, speech: str | None, sample_rate: int = 16_000,
                length_s: float = RECIPE_CLIP_S):
    """(frames, fps, audio at ``sample_rate`` or None) of a ``length_s`` window of a fixture; the
    audio is the start of ``speech``, padded with silence when the speech is shorter."""
    import numpy as np

    from talkclip.pipelines.sample import cut

    media = _recipe_media()
    frames, fps = media[source]
    clip, _ = cut(frames, fps, None, start, length_s)
    audio = None
    if speech is not None:
        wav = media[speech]
        n = int(round(len(clip) / fps * 16_000))
        audio = np.zeros(n, np.float32)                                         # (n,)
        audio[: min(n, len(wav))] = wav[:n]
        if sample_rate != 16_000:
            idx = np.arange(int(round(n * sample_rate / 16_000))) * 16_000 / sample_rate
            audio = np.interp(idx, np.arange(n), audio).astype(np.float32)     # (n * sr / 16k,)
    return clip, fps, audio


def write_wav(path, audio, sample_rate: int = 16_000):
    """Mono float audio (N,) in [-1, 1] -> 16-bit PCM WAV."""
    import wave

    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def long_speech(path, source: str, seconds: float = 10.0) -> Path:
    """A 16 kHz speech WAV of ``seconds``: the fixture ``source`` (a file in SPEECH) repeated,
    long enough for a run to be interrupted in the middle."""
    import numpy as np

    from talkclip.annotate.media import load_audio

    x = load_audio(SPEECH / source, 16000)
    n = int(seconds * 16000)
    return write_wav(path, np.tile(x, int(np.ceil(n / len(x))))[:n])


def wait_for_first_shard(proc, out: Path, limit: float = 180.0) -> Path:
    """Poll until the build writing ``out`` (run by ``proc``) has committed its first stage-1
    shard (``limit`` s is a safety limit, not a timing check) -> that stage-1 folder."""
    import time

    from talkclip.pipelines import shards

    stage1 = Path(out) / ".work" / "stage1"
    deadline = time.monotonic() + limit
    while not shards.shard_files(stage1):
        assert proc.poll() is None, "build ended before its first shard was seen"
        assert time.monotonic() < deadline, "no shard committed in time"
        time.sleep(0.01)
    return stage1


def write_flv(path, frames, fps: float):
    """RGB frames -> Flash video (FLV container, Sorenson H.263 'flv1' codec, as CREMA-D's
    VideoFlash files), without an audio track."""
    from talkclip.pipelines.sample import write_video

    return write_video(path, frames, fps, container="flv", codec="flv")


# (file name in Actor_NN/, source, start s, speech or None = video-only mp4 without audio); the
# full-AV clips with a face last RAVDESS_CLIP_S and hold the whole statement (espeak-ng), so the
# build's --phonemes can align it
RAVDESS_CLIP_S = 2.3
MINI_RAVDESS_PLAN = (
    ("01-01-01-01-01-01-01.mp4", "talking", 0.0, "kids_door_en"),    # neutral normal, kids
    ("01-01-03-02-02-01-01.mp4", "talking", 2.0, "dogs_door_en"),    # happy strong, dogs
    ("02-01-03-02-02-01-01.mp4", "talking", 2.0, None),              # video-only twin: dropped
    ("02-01-05-01-01-01-01.mp4", "talking", 4.0, None),              # video-only, no twin: fails "audio"
    ("01-02-03-01-01-01-01.mp4", "talking", 6.0, "kids_door_en"),    # song: only with --include-song
    ("01-01-04-01-01-01-02.mp4", "single_face", 0.0, "kids_door_en"),  # sad normal
    ("01-01-01-01-02-01-02.mp4", "single_face", 0.0, "dogs_door_en"),  # neutral normal, dogs
    ("01-01-08-01-01-01-02.mp4", "no_face", 0.5, "kids_door_en"),    # surprised: no face, fails "track"
    ("01-01-01-02-01-01-02.mp4", "single_face", 0.0, "kids_door_en"),  # neutral "strong": bad name
)


def make_mini_ravdess(root: Path) -> dict:
    """RAVDESS-shaped: Actor_01 (male) and Actor_02 (female), mp4 with AAC audio at 48 kHz."""
    from talkclip.pipelines.sample import write_mp4

    root = Path(root)
    for name, src, start, speech in MINI_RAVDESS_PLAN:
        actor = name[-6:-4]
        length = RAVDESS_CLIP_S if speech and src != "no_face" else RECIPE_CLIP_S
        frames, fps, audio = _recipe_cut(src, start, speech, 48_000, length)
        write_mp4(root / f"Actor_{actor}" / name, frames, fps, audio, sample_rate=48_000)
    (root / "Actor_01" / "notes.txt").write_text("not a video: ignored\n")
    return dict(root=root, ok=["01-01-01-01-01-01-01", "01-01-03-02-02-01-01", "01-01-01-01-02-01-02",
                               "01-01-04-01-01-01-02"],
                failures={"02-01-05-01-01-01-01": "audio", "01-01-08-01-01-01-02": "track"},
                song="01-02-03-01-01-01-01", bad_names=["01-01-01-02-01-01-02.mp4"])


# (stem, source, start s, write the WAV?)
MINI_CREMA_PLAN = (
    ("1001_DFA_ANG_XX", "talking", 0.0, True),
    ("1001_IEO_HAP_HI", "talking", 2.0, True),
    ("1001_ITS_NEU_XX", "talking", 4.0, True),
    ("1002_TIE_SAD_LO", "single_face", 0.0, True),
    ("1002_IWW_FEA_MD", "single_face", 1.0, False),   # no WAV, FLV without audio: fails "audio"
    ("1002_TAI_DIS_XX", "no_face", 0.5, True),        # no face: fails "track"
    ("1002_ABC_HAP_XX", "single_face", 0.0, True),    # unknown sentence code: bad name
)


def make_mini_crema_d(root: Path) -> dict:
    """CREMA-D-shaped: VideoFlash/*.flv + AudioWAV/*.wav (16 kHz); demographics name 1001 only."""
    root = Path(root)
    for stem, src, start, wav in MINI_CREMA_PLAN:
        frames, fps, audio = _recipe_cut(src, start, "hello_en" if stem[5:8] in ("DFA", "TIE") else "weather_en")
        write_flv(root / "VideoFlash" / f"{stem}.flv", frames, fps)
        if wav:
            write_wav(root / "AudioWAV" / f"{stem}.wav", audio)
    (root / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n")
    return dict(root=root, ok=["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1001_ITS_NEU_XX", "1002_TIE_SAD_LO"],
                failures={"1002_IWW_FEA_MD": "audio", "1002_TAI_DIS_XX": "track"},
                bad_names=["1002_ABC_HAP_XX.flv"])


# (relative path, source, start s, audio: "own" track, "wav" beside it, or None)
MINI_FOLDER_PLAN = (
    ("spkA/a1.mp4", "talking", 0.0, "own"),
    ("spkA/a2.mp4", "talking", 3.0, "own"),
    ("spkB/b1.mp4", "single_face", 0.0, "wav"),
    ("spkB/b2.mp4", "no_face", 0.5, "own"),       # no face: fails "track"
    ("spkB/b3.mp4", "single_face", 1.0, None),    # no audio anywhere: fails "audio"
    ("loose.mp4", "talking", 5.0, "own"),         # not in a speaker folder / not in the CSV
)
MINI_FOLDER_CSV = ("path,speaker,emotion,intensity\n"
                   "spkA/a1.mp4,,happy,high\n"
                   "spkA/a2.mp4,anna,,\n"
                   "spkB/b1.mp4,,sad,\n"
                   "spkB/b2.mp4,,angry,low\n"
                   "spkB/b3.mp4,,,\n"
                   "spkB/missing.mp4,,happy,low\n")


def make_mini_folder(root: Path, *, with_csv: bool) -> dict:
    """A plain folder of mp4s, with or without labels.csv (see MINI_FOLDER_PLAN / MINI_FOLDER_CSV)."""
    from talkclip.pipelines.sample import write_mp4

    root = Path(root)
    for rel, src, start, audio_kind in MINI_FOLDER_PLAN:
        frames, fps, audio = _recipe_cut(src, start, "weather_en")
        write_mp4(root / rel, frames, fps, audio if audio_kind == "own" else None)
        if audio_kind == "wav":
            write_wav((root / rel).with_suffix(".wav"), audio)
    if with_csv:
        (root / "labels.csv").write_text(MINI_FOLDER_CSV)
        return dict(root=root, ok=["spkA__a1", "spkA__a2", "spkB__b1"],
                    failures={"spkB__b2": "track", "spkB__b3": "audio"}, skipped=2)
    return dict(root=root, ok=["spkA__a1", "spkA__a2", "spkB__b1"],
                failures={"spkB__b2": "track", "spkB__b3": "audio"}, skipped=1)


def cached_mini_corpus(name: str) -> dict:
    """One mini corpus ("ravdess", "crema-d", "folder-csv", "folder") per test process."""
    import atexit
    import shutil
    import tempfile

    key = ("corpus", name)
    if key not in _MINI_CACHE:
        tmp = Path(tempfile.mkdtemp(prefix=f"talkclip-mini-{name}-"))
        atexit.register(shutil.rmtree, tmp, True)
        makers = {"ravdess": make_mini_ravdess, "crema-d": make_mini_crema_d,
                  "folder-csv": lambda r: make_mini_folder(r, with_csv=True),
                  "folder": lambda r: make_mini_folder(r, with_csv=False)}
        _MINI_CACHE[key] = makers[name](tmp / "corpus")
    return _MINI_CACHE[key]


def cached_corpus_build(name: str):
    """(facts, build folder, Summary) of one straight in-process build of a mini corpus, once per
    test process. ``name`` as for :func:`cached_mini_corpus`. Copy the folder before changing it."""
    import atexit
    import shutil
    import tempfile

    from talkclip.pipelines.build_ta_mead import BuildOptions, build
    from talkclip.pipelines.recipes import RecipeSource, get_recipe

    key = ("corpus-build", name)
    if key not in _MINI_CACHE:
        facts = cached_mini_corpus(name)
        out = Path(tempfile.mkdtemp(prefix=f"talkclip-{name}-build-")) / "out"
        atexit.register(shutil.rmtree, out.parent, True)
        source = RecipeSource(get_recipe(name.replace("-csv", "")), facts["root"])
        options = BuildOptions(jobs=1, phonemes=name == "ravdess")     # RAVDESS: align its statements
        _MINI_CACHE[key] = (facts, out, build(source, out, options))
    return _MINI_CACHE[key]
