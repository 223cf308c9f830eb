"""Throughput of `build-ta-mead --executor ray` against `--executor local`, in one run.

On the corpus of bench/build_throughput.py (talking_pexels.mp4 clips, 640x360), measures:

- local: ``build_ta_mead(jobs=2)``, the process pool pinned one worker per core (the baseline);
- ray actors: ``build_ta_mead(executor="ray", jobs=2)`` on a local Ray with 2 CPUs, started
  once before the timed runs (its start-up, ~5-15 s, is printed apart: a cluster is started
  once for many builds). This is what the build uses: one actor per CPU slot, each with one
  landmarker, pinned to a free core;
- ray tasks: the alternative the issue asks to compare, tracking-only: ``@ray.remote`` tasks of
  ``--task-clips`` clips each, every worker process keeping one landmarker in a per-process
  cache (the same ClipWorker, the same shard writes and commits), timed from submission to
  the last commit.

Each figure is frames/s of tracking (phase 1) and, for the two builds, of the whole call. The
goal is ray/local >= 0.9. The measurements alternate ``--repeats`` times and keep each one's
best run, so a burst of load from other work hits all alike; on a shared 2-core machine the
figures are still noisy (the load average is printed with them).

    .venv/bin/python bench/build_ray.py [--clips 48] [--clip-s 6] [--repeats 1] [--task-clips 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_throughput import make_corpus  # noqa: E402


def build(corpus: Path, out: Path, **kw) -> tuple[float, float, int]:
    from talkclip.pipelines.build_ta_mead import build_ta_mead

    t0 = time.perf_counter()
    s = build_ta_mead(corpus, out, test_speakers=0, **kw)
    wall = time.perf_counter() - t0
    assert s.failed == 0 and s.missing == 0, (s.failures_by_stage, s.warnings)
    return s.frames / wall, s.frames / s.track_seconds, s.frames


def _track_batch(cfg, clips, tag):
    """A Ray task: track ``clips`` with this worker process's cached ClipWorker, write the data
    shards, return the rows to commit and the frames tracked."""
    import dataclasses

    from talkclip.pipelines.build_ta_mead import ClipWorker
    from talkclip.pipelines.ray_executor import _pin_free_core

    cache = sys.modules.setdefault("_talkclip_bench_task_cache", types.ModuleType("_talkclip_bench_task_cache"))
    if not hasattr(cache, "worker"):
        _pin_free_core()
        cache.worker = ClipWorker(dataclasses.replace(cfg, shard_clips=2**62), os.getpid() % 100)
    frames = sum(cache.worker.process(c).frames for c in clips)
    held = getattr(_pin_free_core, "held", None)
    if held is not None:      # stay pinned, but let the actors of a later run find their cores free
        held.close()
        _pin_free_core.held = None
    return (*cache.worker.write_data(tag), frames)


def tasks_rate(corpus: Path, out: Path, batch: int) -> float:
    """Frames/s of tracking the corpus with Ray tasks (per-process landmarker cache)."""
    import ray

    from talkclip.annotate.tracker import resolve_landmarker
    from talkclip.pipelines.build_ta_mead import WORK_DIR, _WorkerConfig, commit_record
    from talkclip.pipelines.mead import walk_mead

    clips = walk_mead(corpus)
    (out / WORK_DIR).mkdir(parents=True)
    cfg = _WorkerConfig(str(out), str(corpus.resolve()), False, 64, "bench-tasks", str(resolve_landmarker()))
    track = ray.remote(num_cpus=1)(_track_batch)
    t0 = time.perf_counter()
    refs = {track.remote(cfg, clips[k:k + batch], f"bench-tasks-{k:05d}"): f"bench-tasks-{k:05d}"
            for k in range(0, len(clips), batch)}
    frames = 0
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        stage1, failures, n = ray.get(done[0])
        commit_record(out, refs[done[0]], stage1, failures)
        frames += n
    return frames / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48, help="clips in the corpus")
    ap.add_argument("--clip-s", type=float, default=6.0, help="seconds per clip")
    ap.add_argument("--repeats", type=int, default=1, help="alternating repeats (best run of each kept)")
    ap.add_argument("--task-clips", type=int, default=4, help="clips per Ray task in the tasks variant")
    args = ap.parse_args()
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="talkclip-bench-ray-"))
    try:
        corpus = tmp / "mead"
        make_corpus(corpus, args.clips, args.clip_s, 1)
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 logging_level="ERROR")
        ray_start = time.perf_counter() - t0
        best = dict(local=(0.0, 0.0), ray=(0.0, 0.0), tasks=0.0)
        loads = []
        for k in range(args.repeats):
            w, p, n_local = build(corpus, tmp / f"local-{k}", jobs=2)
            best["local"] = max(best["local"], (p, w))
            loads.append(os.getloadavg()[0])
            w, p, n_ray = build(corpus, tmp / f"ray-{k}", jobs=2, executor="ray")
            best["ray"] = max(best["ray"], (p, w))
            loads.append(os.getloadavg()[0])
            best["tasks"] = max(best["tasks"], tasks_rate(corpus, tmp / f"tasks-{k}", args.task_clips))
            loads.append(os.getloadavg()[0])
            assert n_local == n_ray, (n_local, n_ray)
        (pl, wl), (pr, wr) = best["local"], best["ray"]
        print(f"corpus: {args.clips} clips x {args.clip_s:g} s, {n_local} frames (640x360), cpus {os.cpu_count()}, "
              f"best of {args.repeats} alternating runs; load avg during runs {', '.join(f'{x:.1f}' for x in loads)}")
        print(f"local Ray start-up (once, not in the rates): {ray_start:.1f} s")
        print(f"local --jobs 2     : {pl:7.1f} frames/s tracking, {wl:7.1f} whole build")
        print(f"ray actors, 2 CPUs : {pr:7.1f} frames/s tracking, {wr:7.1f} whole build   ratio to local {pr / pl:.3f} "
              f"tracking, {wr / wl:.3f} whole (goal >= 0.9)")
        print(f"ray tasks (cache)  : {best['tasks']:7.1f} frames/s tracking ({args.task_clips} clips per task)   "
              f"ratio to local {best['tasks'] / pl:.3f}; to ray actors {best['tasks'] / pr:.3f}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
