"""`talkclip-data build --corpus ...` on mini RAVDESS, CREMA-D and folder corpora cut from the
fixture media with each corpus's real naming and containers: tables, labels, levels, captions,
failures, skipped names, splits, the card, resume after SIGKILL, datasets.load_dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pyarrow.parquet as pq
import pytest

from talkclip.annotate.emotions import emotion_phrases
from talkclip.pipelines import shards
from talkclip.pipelines.recipes import get_recipe

from support import (ROOT, assert_one_line_error, cached_corpus_build, cached_mini_corpus, data_cli_command,
                     read_build_tables, run_data_cli, wait_for_first_shard)


def _clips(out) -> dict[str, dict]:
    return {r["clip_id"]: r for r in read_build_tables(out)["clips"].to_pylist()}


def _has_emotion_phrase(caption: str, labels) -> bool:
    return any(p in caption for label in labels for p in emotion_phrases(label))


def _check_common(name: str):
    """What every corpus's build must satisfy; returns (facts, out, summary, clips by id)."""
    facts, out, summary = cached_corpus_build(name)
    clips = _clips(out)
    assert sorted(clips) == sorted(facts["ok"])
    failures = {r["clip_id"]: r for r in read_build_tables(out)["failures"].to_pylist()}
    assert {cid: r["stage"] for cid, r in failures.items()} == facts["failures"]
    for cid, stage in facts["failures"].items():
        if stage == "audio":
            assert "no audio" in failures[cid]["error"]
    assert summary.exit_code == 1 and summary.failed == len(facts["failures"])
    skipped = facts.get("skipped", len(facts.get("bad_names", [])))
    assert summary.skipped_names == skipped and sum("skipped" in w for w in summary.warnings) == skipped
    manifest = json.loads((out / "manifest.json").read_text())
    recipe = get_recipe(name.replace("-csv", ""))
    assert manifest["corpus"] == recipe.name and manifest["source"]["recipe_version"] == recipe.version
    assert manifest["counts"]["skipped_names"] == skipped
    # whole speakers held out; with 2-3 speakers the hold-out shrinks with a warning
    by_split: dict[str, set] = {}
    for r in clips.values():
        by_split.setdefault(r["split"], set()).add(r["speaker"])
    assert not (by_split.get("train", set()) & by_split.get("test", set()))
    assert any("holding out" in w for w in summary.warnings)
    card = (out / "README.md").read_text()
    assert recipe.corpus.title in card and recipe.corpus.licence_name in card
    assert f"`{recipe.name}` recipe, version {recipe.version}" in card
    if recipe.corpus.citation:
        assert recipe.corpus.citation.splitlines()[0] in card
    return facts, out, summary, clips


def test_ravdess_build(fixtures, landmarker):
    facts, out, summary, clips = _check_common("ravdess")
    happy = clips["01-01-03-02-02-01-01"]
    assert (happy["speaker"], happy["gender"], happy["emotion"], happy["intensity"], happy["level"]) == \
        ("Actor_01", "man", "happy", "strong", 3)
    assert happy["sentence"] == "Dogs are sitting by the door" and happy["take"] == "01"
    assert happy["audio_source"] == "video" and abs(happy["audio_duration_s"] - happy["duration_s"]) < 0.1
    assert set(happy["emotion_labels"]) == set(get_recipe("ravdess").label_table()[("happy", "strong")].labels)
    assert all(c.startswith("A man ") for c in happy["captions"])
    assert _has_emotion_phrase(happy["captions"][0], happy["emotion_labels"])
    sad = clips["01-01-04-01-01-01-02"]
    assert (sad["gender"], sad["level"], sad["sentence"]) == ("woman", 2, "Kids are talking by the door")
    assert all(c.startswith("A woman ") for c in sad["captions"])
    neutral = clips["01-01-01-01-01-01-01"]
    assert neutral["emotion_labels"] == [] and neutral["level"] == 1
    assert summary.warnings[0].startswith("Actor_02/01-01-01-02-01-01-02.mp4: not a RAVDESS name")
    # --phonemes aligns each clip's statement (the sentence column), as the recipe gives it
    phones = {r["clip_id"]: r for p in shards.shard_files(out / "phonemes") for r in pq.read_table(p).to_pylist()}
    assert sorted(phones) == sorted(facts["ok"])
    for cid, r in phones.items():
        assert r["method"] == "alignment" and r["sentence"] == clips[cid]["sentence"], (cid, r["method"], r["note"])
    spoken = " ".join(p for p in phones["01-01-01-01-01-01-01"]["phones"] if p != "SIL")
    assert spoken.startswith("K IH D Z"), spoken           # "Kids are talking by the door"
    assert " ".join(p for p in phones["01-01-03-02-02-01-01"]["phones"] if p != "SIL").startswith("D AA G Z")


def test_crema_d_build(fixtures, landmarker):
    facts, out, summary, clips = _check_common("crema-d")
    anger = clips["1001_DFA_ANG_XX"]
    assert (anger["emotion"], anger["intensity"], anger["level"], anger["sentence"]) == \
        ("anger", "unspecified", 0, "Don't forget a jacket")
    assert anger["audio_source"] == "wav" and anger["audio_path"] == "AudioWAV/1001_DFA_ANG_XX.wav"
    assert anger["video_path"] == "VideoFlash/1001_DFA_ANG_XX.flv"
    assert all(c.startswith("A man ") for c in anger["captions"])
    assert clips["1001_IEO_HAP_HI"]["level"] == 3 and clips["1002_TIE_SAD_LO"]["level"] == 1
    assert all(c.startswith("A person ") for c in clips["1002_TIE_SAD_LO"]["captions"])   # not in demographics
    assert "It's eleven o'clock" == clips["1001_IEO_HAP_HI"]["sentence"]


def test_folder_builds_with_and_without_labels(fixtures, landmarker):
    _, _, _, labelled = _check_common("folder-csv")
    a1 = labelled["spkA__a1"]
    assert (a1["emotion"], a1["intensity"], a1["level"]) == ("happy", "high", 3) and a1["emotion_labels"]
    a2 = labelled["spkA__a2"]
    assert (a2["speaker"], a2["emotion"], a2["level"], a2["emotion_labels"]) == ("anna", "", 0, [])
    b1 = labelled["spkB__b1"]
    assert (b1["level"], b1["audio_source"], b1["audio_path"]) == (0, "wav", "spkB/b1.wav")
    _, _, _, plain = _check_common("folder")
    for r in plain.values():
        assert r["emotion_labels"] == [] and r["level"] == 0
        # AU-only captions, as `caption` without --emotion: never an emotion phrase
        assert all(" speaks with " in c and c.startswith("A person ") for c in r["captions"]), r["captions"]


def test_each_build_loads_with_datasets(fixtures, landmarker, tmp_path):
    import datasets

    for name in ("ravdess", "crema-d", "folder-csv", "folder"):
        facts, out, _ = cached_corpus_build(name)
        d = datasets.load_dataset(str(out), cache_dir=str(tmp_path / name))
        assert sum(d[s].num_rows for s in d) == len(facts["ok"]), name
        assert "sentence" in d["train"].column_names and "intensity" in d["train"].column_names


def test_killed_build_resumes_to_the_same_tables(fixtures, landmarker, tmp_path):
    facts, straight, _ = cached_corpus_build("crema-d")
    out = tmp_path / "killed"
    args = ["build", "--corpus", "crema-d", "--root", str(facts["root"]), "--out", str(out), "--shard-size", "1"]
    proc = subprocess.Popen([*data_cli_command(), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    stage1 = wait_for_first_shard(proc, out, 120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ok_before = sum(shards.read_column(stage1, "ok"))
    assert 0 < len(shards.read_column(stage1, "clip_id")) < 6 and not (out / "manifest.json").exists()
    rerun = run_data_cli(*args)
    assert rerun.returncode == 1, rerun.stderr          # 1: some clips failed (recorded)
    assert "1002_ABC_HAP_XX.flv" in rerun.stderr and "not a CREMA-D name" in rerun.stderr
    # the rerun tracks what was not built, failed clips included (they are retried)
    assert json.loads((out / "manifest.json").read_text())["timing"]["last_run_clips"] == 6 - ok_before
    a, b = read_build_tables(straight), read_build_tables(out)
    for name in ("clips", "frames", "audio", "failures"):
        assert a[name].equals(b[name]), f"{name} differs after kill + resume"


def test_cli_list_and_bad_input(fixtures, tmp_path):
    listed = run_data_cli("build", "--list")
    assert listed.returncode == 0, listed.stderr
    for name in ("mead", "ravdess", "crema-d", "folder"):
        assert name in listed.stdout
    root = cached_mini_corpus("crema-d")["root"]
    line = assert_one_line_error(run_data_cli("build", "--corpus", "voxceleb", "--root", root, "--out", tmp_path / "o"))
    assert "unknown corpus 'voxceleb'" in line
    line = assert_one_line_error(run_data_cli("build", "--corpus", "crema-d", "--root", root, "--out",
                                              tmp_path / "o", "--include-song"))
    assert "--include-song does not apply to the crema-d recipe" in line
    groups = tmp_path / "groups.csv"
    groups.write_text("emotion,intensity,level,labels\nhappy,high,3,joy\n")
    line = assert_one_line_error(run_data_cli("build", "--corpus", "crema-d", "--root", root, "--out",
                                              tmp_path / "o", "--groups", groups))
    assert "missing group(s)" in line
    assert not (tmp_path / "o").exists()


def test_rerun_with_another_label_table_relabels_without_tracking(fixtures, landmarker, tmp_path):
    import shutil

    from talkclip.pipelines.build_ta_mead import BuildOptions, build
    from talkclip.pipelines.recipes import RecipeSource

    facts, straight, _ = cached_corpus_build("crema-d")
    out = tmp_path / "copy"
    shutil.copytree(straight, out)
    recipe = get_recipe("crema-d")
    groups = tmp_path / "mine.csv"
    groups.write_text(recipe.labels.read_text().replace("anger,unspecified,0,anger;irritation;frustration;annoyance",
                                                        "anger,unspecified,2,fury"))
    summary = build(RecipeSource(recipe, facts["root"]), out, BuildOptions(groups=groups, retry_failed=False))
    assert summary.processed == 0
    before, after = _clips(straight), _clips(out)
    assert (after["1001_DFA_ANG_XX"]["level"], after["1001_DFA_ANG_XX"]["emotion_labels"]) == (2, ["fury"])
    assert before["1001_DFA_ANG_XX"]["level"] == 0
    assert after["1001_IEO_HAP_HI"] == before["1001_IEO_HAP_HI"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["groups"] == "mine.csv" and "mine.csv" in (out / "README.md").read_text()
