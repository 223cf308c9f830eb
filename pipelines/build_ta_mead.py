"""``talkclip-data build-ta-mead``: MEAD -> TA-MEAD Parquet tables, in parallel and resumable.

The build is generic: :func:`build` takes a :class:`ClipSource` (what to build: a corpus root
and its clip listing, from a recipe in :mod:`talkclip.pipelines.recipes`) and one frozen
:class:`BuildOptions` (how: jobs, tables, captions, split...). :func:`build_ta_mead` is the
MEAD entry point with the historical keyword arguments.

Two phases
----------
1. **Tracking** (expensive, per clip, in ``jobs`` worker processes). Each worker decodes its
   clips, tracks the face with one MediaPipe landmarker (VIDEO mode), estimates per-frame AUs,
   decodes the audio, and appends the clip's rows to buffers. Every ``shard_clips`` clips (and
   at the end) it commits a batch: ``frames/<tag>.parquet`` and ``audio/<tag>.parquet`` (final
   tables), ``.work/failures/<tag>.parquet``, then ``.work/stage1/<tag>.parquet`` last. The
   stage-1 shard (one row per attempted clip, with the raw clip-level AU means) is the commit
   record: at start-up, frames/audio/failure shards without a stage-1 shard of the same tag
   (left by a killed build) are deleted, and clips with a stage-1 row are skipped. Every write
   is atomic (:mod:`talkclip.pipelines.shards`).
2. **Annotation** (cheap, recomputed from all stage-1 rows on every run): per-speaker neutral
   baseline, AU levels (AU table), emotion labels (group table), K captions, speaker split;
   then ``clips/``, ``failures/``, ``manifest.json`` and the dataset card ``README.md``.

So a build killed with SIGKILL and rerun with the same command skips the committed clips and
ends with the same tables as an uninterrupted build (timing fields aside); a rerun of a
finished build tracks nothing and only redoes phase 2, which also makes a rerun with a new
``--au-table`` / ``--groups`` / ``--captions`` / ``--seed`` / ``--test-speakers`` cheap. The
phase-1 options are recorded in ``.work/options.json``: a rerun into the same folder must use
the same MEAD root and ``--landmarks``; its filters may change only so that every clip built
so far stays selected (a first run with ``--limit 20`` may be followed by the full run).
Tables only ever hold clips of the current selection.

One landmarker per worker
-------------------------
VIDEO mode needs strictly increasing timestamps per landmarker, so each clip's frames are fed
with timestamps shifted past the previous clip's last one plus a 1 s gap; the stored timestamps
are the clip's own. Measured with mediapipe 1.2.3: results of a clip tracked after another clip
on a reused landmarker are bit-identical to a fresh landmarker's (also for two consecutive
pieces of one video), so results do not depend on which worker got which clip or in what order.
A fresh landmarker costs ~15 ms after the first (~0.6 s) per process.

Semantics
---------
- Audio: the clip's separate audio file when the corpus has one (MEAD's m4a, CREMA-D's wav),
  else the video's own audio track (``audio_source`` "m4a" | "wav" | "video"). A clip with **no audio at all is a failure** (stage "audio"). A clip whose
  audio and video durations differ by more than 0.2 s is **kept and flagged**
  (``av_mismatch = true``, counted in the manifest and the summary): readers that need exact
  lip sync should drop or trim those rows.
- A clip fails (one row in ``failures``, no rows elsewhere) at stage "read" (tar member cannot
  be read), "decode" (unreadable or truncated video), "track" (no face in any frame), "audio"
  (no audio, undecodable audio) or "annotate" (AU estimation); each stage is its own function
  that reports its own failure. A video without a frame rate fails at "decode" (its frames
  cannot be timed) instead of being assumed 30 fps. A rerun retries the failed clips (their
  inputs may have been fixed; ``retry_failed=False`` keeps them as failed) and reports how many
  were retried, recovered and still fail.
- A damaged archive (a truncated ``video.tar``) does not stop the build: the clips listed in it
  that cannot be read fail at "read" with the reason, the other speakers are built.
- Phonemes (``phonemes=True``, ``--phonemes``): stage "phonemes" (after "annotate") writes
  each clip's phoneme track (``phonemes/<tag>.parquet``, committed with its frames; see
  :mod:`talkclip.annotate.phonemes`): forced alignment of the clip's ``sentence`` when the
  corpus defines one (RAVDESS, CREMA-D), else phone recognition (MEAD: its per-clip sentences
  are not established; see the README). The manifest's ``phonemes`` records which, per clip
  count. A rerun into the same folder must keep ``--phonemes`` as it was.
- ``jobs`` above the number of CPUs this process may use is capped to it (with a warning).
- ``executor="ray"`` runs phase 1 on Ray actors instead of local processes
  (:mod:`talkclip.pipelines.ray_executor`; ``jobs`` actors, 0 = one per CPU of the cluster);
  shards, commits, resume and phase 2 are the ones described here.
- Ctrl-C stops the workers, keeps every committed shard and raises :class:`BuildInterrupted`
  ("interrupted; rerun the same command to resume"); the CLI exits 130.
- Neutral baseline (default on, ``baseline=False`` to switch off): per (speaker, view), the mean
  raw AU intensity of that speaker's neutral clips is subtracted from every clip of that
  speaker before levelling (``au_intensity``; ``au_intensity_raw`` keeps the raw value). A
  speaker without neutral clips is not baselined (listed in the manifest).
- The baseline and the split are computed from the clips of the current selection: a build
  filtered with ``--emotions happy`` (no neutral clips) or a ``--limit`` that cuts off a
  speaker's neutral clips levels AUs without that speaker's baseline (the manifest lists
  unbaselined speakers), and may split differently from a full build.
- Split: whole speakers are held out for test, ``test_speakers`` of them (default 6), chosen by
  a stable hash of the speaker id, alternating men and women (as the recipe tells them), among the speakers with at least
  one built clip (a speaker all of whose clips failed is never a test speaker). With fewer than
  ``2 * test_speakers`` speakers the hold-out shrinks to half the speakers (rounded down) and a
  warning is given.
- Labels and levels: the recipe's label table (``--groups`` replaces it) maps each clip's
  (emotion, intensity) to a TA-MEAD level and labels from the 135 categories, in phase 2 (so a
  rerun with another table relabels without tracking); a clip without emotion gets level 0 and
  AU-only captions; the caption subject is the clip's ``gender`` word from its recipe.
- Captions: K variants per clip, deterministic for (seed, clip id), from
  :func:`talkclip.annotate.captions.render_captions` (which includes the variants that drop
  the emotion or the AU part).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import re
import sys
import signal
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np
import pyarrow as pa

from talkclip import InputError, MediaError, NoFaceError, TalkclipError, __version__, one_line, usable_cpus
from talkclip.schemas import AU_IDS, NUM_BLENDSHAPES, NUM_LANDMARKS
from talkclip.schemas.build import BUILD_MARKERS, WORK_DIR, dequantise_landmarks, quantise_landmarks
from talkclip.schemas.files import atomic_write_text, claim_output_dir
from talkclip.schemas.tamead import (AUDIO_SAMPLE_RATE, AUDIO_SCHEMA, CLIPS_SCHEMA, FAILURES_SCHEMA,
                                     FRAMES_SCHEMA, PHONEMES_SCHEMA, STAGE1_SCHEMA, ClipRow, FailureRow,
                                     PhonemesRow, Stage1Row)

from . import shards
from .mead import MediaRef

if TYPE_CHECKING:
    from .recipes import ClipSpec

__all__ = ["BuildOptions", "ClipSource", "BuildInterrupted", "Summary", "ProgressEvent", "build", "build_ta_mead",
           "annotate_clips", "hold_out_speakers", "build_manifest", "quantise_landmarks", "dequantise_landmarks"]

AV_TOLERANCE_S = 0.2
TIMESTAMP_GAP_MS = 1000
DEFAULT_SHARD_CLIPS = 64
FORMAT = "ta-mead/1"
PHASE1_KEYS = ("mead", "corpus", "root", "speakers", "views", "emotions", "limit", "landmarks", "phonemes")
# a rerun into the same folder must keep these: they decide the stored phase-1 results
PHASE1_FIXED = ("mead", "corpus", "root", "landmarks", "landmarker_sha256", "au_mapping_sha256", "phonemes")
INTERRUPTED = "interrupted; rerun the same command to resume"


# ----------------------------------------------------------------------------- public types

class ClipSource(Protocol):
    """What a build reads: one corpus root and the clips of a selection from it.

    Every corpus recipe is one (:class:`talkclip.pipelines.recipes.RecipeSource`; MEAD's recipe
    is ``recipes/mead.py``). Its clips are :class:`~talkclip.pipelines.recipes.ClipSpec` rows.
    """

    name: str                 # corpus name, e.g. "mead"
    root: Path                # resolved corpus root; media paths are stored relative to it
    warnings: list[str]       # found while listing (skipped names, a damaged archive); set by list_clips
    skipped_names: int        # files skipped because their names do not follow the corpus's scheme
    labels: Path              # the recipe's packaged label table (used without --groups)

    def list_clips(self) -> Sequence[ClipSpec]:
        """The selected clips sorted by clip id; LayoutError/InputError for unusable input."""
        ...

    def label_table(self, groups: Path | None) -> dict:
        """(emotion, intensity) -> LabelRow (level, labels); InputError when a listed clip has no row."""
        ...

    def card_source(self) -> dict:
        """The corpus, its licence and citation and the recipe version (manifest + card)."""
        ...

    def selection(self) -> dict:
        """The filters that chose the clips (JSON-able), recorded in options.json and the manifest."""
        ...


@dataclass(frozen=True)
class BuildOptions:
    """How to build (everything but the corpus and the output folder), checked once here."""

    jobs: int = 1
    landmarks: bool = False
    au_table: Path | None = None
    groups: Path | None = None
    baseline: bool = True
    n_captions: int = 5
    seed: int = 0
    test_speakers: int = 6
    shard_clips: int = DEFAULT_SHARD_CLIPS
    landmarker: Path | None = None
    retry_failed: bool = True
    phonemes: bool = False          # store a phoneme track per clip (aligned or recognised)
    executor: str = "local"                 # "local" (process pool) | "ray" (pipelines/ray_executor.py)
    ray_address: str | None = None          # with "ray": host:port, or None/"auto" (see ray_executor.connect)

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise InputError(f"--executor must be local or ray, got {self.executor!r}")
        ray = self.executor == "ray"          # --jobs 0: one Ray actor per CPU slot of the cluster
        for name, flag, value, least in (("jobs", "--jobs", self.jobs, 0 if ray else 1), ("n_captions", "--captions", self.n_captions, 1),
                                         ("test_speakers", "--test-speakers", self.test_speakers, 0),
                                         ("shard_clips", "--shard-size", self.shard_clips, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InputError(f"{flag} must be >= {least}, got {value}")
        for name in ("au_table", "groups", "landmarker"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def workers(self) -> tuple[int, str | None]:
        """(worker processes, notice): ``jobs`` capped at the CPUs this process may use (with
        Ray, at the cluster's CPU slots, later: see ray_executor.run_phase1)."""
        if self.executor == "ray":
            return self.jobs, None
        cpus = usable_cpus()
        if self.jobs > cpus:
            return cpus, f"--jobs {self.jobs} is more than the {cpus} CPU(s) here: using {cpus} worker(s)"
        return self.jobs, None


class BuildInterrupted(TalkclipError):
    """Ctrl-C during a build: committed work is kept; the message says how to resume. Exit 130,
    as for any process stopped by SIGINT."""

    exit_code = 130

    def __init__(self) -> None:
        super().__init__(INTERRUPTED)


@dataclass
class ProgressEvent:
    """Reported to the ``progress`` callback: "start", one "clip" per processed clip, "annotate", "done"."""

    stage: str
    total: int            # clips to process in this run
    done: int             # clips processed so far in this run
    failed: int           # failures so far in this run
    skipped: int          # clips already done by an earlier run
    clip_id: str | None = None
    ok: bool | None = None
    frames: int = 0


@dataclass
class Summary:
    out_dir: Path
    selected: int                 # clips in the selection (after filters and --limit)
    skipped: int                  # built by an earlier run, not tracked again
    processed: int                # tracked (or failed) in this run
    failed_now: int               # failures among this run's clips
    clips: int                    # rows of the clips table
    failed: int                   # rows of the failures table
    av_mismatch: int              # kept clips flagged for audio/video length mismatch
    frames: int                   # frames in the frames table
    frames_now: int               # frames tracked in this run
    missing: int                  # selected clips with no result (a worker died): rerun to resume
    train_speakers: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)
    failures_by_stage: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    track_seconds: float = 0.0    # wall time of phase 1 in this run
    retried: int = 0              # clips that had failed before and were tried again in this run
    recovered: int = 0            # ... of which succeeded now
    still_failing: int = 0        # ... of which failed again
    kept_failed: int = 0          # failed before and not retried (retry_failed=False)
    skipped_names: int = 0        # corpus files skipped because their names do not follow its scheme
    train_clips: int = 0
    test_clips: int = 0
    jobs: int = 1                 # worker processes used

    @property
    def exit_code(self) -> int:
        """0 when every clip succeeded, 1 when some failed (recorded) or are missing."""
        return 0 if self.failed == 0 and self.missing == 0 else 1


# ----------------------------------------------------------------------------- phase 1: workers

@dataclass(frozen=True)
class _WorkerConfig:
    out_dir: str
    root: str               # corpus root (media paths are stored relative to it)
    landmarks: bool
    shard_clips: int
    run_tag: str
    landmarker: str | None = None
    phonemes: bool = False


@dataclass
class _ClipResult:
    clip_id: str
    ok: bool
    frames: int = 0
    stage: str | None = None
    error: str | None = None


def _rel(ref: MediaRef | None, root: str) -> str | None:
    """A media reference relative to the corpus root: "M003/video/..." or "M003/video.tar::video/..."."""
    if ref is None:
        return None
    p = os.path.relpath(ref.path, root)
    return p if ref.member is None else f"{p}::{ref.member}"


def _run_tag() -> str:
    """A shard tag that sorts in commit order across runs (UTC time to the nanosecond + random)."""
    ns = time.time_ns()
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(ns // 10**9))}{ns % 10**9:09d}-{uuid.uuid4().hex[:6]}"


class _StageError(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def _stage(name: str, fn: Callable, *args):
    """Run one stage of a clip; any failure becomes a _StageError blaming that stage."""
    try:
        return fn(*args)
    except _StageError:
        raise
    except TalkclipError as e:
        raise _StageError(name, one_line(e)) from None
    except (OSError, EOFError) as e:
        raise _StageError(name, f"{type(e).__name__}: {one_line(e)}") from None
    except Exception as e:  # an unexpected bug must not stop a batch job: record it
        raise _StageError(name, f"unexpected {type(e).__name__}: {one_line(e)}") from None


def _rewind(src: Any) -> None:
    if hasattr(src, "seek"):
        src.seek(0)


# -- the stages of one clip (each raises; _stage names the stage in the failure)

def _phoneme_track(wav: np.ndarray, fps: float, n_frames: int, sentence: str | None) -> dict:
    """Stage "phonemes": the clip's phoneme-table columns (aligned to ``sentence`` when known)."""
    from talkclip.annotate.phonemes import clip_track

    return clip_track(wav, fps, n_frames, sentence or None)


def _open_media(clip) -> tuple[Any, Any]:
    """Stage "read": the video (and separate audio) as decoder sources."""
    return clip.video.open(), (clip.audio.open() if clip.audio is not None else None)


def _probe_video(data):
    """Stage "decode": the stream facts; a video without a frame rate cannot be timed."""
    from talkclip.annotate.media import probe

    info = probe(data)
    _rewind(data)
    _check_frame_rate(info)
    return info


def _check_frame_rate(info) -> None:
    """A video whose stream declares no frame rate fails (it is not assumed to be 30 fps)."""
    if not info.fps or not np.isfinite(info.fps) or info.fps <= 0:
        raise MediaError(f"no frame rate in the video stream of {info.path}: its frames cannot be timed")


def _read_audio(clip, data, audio_src, has_audio_track: bool, root: str) -> tuple[np.ndarray, str, str | None]:
    """Stage "audio": (16 kHz mono float wav, source: the separate file's kind ("m4a", "wav") or
    "video", its path relative to the root)."""
    from talkclip.annotate.media import load_audio

    if audio_src is not None:
        return load_audio(audio_src, AUDIO_SAMPLE_RATE), clip.audio_kind, _rel(clip.audio, root)
    if has_audio_track:
        _rewind(data)
        return load_audio(data, AUDIO_SAMPLE_RATE), "video", _rel(clip.video, root)
    raise MediaError("no audio: no separate audio file for this clip and the video has no audio track")


class ClipWorker:
    """Tracks clips one by one with one landmarker and commits them in batches (see module doc)."""

    def __init__(self, cfg: _WorkerConfig, index: int = 0):
        from talkclip.annotate.au import get_estimator

        self.cfg = cfg
        self.index = index
        self.out = Path(cfg.out_dir)
        self.work = self.out / WORK_DIR
        self.estimator = get_estimator("mediapipe")
        self._tracker = None
        self._next_ts = 0
        self._seq = 0
        self._reset_buffers()

    # -- buffers
    def _reset_buffers(self) -> None:
        self._stage1: list = []
        self._frames: list[dict] = []
        self._audio: list[tuple[str, np.ndarray]] = []
        self._phonemes: list = []
        self._failures: list = []

    @property
    def pending(self) -> int:
        return len(self._stage1)

    def tracker(self):
        from talkclip.annotate.tracker import FaceTracker

        if self._tracker is None:
            self._tracker = FaceTracker(self.cfg.landmarker, mode="video")
        return self._tracker

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    # -- one clip
    def process(self, clip) -> _ClipResult:
        t0 = time.perf_counter()
        cid = clip.clip_id
        base = clip_base_row(clip, self.cfg.root)
        video_path = base["video_path"]
        try:
            row, frames_row, pcm, phonemes = self._run(clip)
        except _StageError as e:
            message = str(e).replace(self.cfg.root.rstrip("/") + "/", "")   # paths relative to the root
            self._failures.append(FailureRow(clip_id=cid, stage=e.stage, error=message, path=video_path))
            self._stage1.append(Stage1Row(**base, ok=False, track_s=time.perf_counter() - t0))
            self._maybe_flush()
            return _ClipResult(cid, False, 0, e.stage, message)
        self._stage1.append(Stage1Row(**base, **row, ok=True, track_s=time.perf_counter() - t0))
        self._frames.append(frames_row)
        self._audio.append((cid, pcm))
        if phonemes is not None:
            self._phonemes.append(PhonemesRow(clip_id=cid, **phonemes))
        self._maybe_flush()
        return _ClipResult(cid, True, row["frames"])

    def _run(self, clip) -> tuple[dict, dict, np.ndarray, dict | None]:
        """The stages of one clip, in order; the first that fails names the failure."""
        data, audio_src = _stage("read", _open_media, clip)
        info = _stage("decode", _probe_video, data)
        track = _stage("track", self._track, data, clip, info.fps)
        wav, source, audio_path = _stage("audio", _read_audio, clip, data, audio_src, info.has_audio, self.cfg.root)
        raw = _stage("annotate", self._annotate, track)
        fps = float(info.fps)
        phonemes = (_stage("phonemes", _phoneme_track, wav, fps, track.frames, getattr(clip, "sentence", None))
                    if self.cfg.phonemes else None)
        duration, audio_duration = track.frames / fps, len(wav) / AUDIO_SAMPLE_RATE
        row = dict(audio_path=audio_path, audio_source=source, fps=fps, width=track.width, height=track.height,
                   frames=track.frames, frames_with_face=track.frames_with_face, duration_s=duration,
                   audio_duration_s=audio_duration, av_mismatch=bool(abs(audio_duration - duration) > AV_TOLERANCE_S),
                   au_intensity_raw=[float(x) for x in raw])
        pcm = np.round(np.clip(wav, -1.0, 1.0) * 32767.0).astype(np.int16)     # (N,)
        return row, self._frames_row(clip.clip_id, fps, track), pcm, phonemes

    def _track(self, data, clip, fps: float):
        """Stage "track" (a decoding error on the way is a "decode" failure)."""
        from talkclip.annotate.tracker import track_video

        tracker = self.tracker()
        offset = self._next_ts
        try:
            track = track_video(data, tracker, source=clip.video.display, fps=fps, offset_ms=offset)
        except MediaError as e:
            raise _StageError("decode", one_line(e)) from None
        except Exception:
            self.close()          # a landmarker that failed mid-clip is not reused
            raise
        finally:
            # the next clip's timestamps start past this one's last (see module doc)
            self._next_ts = 0 if self._tracker is None else tracker._last_ts + TIMESTAMP_GAP_MS
        if track.frames_with_face == 0:
            raise NoFaceError(f"no face found in any of the {track.frames} frames")
        return track

    def _annotate(self, track) -> np.ndarray:
        """Stage "annotate": the clip's raw AU means (12,)."""
        from talkclip.annotate.au import clip_au

        return clip_au(self.estimator.estimate(track))                    # (T, 12) -> (12,)

    def _frames_row(self, clip_id: str, fps: float, track) -> dict:
        T = track.frames
        return dict(
            clip_id=clip_id, fps=fps,
            timestamp_ms=track.timestamp_ms.astype(np.int32),                 # (T,)
            face=track.face.astype(bool),                                     # (T,)
            blendshapes=track.blendshapes.astype(np.float32),                 # (T, 52)
            pose=track.pose.reshape(T, 16).astype(np.float32),                # (T, 16)
            landmarks=quantise_landmarks(track.landmarks) if self.cfg.landmarks else None,  # (T, 1434) int16
        )

    # -- commits
    def _maybe_flush(self) -> None:
        if self.pending >= self.cfg.shard_clips:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered clips: frames, audio, failures, then the stage-1 record."""
        if not self._stage1:
            return
        tag = f"{self.cfg.run_tag}-{self.index:02d}-{self._seq:05d}"
        self._seq += 1
        commit_record(self.out, tag, *self.write_data(tag))

    def write_data(self, tag: str) -> tuple[list, list]:
        """Write the buffered frames/audio shards as ``<tag>``, empty the buffers, and return the
        (stage-1 rows, failure rows) that :func:`commit_record` commits (the Ray executor's
        driver commits them, see pipelines/ray_executor.py)."""
        if self._frames:
            shards.write_table(frames_table(self._frames), FRAMES_SCHEMA, self.out / "frames" / f"{tag}.parquet")
            shards.write_table(audio_table(self._audio), AUDIO_SCHEMA, self.out / "audio" / f"{tag}.parquet")
        if self._phonemes:
            shards.write_rows(self._phonemes, PHONEMES_SCHEMA, self.out / "phonemes" / f"{tag}.parquet")
        rows = (self._stage1, self._failures)
        self._reset_buffers()
        return rows


def commit_record(out: Path, tag: str, stage1: Sequence, failures: Sequence) -> None:
    """Commit a batch whose data shards ``<tag>`` are written: failures, then the stage-1 record."""
    work = Path(out) / WORK_DIR
    if failures:
        shards.write_rows(failures, FAILURES_SCHEMA, work / "failures" / f"{tag}.parquet")
    shards.write_rows(stage1, STAGE1_SCHEMA, work / "stage1" / f"{tag}.parquet")


def clip_base_row(clip, root: str) -> dict:
    """The stage-1 fields every attempted clip has, failed or not (media paths relative to ``root``)."""
    return dict(clip_id=clip.clip_id, speaker=clip.speaker, gender=clip.gender, view=clip.view, emotion=clip.emotion,
                intensity=clip.intensity, level=clip.level, take=clip.take, sentence=clip.sentence,
                video_path=_rel(clip.video, root))


def frames_table(rows: Sequence[dict]) -> pa.Table:
    """Per-clip frame rows (numpy arrays) -> a FRAMES_SCHEMA table, built without Python lists."""
    cols = {
        "clip_id": pa.array([r["clip_id"] for r in rows], pa.string()),
        "fps": pa.array([r["fps"] for r in rows], pa.float32()),
        "timestamp_ms": shards.list_of_values([r["timestamp_ms"] for r in rows], pa.int32()),
        "face": shards.list_of_values([r["face"] for r in rows], pa.bool_()),
        "blendshapes": shards.list_of_fixed([r["blendshapes"] for r in rows], NUM_BLENDSHAPES, pa.float32()),
        "pose": shards.list_of_fixed([r["pose"] for r in rows], 16, pa.float32()),
    }
    lm_type = FRAMES_SCHEMA.field("landmarks").type
    if all(r["landmarks"] is not None for r in rows):
        cols["landmarks"] = shards.list_of_fixed([r["landmarks"] for r in rows], NUM_LANDMARKS * 3, pa.int16())
    else:
        cols["landmarks"] = pa.nulls(len(rows), lm_type)
    if set(cols) != set(FRAMES_SCHEMA.names):
        raise ValueError(f"frames_table columns {sorted(cols)} differ from FRAMES_SCHEMA")
    return pa.table(cols)


def audio_table(rows: Sequence[tuple[str, np.ndarray]]) -> pa.Table:
    return pa.table({
        "clip_id": pa.array([cid for cid, _ in rows], pa.string()),
        "sample_rate": pa.array([AUDIO_SAMPLE_RATE] * len(rows), pa.int32()),
        "samples": shards.list_of_values([pcm for _, pcm in rows], pa.int16()),
    })


def _parent_alive() -> bool:
    import multiprocessing as mp

    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def _pin_to_core(index: int) -> None:
    """Pin worker ``index`` to one of the CPUs this process may use (round-robin).

    MediaPipe's landmarker runs its inference on a small pool of threads that expects a core of
    its own. Measured on a 2-core machine: two unpinned landmarker processes tracked 103 frames/s
    together against 98 for one, pinned 197; bench/build_throughput.py gives 2.04x from 1 to 2
    build jobs. No-op where affinity is not supported.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    except (AttributeError, OSError):
        pass


def _worker_main(index: int, cfg: _WorkerConfig, tasks, results) -> None:
    """Worker process: take clips until the None sentinel, commit, report each clip.

    Ctrl-C reaches every process of the terminal's group: workers ignore it and let the parent
    decide (it stops them), so no worker prints a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pin_to_core(index)
    out = Path(cfg.out_dir)
    lock = open(out / WORK_DIR / "workers.lock", "a")
    fcntl.flock(lock, fcntl.LOCK_SH)     # a new build waits until no worker of an old one is left
    worker = ClipWorker(cfg, index)
    try:
        while True:
            try:   # poll: if the build is killed, the task pipe may never deliver again
                clip = tasks.get(timeout=1.0)
            except queue.Empty:
                if not _parent_alive():
                    return
                continue
            if clip is None or not _parent_alive():
                break
            res = worker.process(clip)
            if not _parent_alive():       # the build was killed: commit nothing more
                return
            results.put(("clip", asdict(res)))
        if _parent_alive():
            worker.flush()
            results.put(("flushed", index))
    except BaseException as e:  # report, so the parent does not wait forever
        results.put(("crash", f"worker {index}: {type(e).__name__}: {one_line(e)}"))
        raise
    finally:
        worker.close()
        lock.close()


def _start_quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with its stderr on /dev/null.

    A Ctrl-C reaches every process of the terminal's group; when it lands while the queues'
    semaphores are being released, the tracker (which cleans them up anyway) prints "leaked
    semaphore" warnings after our one line. Its only output is such warnings, so it gets none of
    the user's terminal. It inherits fd 2 when it starts, hence the brief redirection.
    """
    from multiprocessing import resource_tracker

    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _run_inline(todo: Sequence, cfg: _WorkerConfig, emit: Callable[[_ClipResult], None]) -> list[str]:
    """Phase 1 in this process (jobs 1). On Ctrl-C the clips finished so far are committed."""
    worker = ClipWorker(cfg, 0)
    try:
        for clip in todo:
            emit(worker.process(clip))
    except KeyboardInterrupt:
        worker.flush()
        raise
    finally:
        worker.close()
    worker.flush()
    return []


def _collect(procs, results, n: int, emit: Callable[[_ClipResult], None]) -> list[str]:
    """Read worker reports until every worker flushed or crashed; returns crash messages."""
    crashes: list[str] = []
    flushed = 0
    while flushed + len(crashes) < n:
        try:
            kind, payload = results.get(timeout=0.5)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                # drain what is left, then stop: dead workers' clips stay unprocessed
                with contextlib.suppress(queue.Empty):
                    while True:
                        kind, payload = results.get(timeout=0.2)
                        if kind == "clip":
                            emit(_ClipResult(**payload))
                if flushed + len(crashes) < n:
                    crashes.append("a worker process died without reporting")
                break
            continue
        if kind == "clip":
            emit(_ClipResult(**payload))
        elif kind == "flushed":
            flushed += 1
        else:
            crashes.append(str(payload))
    return crashes


def _run_phase1(todo: Sequence, cfg: _WorkerConfig, jobs: int, emit: Callable[[_ClipResult], None],
                options: BuildOptions | None = None) -> list[str]:
    """Track ``todo``; returns crash messages (empty when all went well)."""
    if not todo:
        return []
    if options is not None and options.executor == "ray":
        from .ray_executor import run_phase1

        return run_phase1(todo, cfg, emit, jobs=jobs, address=options.ray_address)
    if jobs <= 1:
        return _run_inline(todo, cfg, emit)
    import multiprocessing as mp

    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    _start_quiet_resource_tracker()
    tasks, results = ctx.Queue(), ctx.Queue()
    for clip in todo:
        tasks.put(clip)
    n = min(jobs, len(todo))
    for _ in range(n):
        tasks.put(None)
    procs = [ctx.Process(target=_worker_main, args=(i, cfg, tasks, results), daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    interrupted = False
    try:
        return _collect(procs, results, n, emit)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if interrupted:        # stop at once: committed shards stay, the rest is redone by a rerun
            tasks.cancel_join_thread()
            results.cancel_join_thread()
            for p in procs:
                p.terminate()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


# ----------------------------------------------------------------------------- phase 2: annotation

def hold_out_speakers(speakers: Sequence[str], n_test: int,
                      genders: dict[str, str] | None = None) -> tuple[list[str], list[str], list[str]]:
    """(train, test, warnings): ``n_test`` speakers held out, chosen by a stable hash of their id,
    alternating genders (``genders``: speaker -> "man" | "woman" | other; without it the M/W
    prefixes of MEAD's ids); fewer when the corpus is small (see module doc)."""
    speakers = sorted(set(speakers))
    warnings: list[str] = []
    k = max(0, int(n_test))
    if k and len(speakers) < 2 * k:
        k_small = len(speakers) // 2
        warnings.append(f"only {len(speakers)} speaker(s): holding out {k_small} for test instead of {n_test}")
        k = k_small
    key = lambda s: hashlib.sha256(f"talkclip-split/{s}".encode()).hexdigest()  # noqa: E731
    by_group: dict[str, list[str]] = {}
    for s in sorted(speakers, key=key):
        group = {"man": "M", "woman": "W"}.get(genders.get(s), "?") if genders is not None else s[:1].upper()
        by_group.setdefault(group if group in "MW" else "?", []).append(s)
    order = [g for g in ("M", "W", "?") if g in by_group]
    test: list[str] = []
    while len(test) < k:
        for g in order:
            if by_group[g] and len(test) < k:
                test.append(by_group[g].pop(0))
    train = [s for s in speakers if s not in test]
    return train, sorted(test), warnings


def annotate_clips(stage1: pa.Table, *, au_table, groups: dict, baseline: bool = True,
                   n_captions: int = 5, seed: int = 0, test_speakers: int = 6,
                   speakers: Sequence[str] | None = None) -> tuple[pa.Table, dict]:
    """Phase 2: stage-1 rows of successful clips -> the clips table (CLIPS_SCHEMA) and facts.

    ``speakers``: the speakers the split chooses from; default those in ``stage1`` (the
    build passes the speakers with at least one built clip).
    Returns (table sorted by clip id, info) with info keys train_speakers, test_speakers,
    baseline (per "speaker/view": 12 floats), unbaselined_speakers, warnings.
    """
    from talkclip.annotate.au import clip_au
    from talkclip.annotate.captions import render_captions

    rows = stage1.sort_by("clip_id").to_pylist()
    warnings: list[str] = []
    # per (speaker, view) neutral mean of the raw clip AUs
    neutral: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in rows:
        if r["emotion"] == "neutral":
            neutral.setdefault((r["speaker"], r["view"]), []).append(np.asarray(r["au_intensity_raw"], np.float64))
    base_of = {k: np.nanmean(np.stack(v), axis=0) for k, v in neutral.items()} if baseline else {}
    unbaselined = sorted({r["speaker"] for r in rows if (r["speaker"], r["view"]) not in base_of}) if baseline else []
    if unbaselined:
        warnings.append(f"no neutral clips (no baseline) for: {', '.join(unbaselined)}")
    train, test, split_warn = hold_out_speakers(speakers if speakers is not None else [r["speaker"] for r in rows],
                                                test_speakers, {r["speaker"]: r["gender"] for r in rows})
    warnings += split_warn
    test_set = set(test)
    missing_groups: set[tuple[str, str]] = set()
    for r in rows:
        raw = np.asarray(r["au_intensity_raw"], np.float64)                  # (12,)
        intensity = clip_au(raw[None, :], base_of.get((r["speaker"], r["view"])))  # (12,)
        levels = au_table.levels(intensity)                                  # (12,) 0..3
        group = groups.get((r["emotion"], r["intensity"])) if r["emotion"] else None   # LabelRow
        if r["emotion"] and group is None:
            missing_groups.add((r["emotion"], r["intensity"]))
        labels, r["level"] = (list(group.labels), group.level) if group else ([], r["level"])
        r["au_intensity"] = [float(x) for x in intensity]
        r["au_level"] = [int(x) for x in levels]
        r["emotion_labels"] = labels
        r["captions"] = render_captions(subject=r["gender"], au_levels=levels, au_table=au_table,
                                        emotion_labels=labels or None, n=n_captions,
                                        seed=f"{seed}:{r['clip_id']}")
        r["split"] = "test" if r["speaker"] in test_set else "train"
    if missing_groups:
        warnings.append("label table has no row for " + ", ".join(f"{e}/{i}" for e, i in sorted(missing_groups)))
    stage1_only = set(STAGE1_SCHEMA.names) - set(CLIPS_SCHEMA.names)     # ok, track_s
    table = shards.rows_to_table([ClipRow(**{k: v for k, v in r.items() if k not in stage1_only}) for r in rows],
                                 CLIPS_SCHEMA)
    info = dict(train_speakers=train, test_speakers=test, warnings=warnings, unbaselined_speakers=unbaselined,
                baseline={f"{s}/{v}": [round(float(x), 6) for x in b] for (s, v), b in sorted(base_of.items())})
    return table, info


# ----------------------------------------------------------------------------- the build

@contextlib.contextmanager
def _exclusive(path: Path, what: str, wait_s: float = 0.0):
    f = open(path, "a")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                f.close()
                raise InputError(what) from None
            time.sleep(0.2)
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _check_options(work: Path, phase1: dict, committed: set[str], selected: set[str]) -> None:
    """Refuse a rerun whose phase-1 results would not fit the folder's earlier ones.

    The corpus root, --landmarks, the landmarker model file and the AU mapping table must stay
    the same (they decide the stored per-clip results). Filters (--speakers/--views/--emotions/
    --limit) may change as long as every clip already built stays in the selection (e.g. a
    first run with --limit 20, then the full run); the tables never hold clips outside it.
    """
    p = work / "options.json"
    if p.is_file():
        old = json.loads(p.read_text())
        fixed = [k for k in PHASE1_FIXED if old.get(k) != phase1.get(k)]
        if fixed:
            raise InputError(f"{work.parent} holds a build with other {', '.join(fixed)} "
                             f"({', '.join(f'{k}={old.get(k)!r}' for k in fixed)}); use the same options or a new --out")
        outside = sorted(committed - selected)
        if outside:
            diff = [k for k in PHASE1_KEYS if old.get(k) != phase1.get(k)]
            raise InputError(f"{work.parent} already holds {len(outside)} clip(s) outside this selection "
                             f"(e.g. {outside[0]}; changed: {', '.join(diff) or 'none'}); "
                             f"use the earlier filters, a wider selection, or a new --out")
    atomic_write_text(p, json.dumps(phase1, indent=1))


def _remove_uncommitted(out: Path) -> int:
    """Delete shards a killed build wrote without its stage-1 commit record; sweep temp files."""
    work = out / WORK_DIR
    committed = {p.stem for p in shards.shard_files(work / "stage1")}
    n = 0
    for folder in (out / "frames", out / "audio", out / "phonemes", work / "failures", work / "stage1", out / "clips",
                   out / "failures"):
        n += shards.remove_temp_files(folder)
    for folder in (out / "frames", out / "audio", out / "phonemes", work / "failures"):
        for p in shards.shard_files(folder):
            if p.stem not in committed:
                p.unlink()
                n += 1
    return n


def _latest(table: pa.Table, keep: set[str]) -> pa.Table:
    """The last row per clip id (shards are read in commit order, so a retried clip's newest
    result wins) among the clip ids in ``keep``."""
    ids = table.column("clip_id").to_pylist()
    last = {cid: i for i, cid in enumerate(ids) if cid in keep}
    return table.take(pa.array(sorted(last.values()), pa.int64()))


def _committed(work: Path, selected: set[str]) -> tuple[pa.Table, pa.Table]:
    """(stage-1 rows, failure rows) of the selection: the newest per clip, failures only for
    clips whose newest result is a failure."""
    stage1 = _latest(shards.read_table(work / "stage1", STAGE1_SCHEMA), selected)
    failed = {cid for cid, ok in zip(stage1.column("clip_id").to_pylist(), stage1.column("ok").to_pylist()) if not ok}
    failures = _latest(shards.read_table(work / "failures", FAILURES_SCHEMA), failed).sort_by("clip_id")
    return stage1, failures


@dataclass
class _Run:
    """One build run: what it reads, where it writes, and the phase-1 bookkeeping."""

    source: Any
    clips: Sequence
    out: Path
    options: BuildOptions
    au_table: Any
    group_table: dict
    landmarker: Path
    phase1: dict
    jobs: int
    emit: Callable[[ProgressEvent], None]
    warnings: list[str]
    t_start: float
    done: int = 0
    failed: int = 0
    frames: int = 0
    ok_now: set = field(default_factory=set)

    @property
    def work(self) -> Path:
        return self.out / WORK_DIR


def build(source, out_dir: str | Path, options: BuildOptions | None = None, *,
          progress: Callable[[ProgressEvent], None] | None = None) -> Summary:
    """Build (or resume) a TA-MEAD-shaped dataset from ``source`` (a :class:`ClipSource`) into
    ``out_dir``; see the module docstring.

    Raises LayoutError / InputError for unusable input (nothing is tracked or written then),
    :class:`BuildInterrupted` on Ctrl-C. Clip failures are recorded in the failures table and
    reported in the returned :class:`Summary`.
    """
    from talkclip.annotate.au import AU_MAPPING_PATH, load_au_table
    from talkclip.annotate.tracker import FaceTracker, resolve_landmarker, sha256_file

    t_start = time.perf_counter()
    options = options or BuildOptions()
    _check_output_location(out_dir, options)
    clips = list(source.list_clips())
    au_table = load_au_table(options.au_table)
    group_table = source.label_table(options.groups)   # checked against the listed clips
    landmarker = resolve_landmarker(options.landmarker)
    FaceTracker(landmarker, mode="video").close()   # a broken model file fails here, not per clip
    jobs, notice = options.workers()
    out = claim_output_dir(Path(out_dir).resolve(), BUILD_MARKERS, "a TA-MEAD build")
    work = out / WORK_DIR
    try:
        work.mkdir(exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {work}: {one_line(e)}") from None
    root = Path(source.root).resolve()
    where = {"mead": str(root)} if source.name == "mead" else {"corpus": source.name, "root": str(root)}
    phase1 = dict(where, **source.selection(), landmarks=bool(options.landmarks),
                  landmarker_sha256=sha256_file(landmarker), au_mapping_sha256=sha256_file(AU_MAPPING_PATH),
                  **({"phonemes": True} if options.phonemes else {}))   # absent = off (older builds)
    run = _Run(source, clips, out, options, au_table, group_table, landmarker, phase1, jobs,
               progress or (lambda ev: None), [notice] if notice else [], t_start)
    run.warnings += list(getattr(source, "warnings", []))
    with _exclusive(work / "build.lock", f"another build is writing to {out}"):
        try:
            return _build_locked(run)
        except KeyboardInterrupt:
            raise BuildInterrupted() from None


def _check_output_location(out_dir: str | Path, options: BuildOptions) -> None:
    """Refuse URL outputs; with Ray, check that Ray is installed and the cluster reachable."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(out_dir)):
        raise InputError(f"--out {out_dir}: URLs (s3://, gs://, ...) are not supported; build into a folder "
                         "(with --executor ray one that every node mounts at the same path) and copy it, "
                         "or mount the bucket (mountpoint-s3, s3fs, gcsfuse) and pass the mount path")
    if options.executor == "ray":
        from .ray_executor import preflight

        preflight(options.ray_address)


def _build_locked(run: _Run) -> Summary:
    # workers of an earlier (killed) build notice their parent is gone and stop within a clip
    with _exclusive(run.work / "workers.lock", f"worker processes of an earlier build still write to {run.out}",
                    wait_s=60):
        pass
    _remove_uncommitted(run.out)
    selected = {c.clip_id for c in run.clips}
    _check_options(run.work, run.phase1, set(shards.read_column(run.work / "stage1", "clip_id")), selected)
    stage1, _ = _committed(run.work, selected)
    ok_before = {cid for cid, ok in zip(stage1.column("clip_id").to_pylist(), stage1.column("ok").to_pylist()) if ok}
    failed_before = set(stage1.column("clip_id").to_pylist()) - ok_before
    retry = failed_before if run.options.retry_failed else set()
    todo = [c for c in run.clips if c.clip_id not in ok_before and (c.clip_id not in failed_before or c.clip_id in retry)]
    skipped = len(run.clips) - len(todo)
    run.emit(ProgressEvent("start", len(todo), 0, 0, skipped))

    def on_clip(r: _ClipResult) -> None:
        run.done += 1
        run.failed += 0 if r.ok else 1
        run.frames += r.frames
        if r.ok:
            run.ok_now.add(r.clip_id)
        run.emit(ProgressEvent("clip", len(todo), run.done, run.failed, skipped, r.clip_id, r.ok, r.frames))

    cfg = _WorkerConfig(str(run.out), str(Path(run.source.root).resolve()), bool(run.options.landmarks),
                        int(run.options.shard_clips), _run_tag(), str(run.landmarker), bool(run.options.phonemes))
    t1 = time.perf_counter()
    crashes = _run_phase1(todo, cfg, run.jobs, on_clip, run.options)
    track_seconds = time.perf_counter() - t1

    run.emit(ProgressEvent("annotate", len(todo), run.done, run.failed, skipped))
    summary = _phase2(run, selected, crashes, track_seconds)
    summary.skipped = skipped
    retried = retry & {c.clip_id for c in todo}
    summary.retried, summary.recovered = len(retried), len(retried & run.ok_now)
    summary.still_failing = summary.retried - summary.recovered
    summary.kept_failed = len(failed_before & selected) - len(retried)
    run.emit(ProgressEvent("done", len(todo), run.done, run.failed, skipped))
    return summary


def _phase2(run: _Run, selected: set[str], crashes: list[str], track_seconds: float) -> Summary:
    """Phase 2 (cheap; from every committed stage-1 row of the selection): tables, manifest, card."""
    from .card import dataset_card

    stage1, failures = _committed(run.work, selected)
    ok = stage1.filter(stage1.column("ok"))
    built_speakers = sorted(set(ok.column("speaker").to_pylist()))
    o = run.options
    clip_table, info = annotate_clips(ok, au_table=run.au_table, groups=run.group_table, baseline=o.baseline,
                                      n_captions=o.n_captions, seed=o.seed, test_speakers=o.test_speakers,
                                      speakers=built_speakers)
    missing = len(selected) - stage1.num_rows
    warnings = run.warnings + list(info["warnings"]) + crashes
    if missing:
        warnings.append(f"{missing} clip(s) were not processed (a worker died); rerun the same command to resume")
    _write_outputs(run.out, clip_table, failures)
    by_stage: dict[str, int] = {}
    for s in failures.column("stage").to_pylist():
        by_stage[s] = by_stage.get(s, 0) + 1
    splits = clip_table.column("split").to_pylist()
    summary = Summary(
        out_dir=run.out, selected=len(run.clips), skipped=0, processed=run.done, failed_now=run.failed,
        clips=clip_table.num_rows, failed=failures.num_rows,
        av_mismatch=int(sum(clip_table.column("av_mismatch").to_pylist())),
        frames=int(sum(clip_table.column("frames").to_pylist())), frames_now=run.frames, missing=missing,
        train_speakers=info["train_speakers"], test_speakers=info["test_speakers"],
        failures_by_stage=dict(sorted(by_stage.items())), warnings=warnings, track_seconds=track_seconds,
        train_clips=splits.count("train"), test_clips=splits.count("test"), jobs=run.jobs,
        skipped_names=run.source.skipped_names)
    manifest = build_manifest(run, summary, info, clip_table)
    summary.seconds = time.perf_counter() - run.t_start
    manifest["timing"]["last_run_s"] = round(summary.seconds, 3)
    atomic_write_text(run.out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    atomic_write_text(run.out / "README.md", dataset_card(manifest, has_test=bool(info["test_speakers"]) and "test" in splits,
                                                          has_failures=failures.num_rows > 0))
    return summary


def build_manifest(run: _Run, summary: Summary, info: dict, clip_table: pa.Table) -> dict:
    """The build's manifest.json: version, options, table hashes, counts, splits, baseline, timing."""
    from talkclip.annotate.emotions import EMOTIONS_PATH, group_table_sha256
    from talkclip.annotate.tracker import sha256_file

    o, p1 = run.options, run.phase1
    return dict(
        tool="talkclip", version=__version__, format=FORMAT, corpus=run.source.name, source=run.source.card_source(),
        complete=summary.missing == 0,
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        options=dict(root=Path(run.source.root).name, speakers=p1.get("speakers"), views=p1.get("views"),
                     emotions=p1.get("emotions"), limit=p1.get("limit"), landmarks=bool(o.landmarks),
                     phonemes=bool(o.phonemes),
                     baseline=bool(o.baseline), n_captions=o.n_captions, seed=o.seed, test_speakers=o.test_speakers,
                     au_table=Path(o.au_table).name if o.au_table else "packaged",
                     groups=Path(o.groups).name if o.groups else "packaged"),
        au_estimator="mediapipe blendshapes + landmark geometry (talkclip.annotate.au)",
        au_table_sha256=run.au_table.sha256, group_table_sha256=group_table_sha256(o.groups or run.source.labels),
        landmarker_sha256=p1["landmarker_sha256"], au_mapping_sha256=p1["au_mapping_sha256"],
        emotions_sha256=sha256_file(EMOTIONS_PATH), av_tolerance_s=AV_TOLERANCE_S,
        counts=dict(selected=summary.selected, clips=summary.clips, failed=summary.failed,
                    failures_by_stage=summary.failures_by_stage, av_mismatch=summary.av_mismatch,
                    missing=summary.missing, frames=summary.frames, skipped_names=summary.skipped_names,
                    frames_with_face=int(sum(clip_table.column("frames_with_face").to_pylist())),
                    speakers=len({c.speaker for c in run.clips}),
                    train_clips=summary.train_clips, test_clips=summary.test_clips),
        splits=dict(train=info["train_speakers"], test=info["test_speakers"]),
        baseline=dict(enabled=bool(o.baseline), per_speaker_view=info["baseline"],
                      unbaselined_speakers=info["unbaselined_speakers"]),
        au_ids=list(AU_IDS), warnings=summary.warnings, phonemes=phoneme_summary(run, clip_table),
        timing=dict(last_run_s=None, last_run_track_s=round(summary.track_seconds, 3), last_run_clips=run.done,
                    last_run_frames=run.frames, jobs=run.jobs, executor=o.executor),
    )


def phoneme_summary(run: _Run, clip_table: pa.Table) -> dict:
    """The manifest's ``phonemes`` entry: whether tracks were built, where the sentences came
    from, and how many clips were aligned to their sentence or recognised."""
    if not run.options.phonemes:
        return {"enabled": False}
    keep = set(clip_table.column("clip_id").to_pylist())
    table = _latest(shards.read_table(run.out / "phonemes", PHONEMES_SCHEMA, ["clip_id", "method"]), keep)
    methods: dict[str, int] = {}
    for m in table.column("method").to_pylist():
        methods[m] = methods.get(m, 0) + 1
    if any(getattr(c, "sentence", None) for c in run.clips):
        sentences = ("the corpus's sentence of each clip (forced alignment); recognition for clips without "
                     "one or whose alignment failed")
    else:
        sentences = "none known for this corpus: phones recognised from the audio"
        if run.source.name == "mead":
            sentences += " (MEAD's per-clip sentences could not be established from its documentation; see README)"
    return {"enabled": True, "sentences": sentences, "methods": dict(sorted(methods.items())),
            "tool": "pocketsphinx en-us (talkclip.annotate.phonemes)"}


def _write_outputs(out: Path, clips: pa.Table, failures: pa.Table) -> None:
    """Write clips/{train,test}-00000.parquet and failures/failures-00000.parquet; drop stale files."""
    written: dict[Path, set[str]] = {out / "clips": set(), out / "failures": set()}
    split = clips.column("split").to_pylist()
    for name in ("train", "test"):
        part = clips.filter(pa.array([s == name for s in split], pa.bool_()))
        if part.num_rows or name == "train":
            p = shards.write_table(part, CLIPS_SCHEMA, out / "clips" / f"{name}-00000.parquet")
            written[out / "clips"].add(p.name)
    if failures.num_rows:
        p = shards.write_table(failures, FAILURES_SCHEMA, out / "failures" / "failures-00000.parquet")
        written[out / "failures"].add(p.name)
    for folder, keep in written.items():
        for p in shards.shard_files(folder):
            if p.name not in keep:
                p.unlink()


def build_ta_mead(mead_dir: str | Path, out_dir: str | Path, **options: Any) -> Summary:
    """Build (or resume) TA-MEAD from a MEAD root into ``out_dir``: the ``mead`` recipe through
    :func:`talkclip.pipelines.recipes.build_corpus` (filters: speakers, views, emotions, limit;
    the other keyword arguments are :class:`BuildOptions` fields; ``progress`` a callback)."""
    from .recipes import build_corpus

    return build_corpus("mead", mead_dir, out_dir, **options)
