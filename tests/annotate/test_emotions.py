"""The 135 emotion categories and the MEAD group table."""

from __future__ import annotations

import hashlib

import pytest

from talkclip import InputError, LayoutError
from talkclip.annotate.emotions import (GROUPS_PATH, MEAD_EMOTIONS, emotion_category, emotion_phrases,
                                        group_labels, group_table_sha256, load_emotions, load_group_table)


def test_135_distinct_categories_in_six_primary_groups():
    labels = load_emotions()
    assert len(labels) == 135 and len(set(labels)) == 135
    assert {emotion_category(x).primary for x in labels} == {"love", "joy", "surprise", "anger", "sadness", "fear"}
    assert emotion_category("fury").secondary == "rage"
    assert emotion_category("anxiety").primary == "fear"


def test_every_label_has_a_grammatical_phrase():
    for label in load_emotions():
        for p in emotion_phrases(label):
            assert p.split()[0] in ("is", "feels", "shows"), (label, p)
            assert p == p.strip() and "  " not in p and not p.endswith("."), (label, p)


def test_22_groups_all_labels_among_the_135():
    table = load_group_table()
    assert len(table) == 22
    assert {e for e, _ in table} == set(MEAD_EMOTIONS)
    known = set(load_emotions())
    for (emotion, level), labels in table.items():
        assert all(x in known for x in labels), (emotion, level, labels)
        if emotion != "neutral":
            assert len(labels) >= 2, (emotion, level)
    assert "rage" in table[("angry", 3)] and "annoyance" in table[("angry", 1)]
    assert "own annotation" in GROUPS_PATH.read_text().lower()


def test_user_group_table(tmp_path):
    text = GROUPS_PATH.read_text()
    p = tmp_path / "groups.csv"
    p.write_text(text.replace("angry,3,rage;fury;outrage;wrath;ferocity", "angry,3,fury"))
    assert group_labels("angry", 3, p) == ["fury"]
    assert group_table_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest() != group_table_sha256()
    bad = tmp_path / "bad.csv"
    bad.write_text(text.replace("angry,3,rage;", "angry,3,grumpy-ish;"))
    with pytest.raises(LayoutError, match="grumpy-ish"):
        load_group_table(bad)
    short = tmp_path / "short.csv"
    short.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("sad,2")) + "\n")
    with pytest.raises(LayoutError, match="sad/2"):
        load_group_table(short)


def test_unknown_emotion_and_level():
    with pytest.raises(InputError, match="unknown emotion"):
        group_labels("furious", 1)
    with pytest.raises(InputError, match="no level 2"):
        group_labels("neutral", 2)
    with pytest.raises(InputError, match="unknown emotion label 'grumpy-ish'"):
        emotion_phrases("grumpy-ish")
