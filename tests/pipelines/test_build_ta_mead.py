"""build-ta-mead on the mini-MEAD: tables, failures, splits, resume after SIGKILL, reruns, tar input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from talkclip import InputError, LayoutError
from talkclip.pipelines import shards
from talkclip.pipelines.build_ta_mead import (ClipWorker, _remove_uncommitted, build_ta_mead, dequantise_landmarks,
                                              hold_out_speakers)
from talkclip.schemas.tamead import AUDIO_SCHEMA, CLIPS_SCHEMA, FAILURES_SCHEMA, FRAMES_SCHEMA

from support import (ROOT, cached_mini_build, cached_mini_build_summary, read_build_tables,
                     wait_for_first_shard)

CLI = [sys.executable, "-c", "from talkclip.cli import data_app; data_app()", "build-ta-mead"]


@pytest.fixture(scope="module")
def built(fixtures, landmarker):
    return cached_mini_build(jobs=2)   # the one --jobs 2 build of the suite


def test_counts_failures_and_flags(built):
    facts, out = built
    summary = cached_mini_build_summary()
    assert (summary.selected, summary.processed, summary.skipped) == (14, 14, 0)
    assert summary.exit_code == 1 and summary.failed == 3
    t = read_build_tables(out)
    clips = t["clips"]
    assert clips.column("clip_id").to_pylist() == facts["expected_ok"]
    assert clips.schema.equals(CLIPS_SCHEMA) and t["frames"].schema.equals(FRAMES_SCHEMA)
    fail = {r["clip_id"]: r for r in t["failures"].to_pylist()}
    assert {k: v["stage"] for k, v in fail.items()} == facts["expected_failures"]
    assert "no face" in fail["M001_front_surprised_level_1_001"]["error"]
    trunc = fail["M001_front_angry_level_3_001"]["error"]
    assert trunc.startswith("truncated video M001/video/front/angry/level_3/001.mp4: decoded"), trunc
    assert "no audio" in fail["M001_front_disgusted_level_1_001"]["error"]
    assert all(not r["error"].count("\n") and str(facts["root"]) not in r["error"] for r in fail.values())
    rows = {r["clip_id"]: r for r in clips.to_pylist()}
    assert {k: r["audio_source"] for k, r in rows.items()} == facts["audio_source"]
    assert sorted(k for k, r in rows.items() if r["av_mismatch"]) == facts["av_mismatch"]
    for r in rows.values():
        assert r["frames"] == r["frames_with_face"] > 20 and (r["width"], r["height"]) == (320, 180)
        assert abs(r["duration_s"] - 1.2) < 0.1 and len(r["captions"]) == 5
        assert r["gender"] == ("man" if r["speaker"] == "M001" else "woman")
        assert all(0 <= lv <= 3 for lv in r["au_level"])
    assert rows["W001_front_happy_level_1_001"]["video_path"] == "W001/video.tar::video/front/happy/level_1/001.mp4"
    assert rows["M001_front_sad_level_2_001"]["audio_path"] == "M001/audio/sad/level_2/001.m4a"
    assert rows["M001_front_happy_level_2_001"]["emotion_labels"]          # from the group table
    assert rows["M001_front_neutral_level_1_001"]["emotion_labels"] == []  # neutral: AU-only captions


def test_frames_and_audio_rows_match_clips(built):
    _, out = built
    t = read_build_tables(out)
    clips = {r["clip_id"]: r for r in t["clips"].to_pylist()}
    assert t["frames"].column("clip_id").to_pylist() == sorted(clips)
    assert t["audio"].column("clip_id").to_pylist() == sorted(clips)
    for f in t["frames"].to_pylist():
        c = clips[f["clip_id"]]
        T = c["frames"]
        assert len(f["timestamp_ms"]) == len(f["face"]) == len(f["blendshapes"]) == len(f["pose"]) == T
        assert f["timestamp_ms"][0] < 100 and all(b > a for a, b in zip(f["timestamp_ms"], f["timestamp_ms"][1:]))
        assert f["landmarks"] is None
        pose = np.array(f["pose"]).reshape(T, 4, 4)
        assert np.allclose(pose[:, 3], [0, 0, 0, 1], atol=1e-4)
    for a in t["audio"].to_pylist():
        c = clips[a["clip_id"]]
        assert a["sample_rate"] == 16000
        assert abs(len(a["samples"]) / 16000 - c["audio_duration_s"]) < 1e-3
        if not c["av_mismatch"]:
            assert abs(c["audio_duration_s"] - c["duration_s"]) <= 0.2


def test_splits_baseline_and_manifest(built):
    _, out = built
    clips = read_build_tables(out)["clips"].to_pylist()
    manifest = json.loads((out / "manifest.json").read_text())
    test_spk = manifest["splits"]["test"]
    assert len(test_spk) == 1 and set(manifest["splits"]["train"]) | set(test_spk) == {"M001", "W001"}
    assert all(r["split"] == ("test" if r["speaker"] in test_spk else "train") for r in clips)
    assert any("holding out 1" in w for w in manifest["warnings"])
    # neutral baseline: per speaker, intensity = clip(raw - mean raw of that speaker's neutral clips)
    for spk in ("M001", "W001"):
        mine = [r for r in clips if r["speaker"] == spk]
        base = np.mean([r["au_intensity_raw"] for r in mine if r["emotion"] == "neutral"], axis=0)
        for r in mine:
            want = np.clip(np.array(r["au_intensity_raw"]) - base, 0, 5)
            assert np.allclose(r["au_intensity"], want, atol=1e-5)
    c = manifest["counts"]
    assert (c["selected"], c["clips"], c["failed"], c["av_mismatch"]) == (14, 11, 3, 1)
    assert c["failures_by_stage"] == {"audio": 1, "decode": 1, "track": 1}
    from talkclip.annotate.au import load_au_table
    from talkclip.annotate.emotions import group_table_sha256

    assert manifest["au_table_sha256"] == load_au_table().sha256
    assert manifest["group_table_sha256"] == group_table_sha256()
    assert manifest["complete"] is True and manifest["version"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: clips" in card and "Wang" in card
    assert "own annotation" in card and "MediaPipe" in card


def test_loads_with_datasets_and_pyarrow(built, tmp_path):
    import datasets
    import pyarrow.dataset as ds

    _, out = built
    d = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert sum(d[s].num_rows for s in d) == 11 and set(d) == {"train", "test"}
    row = d["train"][0]
    assert len(row["au_level"]) == 12 and isinstance(row["captions"][0], str)
    frames = datasets.load_dataset(str(out), "frames", cache_dir=str(tmp_path / "hf"))
    assert frames["full"].num_rows == 11 and len(frames["full"][0]["blendshapes"][0]) == 52
    assert ds.dataset(out / "clips", format="parquet").count_rows() == 11


def test_same_results_with_one_job_and_after_sigkill(built, tmp_path):
    """SIGKILL after the first committed shard, rerun: same tables as the straight --jobs 2 build."""
    facts, straight = built
    out = tmp_path / "killed"
    cmd = CLI + ["--mead", str(facts["root"]), "--out", str(out), "--jobs", "1", "--shard-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    stage1 = wait_for_first_shard(proc, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(shards.read_column(stage1, "clip_id"))
    ok_before = sum(shards.read_column(stage1, "ok"))
    assert 0 < done_before < 14 and not (out / "manifest.json").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert rerun.returncode == 1, rerun.stderr       # 1: some clips failed (recorded)
    manifest = json.loads((out / "manifest.json").read_text())
    # the rerun tracks the rest and retries the committed failures (issue 9, item 11)
    assert manifest["timing"]["last_run_clips"] == 14 - ok_before
    a, b = read_build_tables(straight), read_build_tables(out)
    for name in ("clips", "frames", "audio", "failures"):
        assert a[name].equals(b[name]), f"{name} differs after kill + resume"


def test_rerun_of_finished_build_does_no_work(built, tmp_path, monkeypatch):
    facts, straight = built
    out = tmp_path / "copy"
    shutil.copytree(straight, out)
    stamp = {p: p.stat().st_mtime_ns for p in (out / "frames").glob("*.parquet")}

    def no_tracking(self, clip):
        raise AssertionError(f"{clip.clip_id} tracked again")

    monkeypatch.setattr(ClipWorker, "process", no_tracking)
    s = build_ta_mead(facts["root"], out, retry_failed=False)      # (by default the 3 failures are retried)
    assert (s.processed, s.skipped, s.frames_now, s.clips, s.failed) == (0, 14, 0, 11, 3)
    assert {p: p.stat().st_mtime_ns for p in (out / "frames").glob("*.parquet")} == stamp
    a, b = read_build_tables(straight), read_build_tables(out)
    assert all(a[n].equals(b[n]) for n in a)
    # phase-2 options may change between runs: only levels/captions are recomputed
    s2 = build_ta_mead(facts["root"], out, baseline=False, n_captions=2, seed=7, retry_failed=False)
    assert s2.processed == 0
    clips = read_build_tables(out)["clips"].to_pylist()
    assert all(len(r["captions"]) == 2 for r in clips)
    assert all(np.allclose(r["au_intensity"], np.clip(r["au_intensity_raw"], 0, 5), atol=1e-6) for r in clips)
    # phase-1 options may not change in the same folder
    with pytest.raises(InputError, match="other landmarks"):
        build_ta_mead(facts["root"], out, landmarks=True)


def test_tar_speaker_gives_same_rows_as_extracted(built, tmp_path):
    facts, straight = built
    root = tmp_path / "extracted"
    for part in ("video", "audio"):
        with tarfile.open(facts["root"] / "W001" / f"{part}.tar") as tf:
            tf.extractall(root / "W001", filter="data")
    out = tmp_path / "out"
    s = build_ta_mead(root, out, test_speakers=0)
    assert s.failed == 0 and s.clips == 4
    mine, ref = read_build_tables(out), read_build_tables(straight)
    keep = lambda t: t.filter(pa.compute.starts_with(t.column("clip_id"), "W001"))  # noqa: E731
    drop = ["video_path", "audio_path", "split"]
    assert mine["clips"].drop(drop).equals(keep(ref["clips"]).drop(drop))
    assert mine["frames"].equals(keep(ref["frames"])) and mine["audio"].equals(keep(ref["audio"]))
    assert mine["clips"].column("video_path")[0].as_py() == "W001/video/front/angry/level_2/001.mp4"


def test_landmarks_are_int16_and_match_the_tracker(built, tmp_path):
    from talkclip.annotate.tracker import track_media

    facts, _ = built
    out = tmp_path / "lm"
    s = build_ta_mead(facts["root"], out, speakers=["M001"], emotions=["neutral"], limit=1, landmarks=True)
    assert s.clips == 1
    frames = pq.read_table(out / "frames")
    assert frames.schema.field("landmarks").type.value_type.value_type == pa.int16()
    lm = dequantise_landmarks(np.array(frames.column("landmarks")[0].as_py(), dtype=np.int16))   # (T, 478, 3)
    track = track_media(facts["root"] / "M001/video/front/neutral/level_1/001.mp4")
    assert lm.shape == track.landmarks.shape
    assert np.abs(lm - track.landmarks).max() <= 0.51e-4 + 1e-7
    # a wider selection may follow in the same folder (only the new clip is tracked) ...
    s2 = build_ta_mead(facts["root"], out, speakers=["M001"], emotions=["neutral"], limit=2, landmarks=True)
    assert (s2.processed, s2.skipped, s2.clips) == (1, 1, 2)
    assert pq.read_table(out / "frames").num_rows == 2
    # ... but not one that drops clips already built
    with pytest.raises(InputError, match="outside this selection"):
        build_ta_mead(facts["root"], out, speakers=["M001"], emotions=["happy"], landmarks=True)


def test_hold_out_speakers():
    spk = [f"M{i:03d}" for i in range(1, 25)] + [f"W{i:03d}" for i in range(1, 25)]
    train, test, warn = hold_out_speakers(spk, 6)
    assert len(test) == 6 and not warn and not set(train) & set(test) and len(train) == 42
    assert sum(s.startswith("M") for s in test) == 3
    assert hold_out_speakers(list(reversed(spk)), 6)[1] == test      # order does not matter
    train, test, warn = hold_out_speakers(["M001", "W001", "W002"], 6)
    assert len(test) == 1 and warn and "holding out 1" in warn[0]
    assert hold_out_speakers(["M001"], 6)[1] == [] and hold_out_speakers(spk, 0)[1] == []


def test_shards_are_atomic_and_orphans_removed(tmp_path):
    out = tmp_path / "b"
    good = pa.table({"clip_id": ["a"], "stage": ["track"], "error": ["x"], "path": ["p"]})
    shards.write_table(good, FAILURES_SCHEMA, out / ".work" / "failures" / "t1.parquet")
    shards.write_rows([{"clip_id": "a", "sample_rate": 16000, "samples": [1, 2]}], AUDIO_SCHEMA,
                      out / "audio" / "t1.parquet")
    shards.write_rows([{"clip_id": "b", "sample_rate": 16000, "samples": [3]}], AUDIO_SCHEMA,
                      out / "audio" / "t2.parquet")          # no commit record: orphan
    (out / "audio" / ".t3.parquet.tmp").write_bytes(b"half a parquet")
    # commit record for t1 only
    from talkclip.schemas.tamead import STAGE1_SCHEMA

    shards.write_table(STAGE1_SCHEMA.empty_table(), STAGE1_SCHEMA, out / ".work" / "stage1" / "t1.parquet")
    assert shards.read_table(out / "audio", AUDIO_SCHEMA).num_rows == 2    # temp file never read
    _remove_uncommitted(out)
    assert [p.name for p in (out / "audio").iterdir()] == ["t1.parquet"]
    assert shards.read_table(out / ".work" / "failures", FAILURES_SCHEMA).num_rows == 1
    with pytest.raises(LayoutError, match="lacks columns"):
        shards.write_table(pa.table({"clip_id": ["x"]}), FAILURES_SCHEMA, out / "x.parquet")


def test_second_concurrent_build_is_refused(built, tmp_path):
    import fcntl

    facts, _ = built
    out = tmp_path / "busy"
    (out / ".work").mkdir(parents=True)
    with open(out / ".work" / "build.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)   # as a running build holds it
        with pytest.raises(InputError, match="another build is writing"):
            build_ta_mead(facts["root"], out, limit=1)
    assert not (out / "frames").exists()


def test_frame_shards_store_numbers_byte_stream_split(built):
    _, out = built
    meta = pq.ParquetFile(shards.shard_files(out / "frames")[0]).metadata.row_group(0)
    enc = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "BYTE_STREAM_SPLIT" in enc["blendshapes.list.element.list.element"]
    assert "RLE_DICTIONARY" in enc["clip_id"]
