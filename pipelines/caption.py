"""`talkclip-data caption` / `demo`: decode + track + AU estimation + captions for one media file.

:func:`caption_media` is the whole job as a pure function; the CLI only formats its result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np

from talkclip import InputError, NoFaceError
from talkclip.annotate.au import au_rows, clip_au, get_estimator, load_au_table
from talkclip.annotate.captions import count_variants, render_captions
from talkclip.annotate.emotions import group_labels
from talkclip.annotate.media import iter_frames, probe
from talkclip.annotate.tracker import FaceTracker, track_frames

SUBJECTS = ("man", "woman", "person")
# Below this many pixels (longer side of the landmark box, median over frames with a face) the
# landmarker still answers, but its blendshapes and so the AUs are guesses: say so.
MIN_FACE_PX = 48
T = TypeVar("T")


def prefetch(items: Iterator[T], depth: int = 8) -> Iterator[T]:
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


@dataclass
class CaptionResult:
    video: str
    frames: int
    frames_with_face: int
    fps: float
    aus: list[dict]                 # 12 x {"au", "name", "intensity", "level"}
    captions: list[str]
    subject: str = "person"
    emotion: str | None = None
    level: int | None = None
    emotion_labels: list[str] = field(default_factory=list)
    estimator: str = "mediapipe"
    au_table_sha256: str = ""
    seed: int | str = 0
    warnings: list[str] = field(default_factory=list)   # one line each; the CLI prints them on stderr

    def to_json(self) -> dict:
        """The CLI's JSON object: the issue's keys first, then extra context keys."""
        return asdict(self)


def caption_media(path: str | Path, *, subject: str = "person", emotion: str | None = None,
                  level: int | None = None, n: int = 3, seed: int | str = 0,
                  landmarker: str | Path | None = None, au_table: str | Path | None = None,
                  groups: str | Path | None = None, estimator: str = "mediapipe",
                  on_frame: Callable[[int, int | None], None] | None = None) -> CaptionResult:
    """Caption one video or photo.

    Without ``emotion`` the captions have the AU part only (no emotion is guessed). ``emotion``
    is a MEAD emotion name with ``level`` (1-3; neutral only 1), mapped through the group table
    (``groups``, default the packaged one) to labels from the 135 categories. ``on_frame(i,
    total)`` is called after each tracked frame (for progress bars). Raises InputError (bad
    options, missing file), MediaError (unreadable or truncated media), NoFaceError (no face in
    any frame); a clip with a face in only some frames succeeds.
    """
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    subject = subject.strip().lower()
    if not subject:
        raise InputError("subject must not be empty")
    labels: list[str] = []
    if emotion is not None:
        if level is None:
            if emotion.strip().lower() != "neutral":
                raise InputError("--emotion needs --level (1, 2 or 3)")
            level = 1
        labels = group_labels(emotion, level, groups)
        emotion = emotion.strip().lower()
    elif level is not None:
        raise InputError("--level needs --emotion")
    table = load_au_table(au_table)
    est = get_estimator(estimator)          # fails fast (e.g. py-feat missing or offline)

    info = probe(path)
    total = info.frames

    def frames():
        for fr in prefetch(iter_frames(path)):
            yield fr
            if on_frame is not None:
                on_frame(fr.index + 1, total)

    with FaceTracker(landmarker, mode="image" if info.is_image else "video") as tracker:
        track = track_frames(frames(), tracker, source=info.path, fps=info.fps)
    if track.frames_with_face == 0:
        raise NoFaceError(f"no face found in any of the {track.frames} frame(s) of {info.path}")

    intensity = clip_au(est.estimate(track))                                   # (12,)
    levels = table.levels(intensity)
    warnings = _face_size_warnings(track, info)
    distinct = count_variants(au_levels=levels, au_table=table, emotion_labels=labels)
    if n > distinct:
        warnings.append(f"--n {n} asks for more captions than the {distinct} distinct variant(s) "
                        f"these AUs and labels allow; giving {distinct}")
        n = distinct
    captions = render_captions(subject=subject, au_levels=levels, au_table=table,
                               emotion_labels=labels, n=n, seed=seed)
    return CaptionResult(
        video=str(path), frames=track.frames, frames_with_face=track.frames_with_face,
        fps=float(info.fps), aus=au_rows(intensity, table), captions=captions, subject=subject,
        emotion=emotion, level=level if emotion is not None else None, emotion_labels=labels,
        estimator=est.name, au_table_sha256=table.sha256, seed=seed, warnings=warnings,
    )


def face_size_px(track, width: int, height: int) -> float:
    """Median over frames with a face of the landmark box's longer side, in pixels."""
    lms = track.landmarks[track.face]                                        # (F, 478, 3)
    if not len(lms):
        return 0.0
    span = lms[:, :, :2].max(axis=1) - lms[:, :, :2].min(axis=1)             # (F, 2) normalised
    return float(np.median(np.maximum(span[:, 0] * width, span[:, 1] * height)))


def _face_size_warnings(track, info) -> list[str]:
    size = face_size_px(track, info.width, info.height)
    if size >= MIN_FACE_PX:
        return []
    return [f"the face in {info.path} is only {size:.0f} px across (under {MIN_FACE_PX}); "
            "its AU estimates and captions are unreliable"]


def levels_of(result: CaptionResult) -> np.ndarray:
    """(12,) AU levels of a result, in AU_IDS order."""
    return np.array([a["level"] for a in result.aus], dtype=np.int64)
