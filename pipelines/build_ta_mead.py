"""``talkclip-data build-ta-mead``: MEAD -> TA-MEAD Parquet tables, in parallel and resumable.

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
- Audio: the separate m4a when MEAD has one, else the mp4's own audio track (``audio_source``
  "m4a" | "video"). A clip with **no audio at all is a failure** (stage "audio"). A clip whose
  audio and video durations differ by more than 0.2 s is **kept and flagged**
  (``av_mismatch = true``, counted in the manifest and the summary): readers that need exact
  lip sync should drop or trim those rows.
- A clip fails (one row in ``failures``, no rows elsewhere) at stage "read" (tar member cannot
  be read), "decode" (unreadable or truncated video), "track" (no face in any frame), "audio"
  (no audio, undecodable audio) or "annotate" (AU estimation). Failed clips are not retried by
  a rerun; delete ``.work/`` to start over.
- Neutral baseline (default on, ``baseline=False`` to switch off): per (speaker, view), the mean
  raw AU intensity of that speaker's neutral clips is subtracted from every clip of that
  speaker before levelling (``au_intensity``; ``au_intensity_raw`` keeps the raw value). A
  speaker without neutral clips is not baselined (listed in the manifest).
- The baseline and the split are computed from the clips of the current selection: a build
  filtered with ``--emotions happy`` (no neutral clips) or a ``--limit`` that cuts off a
  speaker's neutral clips levels AUs without that speaker's baseline (the manifest lists
  unbaselined speakers), and may split differently from a full build.
- Split: whole speakers are held out for test, ``test_speakers`` of them (default 6), chosen by
  a stable hash of the speaker id, alternating men and women. With fewer than
  ``2 * test_speakers`` speakers the hold-out shrinks to half the speakers (rounded down) and a
  warning is given.
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
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from talkclip import InputError, MediaError, NoFaceError, TalkclipError, __version__, one_line
from talkclip.schemas import AU_IDS, NUM_BLENDSHAPES, NUM_LANDMARKS
from talkclip.schemas.tamead import (AUDIO_SAMPLE_RATE, AUDIO_SCHEMA, CLIPS_SCHEMA, FAILURES_SCHEMA,
                                     FRAMES_SCHEMA, LANDMARK_SCALE, STAGE1_SCHEMA)

from . import shards
from .mead import MeadClip, MediaRef, walk_mead

AV_TOLERANCE_S = 0.2
TIMESTAMP_GAP_MS = 1000
DEFAULT_SHARD_CLIPS = 64
WORK_DIR = ".work"
FORMAT = "ta-mead/1"
PHASE1_KEYS = ("mead", "speakers", "views", "emotions", "limit", "landmarks")
# a rerun into the same folder must keep these: they decide the stored phase-1 results
PHASE1_FIXED = ("mead", "landmarks", "landmarker_sha256", "au_mapping_sha256")


# ----------------------------------------------------------------------------- public types

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
    skipped: int                  # done by an earlier run, not tracked again
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

    @property
    def exit_code(self) -> int:
        """0 when every clip succeeded, 1 when some failed (recorded) or are missing."""
        return 0 if self.failed == 0 and self.missing == 0 else 1


# ----------------------------------------------------------------------------- phase 1: workers

@dataclass
class _WorkerConfig:
    out_dir: str
    mead_root: str
    landmarks: bool
    shard_clips: int
    run_tag: str
    landmarker: str | None = None


@dataclass
class _ClipResult:
    clip_id: str
    ok: bool
    frames: int = 0
    stage: str | None = None
    error: str | None = None



def _rel(ref: MediaRef | None, root: str) -> str | None:
    """A media reference relative to the MEAD root: "M003/video/..." or "M003/video.tar::video/..."."""
    if ref is None:
        return None
    p = os.path.relpath(ref.path, root)
    return p if ref.member is None else f"{p}::{ref.member}"


class _StageError(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


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
        self._stage1: list[dict] = []
        self._frames: list[dict] = []
        self._audio: list[tuple[str, np.ndarray]] = []
        self._failures: list[dict] = []

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
    def process(self, clip: MeadClip) -> _ClipResult:
        t0 = time.perf_counter()
        cid = clip.clip_id
        base = clip_base_row(clip, self.cfg.mead_root)
        video_path = base["video_path"]
        try:
            row, frames_row, wav = self._run(clip)
        except _StageError as e:
            message = str(e).replace(self.cfg.mead_root.rstrip("/") + "/", "")   # paths relative to the root
            self._failures.append(dict(clip_id=cid, stage=e.stage, error=message, path=video_path))
            self._stage1.append(dict(base, ok=False, track_s=time.perf_counter() - t0))
            self._maybe_flush()
            return _ClipResult(cid, False, 0, e.stage, message)
        row.update(base)
        row.update(ok=True, track_s=time.perf_counter() - t0)
        self._stage1.append(row)
        self._frames.append(frames_row)
        self._audio.append((cid, wav))
        self._maybe_flush()
        return _ClipResult(cid, True, row["frames"])

    def _run(self, clip: MeadClip) -> tuple[dict, dict, np.ndarray]:
        from talkclip.annotate.au import clip_au
        from talkclip.annotate.media import Frame, iter_frames, load_audio, probe
        from talkclip.annotate.tracker import track_frames

        stage = "read"
        try:
            data = clip.video.open()
            audio_src = clip.audio.open() if clip.audio is not None else None
            stage = "decode"
            info = probe(data)
            _rewind(data)
            stage = "track"
            tracker = self.tracker()
            offset = self._next_ts
            last = [offset - 1]

            def shifted():
                for f in iter_frames(data):
                    ts = f.timestamp_ms + offset
                    last[0] = ts
                    yield Frame(f.index, ts, f.rgb)

            try:
                track = track_frames(shifted(), tracker, source=clip.video.display, fps=info.fps)
            except MediaError:
                stage = "decode"
                raise
            except Exception:
                self.close()          # a landmarker that failed mid-clip is not reused
                raise
            finally:
                self._next_ts = max(last[0], getattr(tracker, "_last_ts", -1)) + TIMESTAMP_GAP_MS
                if self._tracker is None:
                    self._next_ts = 0
            track.timestamp_ms = track.timestamp_ms - offset
            if track.frames_with_face == 0:
                raise NoFaceError(f"no face found in any of the {track.frames} frames")
            fps = float(info.fps) if info.fps else 30.0
            duration = track.frames / fps

            stage = "audio"
            if audio_src is not None:
                wav, source, audio_path = load_audio(audio_src, AUDIO_SAMPLE_RATE), "m4a", _rel(clip.audio, self.cfg.mead_root)
            elif info.has_audio:
                _rewind(data)
                wav, source, audio_path = load_audio(data, AUDIO_SAMPLE_RATE), "video", _rel(clip.video, self.cfg.mead_root)
            else:
                raise MediaError("no audio: no separate m4a for this clip and the mp4 has no audio track")
            audio_duration = len(wav) / AUDIO_SAMPLE_RATE

            stage = "annotate"
            frame_aus = self.estimator.estimate(track)                     # (T, 12), NaN without face
            raw = clip_au(frame_aus)                                       # (12,)
        except TalkclipError as e:
            raise _StageError(stage, one_line(e)) from None
        except (OSError, EOFError) as e:
            raise _StageError(stage, f"{type(e).__name__}: {one_line(e)}") from None
        except Exception as e:  # an unexpected bug must not stop a batch job: record it
            raise _StageError(stage, f"unexpected {type(e).__name__}: {one_line(e)}") from None

        row = dict(audio_path=audio_path, audio_source=source, fps=fps, width=track.width,
                   height=track.height, frames=track.frames, frames_with_face=track.frames_with_face,
                   duration_s=duration, audio_duration_s=audio_duration,
                   av_mismatch=bool(abs(audio_duration - duration) > AV_TOLERANCE_S),
                   au_intensity_raw=[float(x) for x in raw])
        T = track.frames
        frames_row = dict(
            clip_id=clip.clip_id, fps=fps,
            timestamp_ms=track.timestamp_ms.astype(np.int32),                 # (T,)
            face=track.face.astype(bool),                                     # (T,)
            blendshapes=track.blendshapes.astype(np.float32),                 # (T, 52)
            pose=track.pose.reshape(T, 16).astype(np.float32),                # (T, 16)
            landmarks=quantise_landmarks(track.landmarks) if self.cfg.landmarks else None,  # (T, 1434) int16
        )
        pcm = np.round(np.clip(wav, -1.0, 1.0) * 32767.0).astype(np.int16)     # (N,)
        return row, frames_row, pcm

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

    def write_data(self, tag: str) -> tuple[list[dict], list[dict]]:
        """Write the buffered frames/audio shards as ``<tag>``, empty the buffers, and return the
        (stage-1 rows, failure rows) that :func:`commit_record` commits."""
        if self._frames:
            shards.write_table(frames_table(self._frames), FRAMES_SCHEMA, self.out / "frames" / f"{tag}.parquet")
            shards.write_table(audio_table(self._audio), AUDIO_SCHEMA, self.out / "audio" / f"{tag}.parquet")
        rows = (self._stage1, self._failures)
        self._reset_buffers()
        return rows


def commit_record(out: Path, tag: str, stage1: list[dict], failures: list[dict]) -> None:
    """Commit a batch whose data shards ``<tag>`` are written: failures, then the stage-1 record."""
    work = Path(out) / WORK_DIR
    if failures:
        shards.write_rows(failures, FAILURES_SCHEMA, work / "failures" / f"{tag}.parquet")
    shards.write_rows(stage1, STAGE1_SCHEMA, work / "stage1" / f"{tag}.parquet")


def clip_base_row(clip: MeadClip, mead_root: str) -> dict:
    """The stage-1 fields every attempted clip has, failed or not."""
    from talkclip.annotate.captions import subject_for_speaker

    return dict(clip_id=clip.clip_id, speaker=clip.speaker, gender=subject_for_speaker(clip.speaker),
                view=clip.view, emotion=clip.emotion, level=clip.level, take=clip.take,
                video_path=_rel(clip.video, mead_root))


def _rewind(src: Any) -> None:
    if hasattr(src, "seek"):
        src.seek(0)


def quantise_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 3) float landmarks -> (T, 1434) int16 (x, y, z times LANDMARK_SCALE)."""
    T = landmarks.shape[0]
    q = np.clip(np.round(landmarks.reshape(T, NUM_LANDMARKS * 3) * LANDMARK_SCALE), -32768, 32767)
    return q.astype(np.int16)


def dequantise_landmarks(values: np.ndarray) -> np.ndarray:
    """(T, 1434) int16 -> (T, 478, 3) float32."""
    return (np.asarray(values, np.float32) / LANDMARK_SCALE).reshape(-1, NUM_LANDMARKS, 3)


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
    """Worker process: take clips until the None sentinel, commit, report each clip."""
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


# ----------------------------------------------------------------------------- phase 2: annotation

def hold_out_speakers(speakers: Sequence[str], n_test: int) -> tuple[list[str], list[str], list[str]]:
    """(train, test, warnings): ``n_test`` speakers held out, chosen by a stable hash of their id,
    alternating genders (M/W prefixes); fewer when the corpus is small (see module doc)."""
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
        by_group.setdefault(s[:1].upper() if s[:1].upper() in "MW" else "?", []).append(s)
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

    ``speakers``: the speakers of the whole selection (for the split); default those in ``stage1``.
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
                                                test_speakers)
    warnings += split_warn
    test_set = set(test)
    missing_groups: set[tuple[str, int]] = set()
    for r in rows:
        raw = np.asarray(r["au_intensity_raw"], np.float64)                  # (12,)
        intensity = clip_au(raw[None, :], base_of.get((r["speaker"], r["view"])))  # (12,)
        levels = au_table.levels(intensity)                                  # (12,) 0..3
        labels = list(groups.get((r["emotion"], int(r["level"])), []))
        if (r["emotion"], int(r["level"])) not in groups:
            missing_groups.add((r["emotion"], int(r["level"])))
        r["au_intensity"] = [float(x) for x in intensity]
        r["au_level"] = [int(x) for x in levels]
        r["emotion_labels"] = labels
        r["captions"] = render_captions(subject=r["gender"], au_levels=levels, au_table=au_table,
                                        emotion_labels=labels or None, n=n_captions,
                                        seed=f"{seed}:{r['clip_id']}")
        r["split"] = "test" if r["speaker"] in test_set else "train"
    if missing_groups:
        warnings.append("group table has no labels for " + ", ".join(f"{e}/level_{lv}" for e, lv in sorted(missing_groups)))
    table = shards.rows_to_table(rows, CLIPS_SCHEMA)
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

    The MEAD root, --landmarks, the landmarker model file and the AU mapping table must stay the
    same (they decide the stored per-clip results). Filters (--speakers/--views/--emotions/
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
    tmp = p.with_name(".options.json.tmp")
    tmp.write_text(json.dumps(phase1, indent=1))
    os.replace(tmp, p)


def _remove_uncommitted(out: Path) -> int:
    """Delete shards a killed build wrote without its stage-1 commit record; sweep temp files."""
    work = out / WORK_DIR
    committed = {p.stem for p in shards.shard_files(work / "stage1")}
    n = 0
    for folder in (out / "frames", out / "audio", work / "failures", work / "stage1", out / "clips", out / "failures"):
        n += shards.remove_temp_files(folder)
    for folder in (out / "frames", out / "audio", work / "failures"):
        for p in shards.shard_files(folder):
            if p.stem not in committed:
                p.unlink()
                n += 1
    return n


def _run_phase1(todo: list[MeadClip], cfg: _WorkerConfig, jobs: int, emit: Callable[[_ClipResult], None],
                executor: str = "local", ray_address: str | None = None) -> list[str]:
    """Track ``todo``; returns crash messages (empty when all went well)."""
    if not todo:
        return []
    if executor == "ray":
        from .ray_executor import run_phase1

        return run_phase1(todo, cfg, emit, jobs=jobs, address=ray_address)
    if jobs <= 1:
        worker = ClipWorker(cfg, 0)
        try:
            for clip in todo:
                emit(worker.process(clip))
            worker.flush()
        finally:
            worker.close()
        return []
    import multiprocessing as mp

    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for clip in todo:
        tasks.put(clip)
    n = min(jobs, len(todo))
    for _ in range(n):
        tasks.put(None)
    procs = [ctx.Process(target=_worker_main, args=(i, cfg, tasks, results), daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    crashes: list[str] = []
    flushed = 0
    try:
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
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    return crashes


def build_ta_mead(mead_dir: str | Path, out_dir: str | Path, *, jobs: int = 1,
                  speakers: Sequence[str] | None = None, views: Sequence[str] | None = ("front",),
                  emotions: Sequence[str] | None = None, limit: int | None = None, landmarks: bool = False,
                  au_table: str | Path | None = None, groups: str | Path | None = None, baseline: bool = True,
                  n_captions: int = 5, seed: int = 0, test_speakers: int = 6,
                  progress: Callable[[ProgressEvent], None] | None = None,
                  shard_clips: int = DEFAULT_SHARD_CLIPS, landmarker: str | Path | None = None,
                  executor: str = "local", ray_address: str | None = None) -> Summary:
    """Build (or resume) TA-MEAD from a MEAD root into ``out_dir``; see the module docstring.

    Raises LayoutError / InputError for unusable input (nothing is tracked then). Clip failures
    are recorded in the failures table and reported in the returned :class:`Summary`.
    """
    from talkclip.annotate.au import load_au_table
    from talkclip.annotate.emotions import load_group_table
    from talkclip.annotate.au import AU_MAPPING_PATH
    from talkclip.annotate.tracker import FaceTracker, resolve_landmarker, sha256_file

    t_start = time.perf_counter()
    if executor not in ("local", "ray"):
        raise InputError(f"--executor must be local or ray, got {executor!r}")
    if executor == "ray":
        from .ray_executor import preflight

        preflight(ray_address)   # a missing extra or an unreachable cluster fails before any work
    if jobs < (0 if executor == "ray" else 1):
        raise InputError(f"--jobs must be >= 1 (0 with --executor ray: one per CPU of the cluster), got {jobs}")
    if n_captions < 1:
        raise InputError(f"--captions must be >= 1, got {n_captions}")
    if test_speakers < 0:
        raise InputError(f"--test-speakers must be >= 0, got {test_speakers}")
    if shard_clips < 1:
        raise InputError(f"--shard-size must be >= 1, got {shard_clips}")
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(out_dir)):
        raise InputError(f"--out {out_dir}: URLs (s3://, gs://, ...) are not supported; build into a folder "
                         "(for --executor ray one that every node mounts at the same path) and copy it, "
                         "or mount the bucket (mountpoint-s3, s3fs, gcsfuse) and pass the mount path")
    mead_root = Path(mead_dir).resolve()
    clips = walk_mead(mead_root, speakers=speakers, views=views, emotions=emotions, limit=limit)
    table = load_au_table(au_table)
    group_table = load_group_table(groups)
    landmarker_path = resolve_landmarker(landmarker)
    FaceTracker(landmarker_path, mode="video").close()   # a broken model file fails here, not per clip

    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    work = out / WORK_DIR
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create --out {out}: {one_line(e)}") from None
    # everything that decides the stored per-clip results of phase 1
    phase1 = dict(mead=str(mead_root), speakers=sorted(speakers) if speakers else None,
                  views=sorted(views) if views else None, emotions=sorted(emotions) if emotions else None,
                  limit=limit, landmarks=bool(landmarks), landmarker_sha256=sha256_file(landmarker_path),
                  au_mapping_sha256=sha256_file(AU_MAPPING_PATH))
    emit_progress = progress or (lambda ev: None)

    with _exclusive(work / "build.lock", f"another build is writing to {out}"):
        return _build_locked(clips, out, work, phase1, mead_root, table, group_table, landmarker_path,
                             jobs=jobs, landmarks=landmarks, au_table=au_table, groups=groups, baseline=baseline,
                             n_captions=n_captions, seed=seed, test_speakers=test_speakers, limit=limit,
                             shard_clips=shard_clips, emit_progress=emit_progress, t_start=t_start,
                             executor=executor, ray_address=ray_address)


def _build_locked(clips, out, work, phase1, mead_root, table, group_table, landmarker_path, *, jobs, landmarks,
                  au_table, groups, baseline, n_captions, seed, test_speakers, limit, shard_clips,
                  emit_progress, t_start, executor="local", ray_address=None) -> Summary:
    from talkclip.annotate.emotions import EMOTIONS_PATH, group_table_sha256
    from talkclip.annotate.tracker import sha256_file

    # workers of an earlier (killed) build notice their parent is gone and stop within a clip
    with _exclusive(work / "workers.lock", f"worker processes of an earlier build still write to {out}", wait_s=60):
        pass
    _remove_uncommitted(out)
    done = set(shards.read_column(work / "stage1", "clip_id"))
    _check_options(work, phase1, done, {c.clip_id for c in clips})
    todo = [c for c in clips if c.clip_id not in done]
    skipped = len(clips) - len(todo)
    state = dict(done=0, failed=0, frames=0)
    emit_progress(ProgressEvent("start", len(todo), 0, 0, skipped))

    def on_clip(r: _ClipResult) -> None:
        state["done"] += 1
        state["failed"] += 0 if r.ok else 1
        state["frames"] += r.frames
        emit_progress(ProgressEvent("clip", len(todo), state["done"], state["failed"], skipped,
                                    r.clip_id, r.ok, r.frames))

    cfg = _WorkerConfig(str(out), str(mead_root), bool(landmarks), int(shard_clips),
                        f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}", str(landmarker_path))
    t1 = time.perf_counter()
    crashes = _run_phase1(todo, cfg, jobs, on_clip, executor, ray_address)
    track_seconds = time.perf_counter() - t1

    # ---- phase 2 (cheap; from every committed stage-1 row of the selection)
    emit_progress(ProgressEvent("annotate", len(todo), state["done"], state["failed"], skipped))
    selected = {c.clip_id for c in clips}
    stage1 = shards.read_table(work / "stage1", STAGE1_SCHEMA)
    mask = pa.array([cid in selected for cid in stage1.column("clip_id").to_pylist()], pa.bool_())
    stage1 = stage1.filter(mask)
    ok = stage1.filter(stage1.column("ok"))
    clip_table, info = annotate_clips(ok, au_table=table, groups=group_table, baseline=baseline,
                                      n_captions=n_captions, seed=seed, test_speakers=test_speakers,
                                      speakers=sorted({c.speaker for c in clips}))
    failures = shards.read_table(work / "failures", FAILURES_SCHEMA)
    failures = failures.filter(pa.array([cid in selected for cid in failures.column("clip_id").to_pylist()],
                                        pa.bool_())).sort_by("clip_id")
    missing = len(selected) - len(set(stage1.column("clip_id").to_pylist()))
    warnings = list(info["warnings"]) + crashes
    if missing:
        warnings.append(f"{missing} clip(s) were not processed (a worker died); rerun the same command to resume")
    _write_outputs(out, clip_table, failures)

    by_stage: dict[str, int] = {}
    for s in failures.column("stage").to_pylist():
        by_stage[s] = by_stage.get(s, 0) + 1
    n_frames = int(sum(clip_table.column("frames").to_pylist()))
    splits = clip_table.column("split").to_pylist()
    summary = Summary(
        out_dir=out, selected=len(clips), skipped=skipped, processed=state["done"], failed_now=state["failed"],
        clips=clip_table.num_rows, failed=failures.num_rows,
        av_mismatch=int(sum(clip_table.column("av_mismatch").to_pylist())), frames=n_frames,
        frames_now=state["frames"], missing=missing, train_speakers=info["train_speakers"],
        test_speakers=info["test_speakers"], failures_by_stage=dict(sorted(by_stage.items())),
        warnings=warnings, track_seconds=track_seconds)
    manifest = dict(
        tool="talkclip", version=__version__, format=FORMAT, complete=missing == 0,
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        options=dict(mead_root=mead_root.name, speakers=phase1["speakers"], views=phase1["views"],
                     emotions=phase1["emotions"], limit=limit, landmarks=bool(landmarks), baseline=bool(baseline),
                     n_captions=n_captions, seed=seed, test_speakers=test_speakers,
                     au_table=Path(au_table).name if au_table else "packaged",
                     groups=Path(groups).name if groups else "packaged"),
        au_estimator="mediapipe blendshapes + landmark geometry (talkclip.annotate.au)",
        au_table_sha256=table.sha256, group_table_sha256=group_table_sha256(groups),
        landmarker_sha256=sha256_file(landmarker_path),
        au_mapping_sha256=phase1["au_mapping_sha256"], emotions_sha256=sha256_file(EMOTIONS_PATH),
        av_tolerance_s=AV_TOLERANCE_S,
        counts=dict(selected=len(clips), clips=clip_table.num_rows, failed=failures.num_rows,
                    failures_by_stage=summary.failures_by_stage, av_mismatch=summary.av_mismatch,
                    missing=missing, frames=n_frames,
                    frames_with_face=int(sum(clip_table.column("frames_with_face").to_pylist())),
                    speakers=len({c.speaker for c in clips}),
                    train_clips=splits.count("train"), test_clips=splits.count("test")),
        splits=dict(train=info["train_speakers"], test=info["test_speakers"]),
        baseline=dict(enabled=bool(baseline), per_speaker_view=info["baseline"],
                      unbaselined_speakers=info["unbaselined_speakers"]),
        au_ids=list(AU_IDS), warnings=warnings,
        timing=dict(last_run_s=None, last_run_track_s=round(track_seconds, 3), last_run_clips=state["done"],
                    last_run_frames=state["frames"], jobs=jobs, executor=executor),
    )
    summary.seconds = time.perf_counter() - t_start
    manifest["timing"]["last_run_s"] = round(summary.seconds, 3)
    from .card import dataset_card

    _atomic_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    _atomic_text(out / "README.md", dataset_card(manifest, has_test=bool(info["test_speakers"]) and "test" in splits,
                                                 has_failures=failures.num_rows > 0))
    emit_progress(ProgressEvent("done", len(todo), state["done"], state["failed"], skipped))
    return summary


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
