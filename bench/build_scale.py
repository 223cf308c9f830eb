"""What grows with the corpus on a build's driver: a full-size synthetic MEAD, no tracking.

Writes a MEAD-shaped tree under /tmp with MEAD's full shape (default 60 speakers x 7 views x 670
clips = 281,400 empty mp4 files plus one empty m4a per speaker/emotion/level/take; the last
``--tar-speakers`` speakers as ``video.tar`` + ``audio.tar`` of empty members), then measures
the driver-side costs a real build of that corpus pays whatever the executor:

- listing: ``walk_mead`` over every view (folders and tar headers) - seconds, and the memory
  the clip list holds (tracemalloc), per clip;
- commit record: stage-1 shards as a finished build of the corpus would have them (one per 64
  clips, rows written by the build's own commit function with made-up AU values) - bytes per
  clip, and the driver's time per commit (what bounds the clips/s one driver can commit);
- resume: a rerun of the finished build with the same command - the whole ``build_ta_mead``
  call (listing, sweeping uncommitted shards, the resume scan of the stage-1 column, phase 2:
  baseline, levels, captions, split, the clips table, manifest and card), with the time of
  its parts, and the peak memory of the process.

Then it projects the wall time of a full build on N machines x 16 cores from a per-core
tracking rate (``--core-fps``, default the issue's 95 frames/s per core at 1080p) and MEAD's
~34 M frames. The tree is deleted at the end.

    .venv/bin/python bench/build_scale.py [--speakers 60] [--clips-per-view 670] [--tar-speakers 6]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")
VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
MEAD_FRAMES = 34e6


def takes(clips_per_view: int) -> list[tuple[str, int, str]]:
    """(emotion, level, take) of one view: neutral level 1 plus 7 emotions x 3 levels."""
    per_group = max(1, clips_per_view // 22)
    n_neutral = clips_per_view - 21 * per_group
    out = [("neutral", 1, f"{k:03d}") for k in range(1, n_neutral + 1)]
    out += [(e, lv, f"{k:03d}") for e in EMOTIONS for lv in (1, 2, 3) for k in range(1, per_group + 1)]
    return out


def make_tree(root: Path, n_speakers: int, clips_per_view: int, n_tar: int) -> int:
    groups = takes(clips_per_view)
    speakers = [f"{'M' if k % 2 == 0 else 'W'}{k // 2 + 1:03d}" for k in range(n_speakers)]
    n = 0
    for i, spk in enumerate(speakers):
        tar = i >= n_speakers - n_tar
        base = root / ".staging" / spk if tar else root / spk
        made: set[Path] = set()
        for view in VIEWS:
            for emo, lv, take in groups:
                d = base / "video" / view / emo / f"level_{lv}"
                if d not in made:
                    d.mkdir(parents=True, exist_ok=True)
                    made.add(d)
                (d / f"{take}.mp4").touch()
                n += 1
        for emo, lv, take in groups:
            d = base / "audio" / emo / f"level_{lv}"
            if d not in made:
                d.mkdir(parents=True, exist_ok=True)
                made.add(d)
            (d / f"{take}.m4a").touch()
        if tar:
            (root / spk).mkdir(parents=True)
            for part in ("video", "audio"):
                with tarfile.open(root / spk / f"{part}.tar", "w") as tf:
                    tf.add(base / part, arcname=part)
            shutil.rmtree(base)
    shutil.rmtree(root / ".staging", ignore_errors=True)
    return n


def listing(root: Path) -> tuple[list, float, float]:
    from talkclip.pipelines.mead import walk_mead

    t0 = time.perf_counter()
    clips = walk_mead(root, views=None)
    dt = time.perf_counter() - t0
    del clips
    tracemalloc.start()          # a second listing, traced (tracing slows it down several times)
    clips = walk_mead(root, views=None)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return clips, dt, held / len(clips)


def commit_records(clips: list, mead_root: Path, out: Path, shard: int = 64) -> tuple[float, int]:
    """Stage-1 shards of a finished build (made-up values); returns (s per commit, bytes)."""
    import numpy as np

    from talkclip.pipelines.build_ta_mead import clip_base_row, commit_record

    rng = np.random.default_rng(0)
    mead_root = str(mead_root.resolve())
    t0 = time.perf_counter()
    n = 0
    for k in range(0, len(clips), shard):
        rows = []
        for c in clips[k:k + shard]:
            row = clip_base_row(c, mead_root)
            row.update(ok=True, track_s=2.0, audio_path=row["video_path"].replace("video", "audio"), audio_source="m4a",
                       fps=30.0, width=1920, height=1080, frames=120, frames_with_face=120, duration_s=4.0,
                       audio_duration_s=4.0, av_mismatch=False,
                       au_intensity_raw=[float(x) for x in rng.uniform(0, 3, 12).astype(np.float32)])
            rows.append(row)
        commit_record(out, f"20260101T000000-scale-r{k // shard // 1000:03d}-{k // shard % 1000:05d}", rows, [])
        n += 1
    dt = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (out / ".work" / "stage1").glob("*.parquet"))
    return dt / n, size


class Timer:
    """Wraps functions of the build module to add up their wall time while a build runs."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._undo: list = []

    def wrap(self, module, name: str, label: str) -> None:
        fn = getattr(module, name, None)
        if fn is None:
            return

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0

        setattr(module, name, timed)
        self._undo.append((module, name, fn))

    def undo(self) -> None:
        for module, name, fn in reversed(self._undo):
            setattr(module, name, fn)


def resume(root: Path, out: Path) -> tuple[float, dict, object]:
    from talkclip.pipelines import build_ta_mead as b
    from talkclip.pipelines import card, mead

    timer = Timer()
    timer.wrap(mead.MeadSource, "list_clips", "listing")
    timer.wrap(b, "_remove_uncommitted", "sweep of uncommitted shards")
    timer.wrap(b, "_committed", "stage-1 reads (resume scan, then phase 2)")
    timer.wrap(b, "annotate_clips", "phase 2: baseline, levels, captions, split")
    timer.wrap(b, "_write_outputs", "clips + failures tables")
    timer.wrap(b, "build_manifest", "manifest")
    timer.wrap(card, "dataset_card", "dataset card")
    try:
        t0 = time.perf_counter()
        s = b.build_ta_mead(root, out, views=None)
        dt = time.perf_counter() - t0
    finally:
        timer.undo()
    return dt, timer.seconds, s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", type=int, default=60)
    ap.add_argument("--clips-per-view", type=int, default=670)
    ap.add_argument("--tar-speakers", type=int, default=6, help="speakers stored as video.tar + audio.tar")
    ap.add_argument("--core-fps", type=float, default=95.0, help="tracking frames/s per core for the projection")
    ap.add_argument("--efficiency", type=float, default=0.9, help="build rate per core / bare landmarker, for the projection")
    ap.add_argument("--machines", default="1,2,4,8,16", help="N of the projection (machines x 16 cores)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="talkclip-scale-", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        n = make_tree(tmp / "mead", args.speakers, args.clips_per_view, args.tar_speakers)
        print(f"tree: {n} clips ({args.speakers} speakers x 7 views x {args.clips_per_view}; "
              f"{args.tar_speakers} speakers as tar) made in {time.perf_counter() - t0:.1f} s under {tmp}")
        clips, list_s, mem = listing(tmp / "mead")
        print(f"listing (walk_mead, all views): {list_s:.1f} s, {len(clips)} clips, {mem:.0f} B of driver memory per clip "
              f"({mem * len(clips) / 2**20:.0f} MiB)")
        out = tmp / "out"
        per_commit, size = commit_records(clips, tmp / "mead", out)
        print(f"commit record: {size / 2**20:.1f} MiB of stage-1 shards ({size / len(clips):.0f} B per clip, "
              f"{len(clips) // 64 + 1} shards of 64); {per_commit * 1000:.1f} ms per commit of 64 clips on the driver "
              f"(= {64 / per_commit:.0f} clips/s it can commit)")
        del clips
        dt, parts, s = resume(tmp / "mead", out)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"resume of the finished build (rerun, nothing to track): {dt:.1f} s; peak RSS of the process {peak:.0f} MiB; "
              f"{s.clips} clips in the table")
        for k, v in parts.items():
            print(f"  {k}: {v:.1f} s")
        manifest = json.loads((out / "manifest.json").read_text())
        print(f"manifest {len(json.dumps(manifest)) / 1024:.0f} kB, clips table "
              f"{sum(p.stat().st_size for p in (out / 'clips').glob('*.parquet')) / 2**20:.1f} MiB")
        fixed = dt
        rate = args.core_fps * args.efficiency
        print(f"projection for MEAD's ~{MEAD_FRAMES / 1e6:.0f} M frames at {args.core_fps:g} frames/s per core x "
              f"{args.efficiency:g} efficiency, plus the {fixed:.0f} s of driver work measured above:")
        for m in (int(x) for x in args.machines.split(",")):
            hours = (MEAD_FRAMES / (m * 16 * rate) + fixed) / 3600
            print(f"  {m:3d} machine(s) x 16 cores: {hours:5.2f} h")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
