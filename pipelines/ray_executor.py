"""``--executor ray``: phase 1 of a build (tracking) on a Ray cluster.

The local executor (:mod:`talkclip.pipelines.build_ta_mead`) runs a process pool on one
machine; this one runs the same per-clip work on Ray actors, one per CPU slot of the cluster,
so that a corpus larger than one machine (all of MEAD's views) is built by many. Everything
else of a build (listing, resume rules, phase 2, manifest, card) is unchanged.

Who does what
-------------
- **Driver** (the process that runs the build): lists the clips, hands each actor one clip at a
  time (at most :data:`IN_FLIGHT` queued per actor), and keeps **the commit record**. It sends
  a clip's *reference* (a path, or an archive path with the member's offset and size), never
  its bytes: the actor reads the file, or the tar member with one seek and one read, itself.
- **Actor** (:class:`ClipActor`, ``num_cpus=1``): one landmarker for its whole life (the
  measured equivalence of a reused and a fresh landmarker in the build's module doc makes its
  results independent of which actor got which clip), pinned to a free core of its node.
  After every ``shard_clips`` clips of an actor, the driver queues a flush under a tag it
  chooses: the actor writes ``frames/<tag>.parquet`` and ``audio/<tag>.parquet`` and returns
  the batch's small per-clip rows; the driver then writes ``.work/failures/<tag>.parquet`` and,
  last, ``.work/stage1/<tag>.parquet``. That stage-1 shard is the commit, exactly as in local
  builds, so a build killed at any point and rerun ends with the same tables (shards without a
  commit of the same tag are removed at the next start).

Shard names: ``<run>-r<actor>-<seq>``: ``<run>`` is this build run's start time plus random hex,
``<actor>`` a number the driver gives each actor it starts (a replacement gets a new one),
``<seq>`` counts that actor's flushes. Two writers therefore never write the same file.
Output must be a folder every node sees at the same path (a shared filesystem); so must the
MEAD root.

Faults
------
An actor (or its node) that dies: its clips not yet committed go back to the queue, and the
one clip it was working on is charged an attempt; a replacement actor is started while the
cluster has a free CPU slot. A clip charged :data:`MAX_ATTEMPTS` times (one that kills its
worker every time) is recorded as a failure, stage ``worker``, with the last error. Ctrl-C (or
any error) on the driver kills the actors, removes the data shards of uncommitted flushes and
re-raises: what was committed stays, and the same command resumes.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from talkclip import InputError, one_line

MAX_ATTEMPTS = 3      # a clip whose worker died this many times while on it is recorded as failed
IN_FLIGHT = 2         # clips queued per actor (the next one waits while the current one runs)
START_TIMEOUT_S = 300  # a replacement actor that gets no CPU slot within this is given up
SALVAGE_TIMEOUT_S = 10  # waiting for a dead actor's finished answers to arrive


def import_ray():
    """The ``ray`` module, or a one-line InputError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install -e '.[ray]' (ray==2.60.0)") from None
    return ray


# ----------------------------------------------------------------------------- connecting

def connect(address: str | None, num_cpus: int | None) -> bool:
    """Connect this process to Ray; returns True when this call did it (``ray.shutdown()`` after:
    that disconnects from a cluster, or stops the local Ray it started).

    ``address`` "auto" (the default) joins the cluster this machine belongs to (``RAY_ADDRESS``,
    or a running ``ray start`` node) and otherwise starts a local Ray with ``num_cpus`` CPUs
    (all when None) for this run, bound to 127.0.0.1. Any other value (``host:port``) must be
    reachable: one-line InputError otherwise (Ray itself would retry for minutes).
    """
    ray = import_ray()
    if ray.is_initialized():   # the caller's own connection (a notebook, a test): leave it
        return False
    quiet = dict(log_to_driver=False, logging_level="ERROR")
    address = address or "auto"
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or ("auto" if _local_cluster_running() else None)
    if address is None:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
        return True
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise InputError(f"cannot connect to the Ray cluster at {address}: {one_line(e)}") from None
    return True


def preflight(address: str | None) -> None:
    """Checks made before a build touches anything: Ray installed, an explicit address reachable."""
    import_ray()
    if address and address != "auto":
        _check_reachable(address)


def _local_cluster_running() -> bool:
    """Whether a Ray node (its GCS server process) runs on this machine."""
    try:
        from ray._private.services import find_gcs_addresses

        return bool(find_gcs_addresses())
    except Exception:  # a private helper of Ray: without it, start a local Ray
        return False


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """One-line InputError unless ``host:port`` accepts a TCP connection (``ray://`` URLs pass)."""
    import socket

    if "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise InputError(f"cannot reach the Ray cluster at --ray-address {address}: {one_line(e)}") from None


# ----------------------------------------------------------------------------- the actor

def _pin_free_core() -> int | None:
    """Pin this process to a core no other actor of this node holds (per-core lock files).

    MediaPipe's landmarker wants a core of its own (see the build's ``_pin_to_core``); Ray does
    not pin, so an actor takes the first core whose lock it can get and keeps the lock open
    for its life (the lock goes with the process). No free core: no pinning.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    for cpu in cpus:
        f = open(Path(tempfile.gettempdir()) / f"talkclip-core-{cpu}.lock", "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _pin_free_core.held = f          # keep the lock as long as the process lives
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpu})
        return cpu
    return None


class ClipActor:
    """One Ray actor: one :class:`ClipWorker` (one landmarker) that never commits by itself."""

    def __init__(self, cfg, index: int):
        from .build_ta_mead import WORK_DIR, ClipWorker

        self.core = _pin_free_core()
        self._lock = open(Path(cfg.out_dir) / WORK_DIR / "workers.lock", "a")
        fcntl.flock(self._lock, fcntl.LOCK_SH)   # as local workers: a new build waits for old writers
        # flushes come from the driver only, under its tags
        self.worker = ClipWorker(dataclasses.replace(cfg, shard_clips=2**62), index)

    def where(self) -> dict:
        import ray

        return dict(pid=os.getpid(), node=ray.get_runtime_context().get_node_id(), core=self.core)

    def process(self, clip) -> dict:
        return dataclasses.asdict(self.worker.process(clip))

    def flush(self, tag: str) -> tuple[list[dict], list[dict]]:
        """Write this batch's data shards (frames, audio, phonemes) as ``<tag>``; return (stage-1 rows, failure rows)."""
        return self.worker.write_data(tag)

    def close(self) -> None:
        self.worker.close()


# ----------------------------------------------------------------------------- the driver

@dataclass
class _Slot:
    """The driver's view of one actor: calls not answered yet, clips not committed yet."""

    index: int
    handle: Any
    ready: bool = False
    started: float = field(default_factory=time.monotonic)
    seq: int = 0
    calls: collections.OrderedDict = field(default_factory=collections.OrderedDict)  # ref -> ("clip", clip) | ("flush", tag) | ("where", None)
    batch: list = field(default_factory=list)                 # clips queued since the last flush
    batches: dict = field(default_factory=dict)               # tag -> clips of a queued, uncommitted flush

    def clips_in_flight(self) -> int:
        return sum(1 for kind, _ in self.calls.values() if kind == "clip")


class RayPool:
    """Drives :class:`ClipActor` s over a queue of clips (see the module doc)."""

    def __init__(self, cfg, n_actors: int, emit: Callable, commit: Callable, fail: Callable):
        self.ray = import_ray()
        self.cfg = cfg
        self.target = n_actors
        self.emit, self.commit, self.fail = emit, commit, fail
        self.remote_cls = self.ray.remote(num_cpus=1, max_restarts=0)(ClipActor)
        self.slots: dict[int, _Slot] = {}
        self.owner: dict[Any, _Slot] = {}
        self.next_index = 0
        self.attempts: collections.Counter = collections.Counter()
        self.reported: set[str] = set()
        self.issued: set[str] = set()       # flush tags asked for
        self.committed: set[str] = set()
        self.warnings: list[str] = []
        self.queue: collections.deque = collections.deque()

    # -- actors
    def _start_actor(self) -> None:
        idx = self.next_index
        self.next_index += 1
        slot = _Slot(idx, self.remote_cls.remote(self.cfg, idx))
        self.slots[idx] = slot
        self._call(slot, "where", None, slot.handle.where.remote())

    def _call(self, slot: _Slot, kind: str, payload, ref) -> None:
        slot.calls[ref] = (kind, payload)
        self.owner[ref] = slot

    def _cluster_cpus(self) -> int:
        try:
            return int(self.ray.cluster_resources().get("CPU", 0))
        except Exception:  # the cluster view is only a hint here
            return 0

    # -- scheduling
    def _feed(self, slot: _Slot) -> None:
        # a second clip waits in an actor only while there is more work than actors: near the
        # end, a queued clip behind a busy actor would leave another one idle
        depth = IN_FLIGHT if len(self.queue) > len(self.slots) else 1
        while self.queue and slot.ready and slot.clips_in_flight() < depth:
            clip = self.queue.popleft()
            slot.batch.append(clip)
            self._call(slot, "clip", clip, slot.handle.process.remote(clip))
            if len(slot.batch) >= self.cfg.shard_clips:
                self._flush(slot)
        if not self.queue and slot.batch:
            self._flush(slot)

    def _flush(self, slot: _Slot) -> None:
        tag = f"{self.cfg.run_tag}-r{slot.index:03d}-{slot.seq:05d}"
        slot.seq += 1
        slot.batches[tag], slot.batch = slot.batch, []
        self.issued.add(tag)
        self._call(slot, "flush", tag, slot.handle.flush.remote(tag))

    def _busy(self) -> bool:
        """Work asked and unanswered (an actor still starting counts only while clips wait)."""
        return any(kind != "where" or self.queue for s in self.slots.values() for kind, _ in s.calls.values())

    def run(self, todo: list) -> list[str]:
        self.queue.extend(todo)
        for _ in range(self.target):
            self._start_actor()
        while True:
            for slot in list(self.slots.values()):
                self._feed(slot)
            if not self._busy():     # nothing asked and unanswered: all committed, or no actor left
                break
            refs = [r for s in self.slots.values() for r in s.calls]
            done, _ = self.ray.wait(refs, num_returns=1, timeout=1.0)
            for ref in done:
                if ref in self.owner:    # not dropped by an earlier failure of its actor
                    self._settle(ref)
            self._expire_starting()
        left = len(self.queue) + sum(len(s.batch) + sum(map(len, s.batches.values())) for s in self.slots.values())
        if left:
            self.warnings.append(f"{left} clip(s) not processed: no Ray worker left (rerun the same command to resume)")
        return self.warnings

    def _settle(self, ref) -> None:
        slot = self.owner[ref]
        try:
            value = self.ray.get(ref)
        except Exception as e:  # the actor, its process or its node died (or a call raised)
            self._lose(slot, e)
            return
        self._accept(slot, ref, value)

    def _accept(self, slot: _Slot, ref, value) -> None:
        kind, payload = slot.calls.pop(ref)
        self.owner.pop(ref, None)
        if kind == "where":
            slot.ready = True
        elif kind == "clip":
            if value["clip_id"] not in self.reported:   # a requeued clip counts once on the bar
                self.reported.add(value["clip_id"])
                self.emit(value)
        else:
            stage1, failures = value
            self.commit(payload, stage1, failures)
            self.committed.add(payload)
            del slot.batches[payload]

    def _salvage(self, slot: _Slot):
        """Accept the answers a failed actor gave before it died, in call order; returns the
        call it failed on (kind, payload), or None. Each answer is fetched, not polled: one the
        actor gave just before dying may not have reached the driver yet, and taking it for the
        failed call would charge the wrong clip."""
        for ref in list(slot.calls):
            try:
                value = self.ray.get(ref, timeout=SALVAGE_TIMEOUT_S)   # a dead actor's unfinished call raises at once
            except Exception:
                return slot.calls[ref]
            self._accept(slot, ref, value)
        return None

    def _lose(self, slot: _Slot, error: BaseException) -> None:
        """An actor failed: keep what it finished, requeue its uncommitted clips, charge the
        clip it was running, start a replacement."""
        running = self._salvage(slot)
        for ref in slot.calls:
            self.owner.pop(ref, None)
        slot.calls.clear()
        self.ray.kill(slot.handle, no_restart=True)
        del self.slots[slot.index]
        message = one_line(error)[:300]
        requeue = [c for tag in slot.batches for c in slot.batches[tag]] + slot.batch
        self._drop_data(slot.batches)
        blamed = running[1].clip_id if running and running[0] == "clip" else None
        for clip in reversed(requeue):
            if clip.clip_id == blamed:
                self.attempts[blamed] += 1
                if self.attempts[blamed] >= MAX_ATTEMPTS:
                    self.fail(clip, f"its worker died {MAX_ATTEMPTS} times while processing it (last: {message})")
                    self.reported.add(blamed)
                    continue
            self.queue.appendleft(clip)
        self.warnings.append(f"Ray worker r{slot.index:03d} died ({message}); "
                             f"{len(requeue)} uncommitted clip(s) requeued")
        live = len(self.slots)
        if self.queue and live < self.target and (live < self._cluster_cpus() or not live):
            self._start_actor()

    def _expire_starting(self) -> None:
        for slot in list(self.slots.values()):
            if not slot.ready and time.monotonic() - slot.started > START_TIMEOUT_S and len(self.slots) > 1:
                self._lose(slot, TimeoutError(f"no CPU slot within {START_TIMEOUT_S} s"))

    def _drop_data(self, tags) -> None:
        """Remove the data shards (frames, audio, phonemes) of flushes that were asked for but not committed."""
        out = Path(self.cfg.out_dir)
        for tag in tags:
            for table in ("frames", "audio", "phonemes"):
                (out / table / f"{tag}.parquet").unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Kill every actor and remove the data of flushes that were never committed."""
        for slot in self.slots.values():
            self.ray.kill(slot.handle, no_restart=True)
        self.slots.clear()
        self._drop_data(self.issued - self.committed)


# ----------------------------------------------------------------------------- phase 1 entry

def run_phase1(todo: list, cfg, emit: Callable, *, jobs: int, address: str | None) -> list[str]:
    """Track ``todo`` on Ray (``jobs`` actors; 0 = one per CPU slot of the cluster); the same
    contract as the local executor: ``emit`` gets each clip's result once, every clip that
    returns is committed, and the returned list holds warnings (lost workers, clips left)."""
    from talkclip.schemas.tamead import FailureRow, Stage1Row

    from .build_ta_mead import _ClipResult, clip_base_row, commit_record

    if not todo:
        return []
    ray = import_ray()
    started = connect(address, jobs or None)
    pool = None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        n = min(jobs or cpus, cpus, len(todo))
        warnings = [] if not jobs or jobs <= cpus else [f"--jobs {jobs} capped at the cluster's {cpus} CPU slot(s)"]
        if n < 1:
            raise InputError(f"the Ray cluster at {address or 'auto'} has no CPU slot free for a build worker")
        out = Path(cfg.out_dir)
        driver_seq = iter(range(10**9))

        def fail(clip, message: str) -> None:   # a clip that kept killing its worker
            row = clip_base_row(clip, cfg.root)
            commit_record(out, f"{cfg.run_tag}-driver-{next(driver_seq):05d}", [Stage1Row(**row, ok=False, track_s=0.0)],
                          [FailureRow(clip_id=clip.clip_id, stage="worker", error=message, path=row["video_path"])])
            emit(_ClipResult(clip.clip_id, False, 0, "worker", message))

        pool = RayPool(cfg, n, lambda r: emit(_ClipResult(**r)), lambda tag, s1, fl: commit_record(out, tag, s1, fl), fail)
        return warnings + pool.run(todo)
    finally:
        if pool is not None:
            pool.shutdown()
        if started:
            ray.shutdown()
