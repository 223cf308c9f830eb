"""Corpus recipes: what each lists from a mini corpus with the real naming (no tracking here;
the builds are in test_build_corpora.py), the label tables, and the recipe registry."""

from __future__ import annotations

import pytest

from talkclip import InputError, LayoutError
from talkclip.annotate.emotions import load_emotions, load_label_table
from talkclip.pipelines.recipes import Selection, get_recipe, recipes

from support import cached_mini_corpus


def test_registry_lists_the_four_recipes_each_with_its_label_table():
    assert list(recipes()) == ["crema-d", "folder", "mead", "ravdess"]
    known = set(load_emotions())
    for name, recipe in recipes().items():
        assert recipe.labels.parent.name == "data" and recipe.labels.is_file()
        assert "own annotation" in recipe.labels.read_text().lower(), name
        table = recipe.label_table()
        assert all(set(row.labels) <= known and 0 <= row.level <= 3 for row in table.values())
        if recipe.groups is not None:
            assert set(table) == set(recipe.groups)
    with pytest.raises(InputError, match="unknown corpus 'voxceleb'.*ravdess"):
        get_recipe("voxceleb")


def test_ravdess_names_twins_song_and_bad_names(fixtures):
    facts = cached_mini_corpus("ravdess")
    recipe = get_recipe("ravdess")
    listing = recipe.list(facts["root"])
    ids = [c.clip_id for c in listing.clips]
    # speech full-AV + the video-only file without twin; the twin of 01-01-03-02-02-01-01 is dropped
    assert ids == sorted(facts["ok"] + list(facts["failures"]))
    assert "02-01-03-02-02-01-01" not in ids and facts["song"] not in ids
    assert len(listing.skipped) == 1 and "01-01-01-02-01-01-02.mp4" in listing.skipped[0]
    assert "neutral has no strong" in listing.skipped[0]
    by_id = {c.clip_id: c for c in listing.clips}
    happy = by_id["01-01-03-02-02-01-01"]
    assert (happy.speaker, happy.gender, happy.emotion, happy.intensity, happy.take) == \
        ("Actor_01", "man", "happy", "strong", "01")
    assert happy.sentence == "Dogs are sitting by the door" and happy.audio is None
    sad = by_id["01-01-04-01-01-01-02"]
    assert (sad.speaker, sad.gender, sad.sentence) == ("Actor_02", "woman", "Kids are talking by the door")
    with_song = recipe.list(facts["root"], Selection(include_song=True))
    assert facts["song"] in [c.clip_id for c in with_song.clips]
    table = recipe.label_table()
    assert table[("happy", "strong")].level == 3 and "elation" in table[("happy", "strong")].labels
    assert table[("neutral", "normal")].labels == ()


def test_crema_d_sentences_levels_and_demographics(fixtures):
    facts = cached_mini_corpus("crema-d")
    recipe = get_recipe("crema-d")
    listing = recipe.list(facts["root"])
    by_id = {c.clip_id: c for c in listing.clips}
    assert sorted(by_id) == sorted(facts["ok"] + list(facts["failures"]))
    assert listing.skipped == ["VideoFlash/1002_ABC_HAP_XX.flv: not a CREMA-D name (sentence ABC); skipped"]
    c = by_id["1001_DFA_ANG_XX"]
    assert (c.speaker, c.gender, c.emotion, c.intensity, c.sentence) == \
        ("1001", "man", "anger", "unspecified", "Don't forget a jacket")
    assert c.video.path.endswith(".flv") and c.audio.path.endswith("AudioWAV/1001_DFA_ANG_XX.wav")
    assert c.audio_kind == "wav"
    assert by_id["1002_TIE_SAD_LO"].gender == "person"         # 1002 is not in VideoDemographics.csv
    assert by_id["1002_IWW_FEA_MD"].audio is None
    table = recipe.label_table()
    assert table[("anger", "unspecified")].level == 0 and table[("anger", "high")].level == 3
    assert recipe.list(facts["root"], Selection(speakers=("1002",), limit=1)).clips[0].clip_id == "1002_IWW_FEA_MD"
    with pytest.raises(InputError, match=r"unknown emotion\(s\) surprise"):
        recipe.list(facts["root"], Selection(emotions=("surprise",)))
    with pytest.raises(InputError, match="--views does not apply to the crema-d recipe"):
        recipe.list(facts["root"], Selection(views=("left_30",)))


def test_folder_with_and_without_csv(fixtures):
    recipe = get_recipe("folder")
    with_csv = recipe.list(cached_mini_corpus("folder-csv")["root"])
    by_id = {c.clip_id: c for c in with_csv.clips}
    assert sorted(by_id) == ["spkA__a1", "spkA__a2", "spkB__b1", "spkB__b2", "spkB__b3"]
    assert (by_id["spkA__a1"].speaker, by_id["spkA__a1"].emotion, by_id["spkA__a1"].intensity) == ("spkA", "happy", "high")
    assert (by_id["spkA__a2"].speaker, by_id["spkA__a2"].emotion) == ("anna", "")
    assert by_id["spkB__b1"].audio.path.endswith("spkB/b1.wav") and by_id["spkB__b1"].audio_kind == "wav"
    assert len(with_csv.skipped) == 2 and "missing.mp4" in with_csv.skipped[0] and "loose.mp4" in with_csv.skipped[1]
    plain = recipe.list(cached_mini_corpus("folder")["root"])
    assert {c.speaker for c in plain.clips} == {"spkA", "spkB"}
    assert all(c.emotion == "" and c.gender == "person" for c in plain.clips)
    assert plain.skipped == ["loose.mp4: not in a speaker folder (<root>/<speaker>/...); skipped"]


def test_layout_errors_and_bad_tables(tmp_path):
    (tmp_path / "empty").mkdir()
    for name, match in (("ravdess", "no Actor_NN folder"), ("crema-d", "no VideoFlash folder"),
                        ("folder", "holds no video"), ("mead", "no speaker folder")):
        with pytest.raises(LayoutError, match=match):
            get_recipe(name).list(tmp_path / "empty")
    with pytest.raises(InputError, match="no such folder"):
        get_recipe("ravdess").list(tmp_path / "nope")
    table = get_recipe("ravdess").labels.read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text(table.replace("happy,strong,3,elation;", "happy,strong,3,elatedness;"))
    with pytest.raises(LayoutError, match="elatedness"):
        get_recipe("ravdess").label_table(bad)
    short = tmp_path / "short.csv"
    short.write_text("\n".join(ln for ln in table.splitlines() if not ln.startswith("sad,strong")) + "\n")
    with pytest.raises(LayoutError, match="missing group.*sad/strong"):
        get_recipe("ravdess").label_table(short)
    extra = tmp_path / "extra.csv"
    extra.write_text(table + "neutral,strong,1,\n")
    with pytest.raises(LayoutError, match="not one of ravdess's 15 groups"):
        load_label_table(extra, get_recipe("ravdess").groups, corpus="ravdess")


def test_mead_recipe_lists_what_walk_mead_lists(fixtures):
    from talkclip.pipelines.mead import walk_mead

    from support import cached_mini_mead

    root = cached_mini_mead()["root"]
    clips = get_recipe("mead").list(root, Selection(views=None)).clips
    assert [c.clip_id for c in clips] == [c.clip_id for c in walk_mead(root, views=None)]
    spk = {c.clip_id: c for c in clips}["M001_front_happy_level_2_001"]
    assert (spk.gender, spk.emotion, spk.intensity, spk.level, spk.view, spk.take) == ("man", "happy", "2", 2, "front", "001")
    assert get_recipe("mead").label_table()[("happy", "2")].level == 2


def test_folder_emotion_outside_the_label_table_is_refused_before_tracking(fixtures, tmp_path):
    import shutil

    from talkclip.pipelines.recipes import RecipeSource

    root = tmp_path / "corpus"
    shutil.copytree(cached_mini_corpus("folder-csv")["root"], root)
    (root / "labels.csv").write_text("path,speaker,emotion,intensity\nspkA/a1.mp4,,joyful,\nspkA/a2.mp4,,happy,extreme\n")
    source = RecipeSource(get_recipe("folder"), root)
    assert len(source.list_clips()) == 2 and source.skipped_names == 4    # 4 videos not in the CSV
    with pytest.raises(InputError, match=r"folder_groups.csv has no row for happy/extreme, joyful/\(no intensity\)"):
        source.label_table()
    mine = tmp_path / "mine.csv"
    mine.write_text("emotion,intensity,level,labels\njoyful,,2,joy;delight\nhappy,extreme,3,ecstasy\n")
    assert source.label_table(mine)[("joyful", "")].labels == ("joy", "delight")
