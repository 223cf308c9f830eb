"""build-ta-mead --executor ray on a real Ray cluster: a head and a second node on loopback.

The mini-MEAD built on the cluster (interrupted with Ctrl-C, then resumed) gives the rows of the
local build; worker processes killed by pid mid-build (every time they open one clip's video)
leave every clip exactly once, that clip recorded as a failure after its attempts (and
recovered by a rerun).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# Ray replaces a loopback cluster address by the machine's outward IP before connecting, unless
# it believes multi-node clusters are off; this setting keeps the driver on 127.0.0.1 (the nodes
# bind there). It must be set before ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from talkclip import InputError  # noqa: E402
from talkclip.pipelines import shards  # noqa: E402
from talkclip.pipelines.build_ta_mead import build_ta_mead  # noqa: E402

from support import (assert_one_line_error, cached_mini_build, data_cli_command, read_build_tables,  # noqa: E402
                     run_data_cli)

NODE = dict(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=80 * 2**20)


@pytest.fixture(scope="session")
def ray_cluster():
    """Head + one worker node, one CPU each, on 127.0.0.1; stopped after the session."""
    cluster = Cluster(initialize_head=True, head_node_args=dict(NODE, include_dashboard=False))
    try:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def local_build(fixtures, landmarker):
    return cached_mini_build(jobs=2)


def _actor_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::ClipActor"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _holds_open(pid: int, path: str) -> bool:
    try:
        return any(os.readlink(f) == path for f in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _same_rows(a: dict, b: dict, skip: set[str] = frozenset()) -> None:
    """Tables of two builds agree: ids, AU values (1e-6), captions, splits, frames, audio."""
    rows = {name: {r["clip_id"]: r for r in t.to_pylist() if r["clip_id"] not in skip} for name, t in a.items()}
    other = {name: {r["clip_id"]: r for r in t.to_pylist() if r["clip_id"] not in skip} for name, t in b.items()}
    for name in ("clips", "frames", "audio", "failures"):
        assert sorted(rows[name]) == sorted(other[name]), name
    for cid, r in rows["clips"].items():
        o = other["clips"][cid]
        for col in ("au_intensity_raw", "au_intensity"):
            assert np.allclose(r[col], o[col], atol=1e-6, rtol=0), (cid, col)
        assert (r["au_level"], r["captions"], r["split"], r["frames"]) == (o["au_level"], o["captions"], o["split"], o["frames"])
    for cid, r in rows["frames"].items():
        assert np.allclose(r["blendshapes"], other["frames"][cid]["blendshapes"], atol=1e-6)
    for cid, r in rows["audio"].items():
        assert r["samples"] == other["audio"][cid]["samples"]
    assert {k: v["stage"] for k, v in rows["failures"].items()} == {k: v["stage"] for k, v in other["failures"].items()}


def test_ray_build_interrupted_then_resumed_matches_local(ray_cluster, local_build, tmp_path):
    """CLI build on the cluster, Ctrl-C after the first commit: exit 130, no worker left on the
    cluster; the same build resumed gives the rows of the local build, with progress per clip."""
    facts, local_out = local_build
    out = tmp_path / "out"
    proc = subprocess.Popen([*data_cli_command(), "build-ta-mead", "--mead", str(facts["root"]), "--out", str(out),
                             "--executor", "ray", "--ray-address", ray_cluster, "--jobs", "0", "--shard-size", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.monotonic() + 120
    while not shards.shard_files(out / ".work" / "stage1") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    deadline = time.monotonic() + 15          # the cluster stops the actors of a gone driver
    while _actor_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _actor_pids() == []
    committed = shards.read_column(out / ".work" / "stage1", "clip_id")
    assert 2 <= len(committed) < 14
    done_before = sum(shards.read_column(out / ".work" / "stage1", "ok"))   # failed clips are retried
    events = []
    s = build_ta_mead(facts["root"], out, executor="ray", ray_address=ray_cluster, jobs=0, progress=events.append)
    assert (s.selected, s.skipped, s.processed, s.missing, s.failed) == (14, done_before, 14 - done_before, 0, 3)
    clip_events = [e for e in events if e.stage == "clip"]
    assert len(clip_events) == 14 - done_before and clip_events[-1].done == 14 - done_before
    _same_rows(read_build_tables(out), read_build_tables(local_out))
    assert not ray.is_initialized()     # the build disconnects; the cluster keeps running


def test_killed_workers_leave_each_clip_once(ray_cluster, local_build, tmp_path):
    """A worker SIGKILLed whenever it opens one clip's video: its uncommitted clips are redone
    elsewhere, the clip itself becomes a "worker" failure after 3 attempts, nothing doubles."""
    facts, local_out = local_build
    poison = "M001_front_happy_level_2_001"
    path = str(Path(facts["root"]) / "M001/video/front/happy/level_2/001.mp4")
    kills: list[int] = []
    stop = threading.Event()

    def killer():
        while not stop.is_set():
            for pid in _actor_pids():
                if pid not in kills and _holds_open(pid, path):   # a killed process may linger a moment
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
            time.sleep(0.01)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        s = build_ta_mead(facts["root"], tmp_path / "out", executor="ray", ray_address=ray_cluster, jobs=2,
                          shard_clips=3)
    finally:
        stop.set()
        t.join()
    assert len(kills) == 3, kills
    assert (s.selected, s.missing) == (14, 0)
    assert sum("died" in w for w in s.warnings) == 3, s.warnings
    out = read_build_tables(tmp_path / "out")
    ids = [r for name in ("clips", "failures") for r in out[name].column("clip_id").to_pylist()]
    assert sorted(ids) == sorted(facts["front_clips"]) and len(set(ids)) == len(ids)
    assert out["frames"].column("clip_id").to_pylist() == out["clips"].column("clip_id").to_pylist()
    fail = {r["clip_id"]: r for r in out["failures"].to_pylist()}
    assert fail[poison]["stage"] == "worker" and "died 3 times" in fail[poison]["error"]
    _same_rows(out, read_build_tables(local_out), skip={poison})
    # a rerun retries the failed clips; the poisoned one, no longer killed, is recovered
    again = build_ta_mead(facts["root"], tmp_path / "out", executor="ray", ray_address=ray_cluster)
    assert (again.skipped, again.retried, again.recovered) == (10, 4, 1)
    _same_rows(read_build_tables(tmp_path / "out"), read_build_tables(local_out))


def test_unreachable_address_and_url_out_are_one_line(local_build, tmp_path):
    facts, _ = local_build
    with pytest.raises(InputError, match="cannot reach the Ray cluster at --ray-address 127.0.0.1:9"):
        build_ta_mead(facts["root"], tmp_path / "out", executor="ray", ray_address="127.0.0.1:9")
    with pytest.raises(InputError, match="URLs .* are not supported"):
        build_ta_mead(facts["root"], "s3://bucket/ta-mead", executor="ray")
    assert not (tmp_path / "out").exists()


def test_missing_ray_is_one_line(local_build, tmp_path):
    """Without the extra installed (an import of ray that fails, as it does when missing)."""
    facts, _ = local_build
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    proc = run_data_cli("build-ta-mead", "--mead", facts["root"], "--out", tmp_path / "out", "--executor", "ray", env=env)
    assert "pip install -e '.[ray]'" in assert_one_line_error(proc)
    assert not (tmp_path / "out").exists()
