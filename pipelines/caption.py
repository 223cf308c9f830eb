"""`talkclip-data caption` / `demo`: decode + track + AU estimation + captions for one media file.

:func:`caption_media` is the whole job as a pure function; the CLI only formats its result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from talkclip import InputError, NoFaceError
from talkclip.annotate.au import au_rows, clip_au, get_estimator, load_au_table
from talkclip.annotate.captions import count_variants, render_captions
from talkclip.annotate.emotions import group_labels
from talkclip.annotate.media import prefetch, probe  # noqa: F401 (prefetch: re-exported)
from talkclip.annotate.tracker import FaceTracker, track_video

SUBJECTS = ("man", "woman", "person")
# Below this many pixels (longer side of the landmark box, median over frames with a face) the
# landmarker still answers, but its blendshapes and so the AUs are guesses: say so.
MIN_FACE_PX = 48


def check_subject(subject: str) -> str:
    """The one --subject rule: man, woman or person (any case) -> the lower-case word."""
    word = (subject or "").strip().lower()
    if word not in SUBJECTS:
        raise InputError(f"--subject must be one of {', '.join(SUBJECTS)}, got {subject!r}")
    return word


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
    subject = check_subject(subject)
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
    frame_done = None if on_frame is None else (lambda i: on_frame(i + 1, total))
    with FaceTracker(landmarker, mode="image" if info.is_image else "video") as tracker:
        track = track_video(path, tracker, source=info.path, fps=info.fps, prefetch=True, on_frame=frame_done)
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
