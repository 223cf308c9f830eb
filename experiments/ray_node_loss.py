"""A whole Ray node lost in the middle of a build (not in the suite: it adds a node and waits
for Ray to declare it dead, ~30-60 s on a 2-core machine).

Starts a head and two worker nodes (one CPU each) on 127.0.0.1, builds the test mini-MEAD with
``--executor ray --jobs 0 --shard-size 2``, removes one worker node (its raylet and actors
killed, not drained) after the third clip, and checks that the build still ends with every
clip exactly once and the rows of a local build. Prints what happened.

    PYTHONPATH=... .venv/bin/python experiments/ray_node_loss.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # keep the driver on 127.0.0.1 (see the tests)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from support import make_mini_mead, read_build_tables  # noqa: E402

NODE = dict(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=80 * 2**20)
# declare a silent node dead after ~3 s instead of Ray's default ~30 s
FAST = {"health_check_period_ms": 500, "health_check_failure_threshold": 6, "health_check_timeout_ms": 500}


def main() -> int:
    from talkclip.pipelines.build_ta_mead import build_ta_mead

    tmp = Path(tempfile.mkdtemp(prefix="talkclip-node-loss-"))
    facts = make_mini_mead(tmp / "mead")
    local = build_ta_mead(facts["root"], tmp / "local", jobs=1)
    cluster = Cluster(initialize_head=True, head_node_args=dict(NODE, include_dashboard=False, _system_config=FAST))
    try:
        cluster.add_node(**NODE)
        doomed = cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        seen = []

        def progress(ev):
            if ev.stage == "clip":
                seen.append(ev.clip_id)
                if len(seen) == 3:
                    print(f"removing a worker node after {len(seen)} clips", flush=True)
                    cluster.remove_node(doomed, allow_graceful=False)

        s = build_ta_mead(facts["root"], tmp / "ray", executor="ray", ray_address=cluster.address, jobs=0,
                          shard_clips=2, progress=progress)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    out, ref = read_build_tables(tmp / "ray"), read_build_tables(tmp / "local")
    ids = [c for name in ("clips", "failures") for c in out[name].column("clip_id").to_pylist()]
    once = sorted(ids) == sorted(facts["front_clips"]) and len(ids) == len(set(ids))
    same = all(out[k].column("clip_id").to_pylist() == ref[k].column("clip_id").to_pylist() for k in ref)
    print(f"warnings: {s.warnings}")
    print(f"missing {s.missing}, failed {s.failed} (local {local.failed}); every clip exactly once: {once}; "
          f"same clip ids as the local build in every table: {same}")
    return 0 if once and same and s.missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
