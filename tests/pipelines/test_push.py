"""push: every local check and the planned single commit; offline and no-token errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from talkclip import InputError, LayoutError, OfflineError
from talkclip.pipelines.push import plan_push, push

from support import ROOT, cached_mini_build


@pytest.fixture(scope="module")
def built(fixtures, landmarker):
    return cached_mini_build()


@pytest.fixture
def copy(built, tmp_path):
    out = tmp_path / "build"
    shutil.copytree(built[1], out)
    return out


def test_plan_lists_one_commit_of_the_published_files(built):
    from huggingface_hub import CommitOperationAdd

    _, out = built
    plan = plan_push(out, "someone/ta-mead-mini", private=True)
    paths = [p for p, _ in plan.files]
    assert paths[:2] == ["README.md", "manifest.json"]
    assert {"clips/train-00000.parquet", "clips/test-00000.parquet", "failures/failures-00000.parquet"} <= set(paths)
    assert sum(p.startswith("frames/") for p in paths) >= 1 and sum(p.startswith("audio/") for p in paths) >= 1
    assert not any(".work" in p or p.endswith(".lock") or "/." in p for p in paths)
    assert plan.total_bytes == sum(f.stat().st_size for _, f in plan.files)
    ops = plan.operations()
    assert all(isinstance(o, CommitOperationAdd) for o in ops) and [o.path_in_repo for o in ops] == paths
    assert "11 clips" in plan.commit_message


def test_local_checks(copy):
    with pytest.raises(InputError, match="OWNER/NAME"):
        plan_push(copy, "no-slash")
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(dict(manifest, complete=False)))
    with pytest.raises(LayoutError, match="incomplete"):
        plan_push(copy, "a/b")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    card = (copy / "README.md").read_text()
    (copy / "README.md").write_text(card.replace("config_name: clips", "config_name: other"))
    with pytest.raises(LayoutError, match="configs"):
        plan_push(copy, "a/b")
    (copy / "README.md").write_text(card)
    frame_file = sorted((copy / "frames").glob("*.parquet"))[0]
    data = frame_file.read_bytes()
    frame_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(LayoutError, match="not a readable parquet"):
        plan_push(copy, "a/b")
    frame_file.unlink()
    with pytest.raises(LayoutError, match="inconsistent|no parquet"):
        plan_push(copy, "a/b")


def test_offline_push_is_one_line_error_and_uploads_nothing(built):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE") as e:
        push(built[1], "someone/ta-mead-mini")
    assert "\n" not in str(e.value) and "nothing was uploaded" in str(e.value)


def test_cli_push_without_token_exits_2(built, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0")   # online but no token anywhere
    base = [sys.executable, "-c", "from talkclip.cli import data_app; data_app()", "push", str(built[1]),
            "--repo", "someone/ta-mead-mini"]
    proc = subprocess.run(base, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "no Hugging Face token" in lines[0], proc.stderr
    dry = subprocess.run(base + ["--dry-run"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert dry.returncode == 0 and "README.md" in dry.stdout and "one commit, not sent" in dry.stdout
