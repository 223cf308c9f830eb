"""Hostile inputs to the data commands (issue 9: 1, 4, 5, 6, 11, 13, 14), through the CLI where a
user meets them: exit code, one stderr line, files on disk before and after."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from talkclip import usable_cpus
from talkclip.pipelines import shards

from support import (ROOT, assert_one_line_error, cached_mini_build, cached_mini_mead, data_cli_command,
                     read_build_tables, run_data_cli, wait_for_first_shard, write_synthetic_tamead)


def _tree(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_tamead(tmp_path_factory.mktemp("synth") / "ta", n_clips=6, frames=40)


# ---- 1: an output folder that is not a build is refused, nothing touched

def test_build_refuses_a_folder_of_the_users_files(tmp_path, fixtures, landmarker):
    mini = cached_mini_mead()
    out = tmp_path / "mine"
    (out / "clips").mkdir(parents=True)
    (out / "README.md").write_text("my own notes\n")
    (out / "clips" / "holiday.txt").write_text("not a shard\n")
    before = _tree(out)
    proc = run_data_cli("build-ta-mead", "--mead", mini["root"], "--out", out, "--limit", "1")
    line = assert_one_line_error(proc)
    assert "is not a TA-MEAD build" in line and "choose an empty or new folder" in line, line
    assert _tree(out) == before and sorted(p.name for p in out.iterdir()) == ["README.md", "clips"]


def test_other_writers_refuse_unusable_outputs(tmp_path, synth):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    # make-sample into a file; calibrate --out a folder or a path under a file; fit-basis likewise
    for args in (("make-sample", blocker),
                 ("calibrate", synth, "--out", tmp_path),
                 ("calibrate", synth, "--out", blocker / "t.csv"),
                 ("fit-basis", synth, "--out", blocker / "b.npz")):
        line = assert_one_line_error(run_data_cli(*args))
        assert str(tmp_path) in line, (args, line)
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    assert not any(p.name.endswith(".csv") for p in synth.iterdir())


# ---- 4: a clips table of a foreign schema: one validation for stats, calibrate and push

def test_foreign_clips_schema_is_one_line_everywhere(tmp_path, fixtures, landmarker):
    build = tmp_path / "foreign"
    shutil.copytree(cached_mini_build(jobs=2)[1], build)
    shard = next((build / "clips").glob("*.parquet"))
    t = pq.read_table(shard)
    t = t.set_column(t.schema.get_field_index("au_level"), "au_level",
                     pa.array([str(x) for x in t.column("au_level").to_pylist()]))
    pq.write_table(t, shard)
    lines = {cmd: assert_one_line_error(run_data_cli(*args)) for cmd, args in (
        ("stats", ("stats", build)), ("calibrate", ("calibrate", build)),
        ("push", ("push", build, "--repo", "me/ta", "--dry-run")))}
    for cmd, line in lines.items():
        assert "does not have the clips schema" in line and "'au_level'" in line, (cmd, line)
    assert len({line.split(":", 1)[1] for line in lines.values()}) == 1, lines   # the same message


# ---- 6: Ctrl-C during a --jobs 2 build: one line, exit 130, committed work kept, rerun resumes

def test_ctrl_c_during_a_parallel_build(tmp_path, fixtures, landmarker):
    facts, straight = cached_mini_build(jobs=2)
    out = tmp_path / "interrupted"
    cmd = [*data_cli_command(), "build-ta-mead", "--mead", str(facts["root"]), "--out", str(out),
           "--jobs", "2", "--shard-size", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            start_new_session=True)
    wait_for_first_shard(proc, out)
    os.killpg(proc.pid, signal.SIGINT)          # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted; rerun the same command to resume"], err
    kept = len(shards.read_column(out / ".work" / "stage1", "clip_id"))
    assert 0 < kept < 14 and not (out / "manifest.json").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert rerun.returncode == 1, rerun.stderr        # 1: the mini-MEAD's three bad clips
    a, b = read_build_tables(straight), read_build_tables(out)
    for name in ("clips", "frames", "audio", "failures"):
        assert a[name].equals(b[name]), name


# ---- 11, 13, 14: a damaged archive, retries, test speakers, the --jobs cap

def _damaged_corpus(root):
    """M001: only the mini-MEAD's three failing clips; W001: video.tar cut inside its 2nd member;
    W002: an intact copy of W001. Returns the intact W001 video.tar bytes."""
    mini = cached_mini_mead()
    src = mini["root"]
    for cid in mini["expected_failures"]:
        _, view, emo, _, level, take = cid.split("_")
        rel = f"M001/video/{view}/{emo}/level_{level}/{take}.mp4"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, root / rel)
    shutil.copytree(src / "W001", root / "W001")
    shutil.copytree(src / "W001", root / "W002")
    tar = root / "W001" / "video.tar"
    intact = tar.read_bytes()
    with tarfile.open(tar) as tf:
        second = [m for m in tf if m.isfile()][1]
    tar.write_bytes(intact[: second.offset_data + second.size // 2])
    return intact, second.name


def test_damaged_archive_retries_and_test_speakers(tmp_path, fixtures, landmarker):
    root, out = tmp_path / "mead", tmp_path / "out"
    intact, cut_member = _damaged_corpus(root)
    cpus = usable_cpus()
    cmd = ("build-ta-mead", "--mead", root, "--out", out, "--jobs", str(cpus + 62))
    first = run_data_cli(*cmd)
    assert first.returncode == 1, first.stderr          # failures recorded, the others built
    warnings = [ln for ln in first.stderr.splitlines() if ln.startswith("warning:")]
    assert f"warning: --jobs {cpus + 62} is more than the {cpus} CPU(s) here: using {cpus} worker(s)" in warnings
    assert any("damaged archive W001/video.tar" in w for w in warnings), warnings
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timing"]["jobs"] == cpus
    fails = {r["clip_id"]: r for r in read_build_tables(out)["failures"].to_pylist()}
    cut_id = "W001_" + "_".join(cut_member.split("/")[1:]).replace(".mp4", "")
    assert fails[cut_id]["stage"] == "read" and "truncated archive video.tar" in fails[cut_id]["error"]
    assert {c for c in fails if c.startswith("M001")} == set(cached_mini_mead()["expected_failures"])
    clips = read_build_tables(out)["clips"]
    assert set(clips.column("speaker").to_pylist()) == {"W001", "W002"}
    # M001 has no built clip: never a test speaker (it would come first: men and women alternate)
    assert "M001" not in manifest["splits"]["test"] and len(manifest["splits"]["test"]) == 1
    assert manifest["counts"]["test_clips"] == clips.column("split").to_pylist().count("test") > 0

    (root / "W001" / "video.tar").write_bytes(intact)    # the download is fixed: rerun retries
    second = run_data_cli(*cmd)
    assert second.returncode == 1, second.stderr
    assert "retried / recovered / still failing" in second.stdout
    row = next(ln for ln in second.stdout.splitlines() if "retried / recovered" in ln)
    assert "4 / 1 / 3" in row, row
    fails = read_build_tables(out)["failures"].column("clip_id").to_pylist()
    assert sorted(fails) == sorted(cached_mini_mead()["expected_failures"])
    assert read_build_tables(out)["clips"].num_rows == 8


# ---- 9 (issue 8): a video without a frame rate fails with a reason, not as 30 fps

def test_a_video_without_frame_rate_is_a_decode_failure(tmp_path):
    from talkclip import MediaError
    from talkclip.annotate.media import MediaInfo
    from talkclip.pipelines.build_ta_mead import _check_frame_rate

    info = MediaInfo("x.mp4", False, 320, 180, 0.0, None, 1.2, True)
    with pytest.raises(MediaError, match="no frame rate in the video stream of x.mp4"):
        _check_frame_rate(info)
    assert _check_frame_rate(MediaInfo("y.mp4", False, 320, 180, 25.0, 30, 1.2, True)) is None


def test_a_build_from_an_earlier_version_is_named_as_such(tmp_path, fixtures, landmarker):
    """A work record written before the clips schema grew (e.g. no `sentence`/`intensity`) gives one
    line that says so on a rerun, not a schema dump; the demo, which owns its folder, starts over."""
    from talkclip.pipelines.demo import demo_corpus

    facts, built = cached_mini_build()
    old = tmp_path / "demo" / "ta-mead"
    shutil.copytree(built, old)
    for shard in shards.shard_files(old / ".work" / "stage1"):
        t = pq.read_table(shard)
        pq.write_table(t.drop_columns(["sentence", "intensity"]), shard)
    before = _tree(old)
    line = assert_one_line_error(subprocess.run(
        [*data_cli_command(), "build-ta-mead", "--mead", str(facts["root"]), "--out", str(old)],
        capture_output=True, text=True, timeout=300))
    assert "earlier talkclip" in line and "sentence" in line
    assert _tree(old) == before                       # nothing touched
    (tmp_path / "demo" / "mead").mkdir()              # the demo's sample is there already
    _, build = demo_corpus(tmp_path / "demo")
    assert build == old and not old.exists()          # outdated demo build removed, to be rebuilt
