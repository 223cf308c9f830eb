"""The 135 emotion categories and the MEAD group table (MEAD emotion + level -> labels).

- ``annotate/data/emotions_135.csv``: the 135 categories of Chen et al. 2022 (from Shaver et al.
  1987) with their primary/secondary group and the caption phrases for each label.
- ``annotate/data/mead_groups.csv``: for each of MEAD's 22 groups (neutral level 1 + 7 emotions x
  3 levels) several labels from the 135. **This table is the project's own annotation, not the
  paper's** (the paper's picks were not published); users can pass their own file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from talkclip import InputError, LayoutError

from .au import DATA_DIR, _data_rows

EMOTIONS_PATH = DATA_DIR / "emotions_135.csv"
GROUPS_PATH = DATA_DIR / "mead_groups.csv"
MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
# The 22 (emotion, level) groups: neutral has level 1 only.
MEAD_GROUPS: tuple[tuple[str, int], ...] = tuple(
    (e, lv) for e in MEAD_EMOTIONS for lv in ((1,) if e == "neutral" else (1, 2, 3)))
assert len(MEAD_GROUPS) == 22, "MEAD has 22 emotion/level groups"


@dataclass(frozen=True)
class EmotionCategory:
    label: str
    primary: str                # love, joy, surprise, anger, sadness, fear
    secondary: str              # e.g. irritation, rage, nervousness
    phrases: tuple[str, ...]    # e.g. ("is furious", "is full of fury")


@lru_cache(maxsize=1)
def _categories() -> dict[str, EmotionCategory]:
    cats: dict[str, EmotionCategory] = {}
    for row in _data_rows(EMOTIONS_PATH):
        phrases = tuple(p.strip() for p in row["phrase"].split(";") if p.strip())
        assert phrases, f"emotion {row['label']!r} has no phrase"
        cats[row["label"].strip()] = EmotionCategory(row["label"].strip(), row["primary"].strip(),
                                                     row["secondary"].strip(), phrases)
    assert len(cats) == 135, f"emotions_135.csv must hold 135 distinct labels, found {len(cats)}"
    return cats


def load_emotions() -> list[str]:
    """The 135 emotion labels, in the order of the reference grouping."""
    return list(_categories())


def emotion_category(label: str) -> EmotionCategory:
    cats = _categories()
    if label not in cats:
        raise InputError(f"unknown emotion label {label!r} (not one of the 135 categories)")
    return cats[label]


def emotion_phrases(label: str) -> tuple[str, ...]:
    """Caption phrases for a label, e.g. "fury" -> ("is furious", "is full of fury")."""
    return emotion_category(label).phrases


def load_group_table(path: str | Path | None = None) -> dict[tuple[str, int], list[str]]:
    """(mead_emotion, level) -> labels, for all 22 groups (default: packaged mead_groups.csv).

    Raises LayoutError (one line) when the file lacks a group, names an unknown emotion or level,
    or uses a label outside the 135 categories. An empty label list means "no emotion part".
    """
    path = Path(path) if path else GROUPS_PATH
    known = set(load_emotions())
    table: dict[tuple[str, int], list[str]] = {}
    for k, row in enumerate(_data_rows(path), start=1):
        where = f"{path.name} row {k}"
        try:
            key = (row["emotion"].strip().lower(), int(row["level"]))
            labels = [x.strip() for x in (row["labels"] or "").split(";") if x.strip()]
        except (KeyError, AttributeError, TypeError, ValueError):
            raise LayoutError(f"{where}: expected columns emotion,level,labels") from None
        if key not in MEAD_GROUPS:
            raise LayoutError(f"{where}: {key[0]} level {key[1]} is not one of MEAD's 22 groups")
        bad = [x for x in labels if x not in known]
        if bad:
            raise LayoutError(f"{where}: label(s) {', '.join(bad)} not among the 135 emotion categories")
        table[key] = labels
    missing = [f"{e}/{lv}" for e, lv in MEAD_GROUPS if (e, lv) not in table]
    if missing:
        raise LayoutError(f"{path.name}: missing group(s) {', '.join(missing)}")
    return table


def group_table_sha256(path: str | Path | None = None) -> str:
    """sha256 of the group table file's bytes (recorded with a dataset build)."""
    path = Path(path) if path else GROUPS_PATH
    if not path.is_file():
        raise InputError(f"no such group table: {path}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def group_labels(emotion: str, level: int, path: str | Path | None = None) -> list[str]:
    """Labels of one MEAD group; InputError (one line) for an unknown emotion name or level."""
    emotion = emotion.strip().lower()
    if emotion not in MEAD_EMOTIONS:
        raise InputError(f"unknown emotion {emotion!r}; choose one of {', '.join(MEAD_EMOTIONS)}")
    if (emotion, level) not in MEAD_GROUPS:
        allowed = "1" if emotion == "neutral" else "1, 2 or 3"
        raise InputError(f"emotion {emotion} has no level {level}; use {allowed}")
    return load_group_table(path)[(emotion, level)]
