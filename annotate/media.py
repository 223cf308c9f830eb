"""Decoding of face media (video and still images) and of speech audio, with PyAV and Pillow.

Every failure to read media is raised as :class:`talkclip.MediaError` with a one-line message.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np

from talkclip import InputError, MediaError, one_line

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
Source = Union[str, Path, BinaryIO]  # a path, or an open binary file (e.g. a tar member)


@dataclass
class MediaInfo:
    path: str
    is_image: bool
    width: int
    height: int
    fps: float            # 0.0 for images
    frames: int | None    # frame count the container declares (None if it does not say)
    duration_s: float     # 0.0 for images
    has_audio: bool


@dataclass
class Frame:
    index: int
    timestamp_ms: int     # strictly increasing within a video
    rgb: np.ndarray       # (H, W, 3) uint8


def _name(src: Source) -> str:
    return str(src) if isinstance(src, (str, Path)) else getattr(src, "name", "<stream>")


def is_image(src: Source) -> bool:
    return Path(_name(src)).suffix.lower() in IMAGE_SUFFIXES


def _check_exists(src: Source) -> None:
    if isinstance(src, (str, Path)) and not Path(src).is_file():
        raise InputError(f"{'not a file' if Path(src).exists() else 'no such file'}: {src}")


def _open_av(src: Source):
    import av

    _check_exists(src)
    try:
        return av.open(str(src) if isinstance(src, (str, Path)) else src)
    except Exception as e:  # av raises many error types for bad input
        raise MediaError(f"cannot read media {_name(src)}: {one_line(e)}") from None



# Photos are reduced to this many pixels on their longer side while decoding: the landmarker
# works on a 192 px face crop, and a 108 MP phone photo would otherwise cost ~0.3 GB per copy.
MAX_IMAGE_SIDE = 4096


def _to_rgb8(im) -> np.ndarray:
    """A Pillow image of any mode -> (H, W, 3) uint8 RGB, shown the way an image viewer shows it:
    alpha composited on white, palettes expanded, 16/32-bit integer and float greys scaled from
    their full range (a 16-bit PNG is not clipped to white)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0                                      # 0..65535 -> 0..255
        elif im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0                                      # float images in 0..1
        g = np.clip(np.round(a), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_image(src: Source) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB: EXIF rotation applied, every mode Pillow opens
    converted as a viewer shows it (see :func:`_to_rgb8`), and photos larger than
    :data:`MAX_IMAGE_SIDE` reduced (quietly: a phone photo is not a decompression bomb)."""
    import warnings

    from PIL import Image, ImageOps

    _check_exists(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                if max(im.size) > MAX_IMAGE_SIDE:
                    im.draft("RGB", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))  # JPEG: decode at reduced scale
                im = ImageOps.exif_transpose(im)
                if max(im.size) > MAX_IMAGE_SIDE:
                    im.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
                return _to_rgb8(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise MediaError(f"cannot read image {_name(src)}: {one_line(e)}") from None


def probe(src: Source) -> MediaInfo:
    """Describe a video or image without decoding every frame."""
    if is_image(src):
        rgb = load_image(src)
        return MediaInfo(_name(src), True, rgb.shape[1], rgb.shape[0], 0.0, 1, 0.0, False)
    with _open_av(src) as c:
        if not c.streams.video:
            raise MediaError(f"no video stream in {_name(src)}")
        vs = c.streams.video[0]
        fps = float(vs.average_rate or vs.guessed_rate or 0.0)
        duration = _stream_duration(c, vs)
        frames = int(vs.frames) if vs.frames else (round(duration * fps) if fps and duration else None)
        return MediaInfo(_name(src), False, vs.codec_context.width, vs.codec_context.height,
                         fps, frames, duration, bool(c.streams.audio))


def _stream_duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000.0
    return 0.0


def iter_frames(src: Source, *, check_complete: bool = True) -> Iterator[Frame]:
    """Yield every frame of a video (or the single frame of an image) as RGB.

    Timestamps come from the stream's presentation times, made strictly increasing (MediaPipe's
    VIDEO mode requires that). With ``check_complete``, a video that stops decoding well short
    of the frame count its container declares (a truncated file) raises :class:`MediaError`.
    """
    if is_image(src):
        yield Frame(0, 0, load_image(src))
        return
    import av

    with _open_av(src) as c:
        if not c.streams.video:
            raise MediaError(f"no video stream in {_name(src)}")
        vs = c.streams.video[0]
        # A fixed decoder thread count (FFmpeg's default follows the CPUs this process may use):
        # how a damaged stream fails, and so the error text, must not depend on the machine or
        # on a build worker's CPU pinning.
        vs.thread_type = "AUTO"
        vs.codec_context.thread_count = 2
        fps = float(vs.average_rate or vs.guessed_rate or 30.0)
        declared = int(vs.frames or 0)
        last_ts, n = -1, 0
        # One reformatter for the whole stream keeps its swscale context (YUV -> RGB) cached;
        # frame.to_ndarray(format=...) builds a new one per frame (~25% of decode CPU here).
        from av.video.reformatter import VideoReformatter

        rgb = VideoReformatter()
        try:
            for frame in c.decode(vs):
                t = frame.time
                ts = int(round(t * 1000)) if t is not None else int(round(n * 1000 / fps))
                ts = max(ts, last_ts + 1)
                last_ts = ts
                yield Frame(n, ts, rgb.reformat(frame, format="rgb24").to_ndarray())
                n += 1
        except av.error.FFmpegError as e:
            if declared and n < declared:  # the data ends early (whether the decoder errs or not)
                raise MediaError(f"truncated video {_name(src)}: decoded {n} of {declared} frames "
                                 f"({one_line(e)})") from None
            raise MediaError(f"corrupt video {_name(src)} after {n} frames: {one_line(e)}") from None
        if n == 0:
            raise MediaError(f"no decodable frames in {_name(src)}")
        # A few frames of slack: containers round their declared counts.
        if check_complete and declared and n < declared - max(5, declared // 20):
            raise MediaError(f"truncated video {_name(src)}: decoded {n} of {declared} frames")


def load_audio(src: Source, sample_rate: int = 16_000) -> np.ndarray:
    """Decode the first audio stream of any container (wav, m4a, mp3, mp4...) to mono float32.

    Returns a (N,) array in [-1, 1] at ``sample_rate``. Raises MediaError when there is no
    audio stream or it cannot be decoded.
    """
    import av

    with _open_av(src) as c:
        if not c.streams.audio:
            raise MediaError(f"no audio stream in {_name(src)}")
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in c.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot decode audio in {_name(src)}: {one_line(e)}") from None
    if not chunks:
        raise MediaError(f"no decodable audio in {_name(src)}")
    wav = np.concatenate(chunks).astype(np.float32)
    if not np.isfinite(wav).all():   # a float WAV may hold NaN/Inf; nothing downstream can use them
        raise MediaError(f"audio {_name(src)} holds NaN or infinite samples")
    return np.clip(wav, -1.0, 1.0)


def read_bytes_source(data: bytes, name: str) -> BinaryIO:
    """Wrap bytes (e.g. a tar member) as a named file object the decoders accept."""
    buf = io.BytesIO(data)
    buf.name = name
    return buf


def prefetch(items: Iterator, depth: int = 8) -> Iterator:
    """Run ``items`` (e.g. video decoding) in a background thread, ``depth`` items ahead.

    Decoding and colour conversion then overlap with the landmarker, whose native calls release
    the GIL. Exceptions raised by the producer (e.g. MediaError for a truncated file) are
    re-raised in the consumer at the point where they happened; closing the consumer early stops
    the producer.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((None, item)):
                    break
            else:
                put((None, done))
        except BaseException as e:  # handed to the consumer thread
            put((e, None))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator: release its file handles in this thread

    worker = threading.Thread(target=produce, name="talkclip-decode", daemon=True)
    worker.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
