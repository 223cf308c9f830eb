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
from typing import Sequence

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


@dataclass(frozen=True)
class LabelRow:
    level: int                  # TA-MEAD level: 1..3, 0 = unspecified / none
    labels: tuple[str, ...]     # labels from the 135 categories; empty = no emotion part


def load_label_table(path: str | Path, groups: Sequence[tuple[str, str]] | None = None, *,
                     corpus: str = "the corpus") -> dict[tuple[str, str], LabelRow]:
    """A corpus's label table: (emotion, intensity) -> :class:`LabelRow` (level + labels).

    Columns ``emotion, intensity, level, labels`` (``labels`` ";"-separated). A file without an
    ``intensity`` column (MEAD's ``mead_groups.csv``) uses the level as the intensity. Emotion and
    intensity are compared lower-case; an empty intensity means "none given". ``groups``: the
    (emotion, intensity) keys the table must cover, and the only ones it may hold (None = any).
    Raises LayoutError (one line) for a bad row, a label outside the 135 categories, a key
    outside ``groups`` or a missing one.
    """
    path = Path(path)
    known = set(load_emotions())
    expected = None if groups is None else {(e.lower(), str(i).lower()) for e, i in groups}
    table: dict[tuple[str, str], LabelRow] = {}
    for k, row in enumerate(_data_rows(path), start=1):
        where = f"{path.name} row {k}"
        try:
            level = int(row["level"])
            intensity = row["intensity"] if "intensity" in row else str(level)
            key = ((row["emotion"] or "").strip().lower(), (intensity or "").strip().lower())
            labels = tuple(x.strip() for x in (row["labels"] or "").split(";") if x.strip())
        except (KeyError, AttributeError, TypeError, ValueError):
            raise LayoutError(f"{where}: expected columns emotion,intensity,level,labels") from None
        if not 0 <= level <= 3:
            raise LayoutError(f"{where}: level must be 0-3, got {level}")
        if expected is not None and key not in expected:
            raise LayoutError(f"{where}: {key[0]} intensity {key[1] or '(none)'} is not one of "
                              f"{corpus}'s {len(expected)} groups")
        bad = [x for x in labels if x not in known]
        if bad:
            raise LayoutError(f"{where}: label(s) {', '.join(bad)} not among the 135 emotion categories")
        table[key] = LabelRow(level, labels)
    missing = sorted(f"{e}/{i}" for e, i in (expected or ()) if (e, i) not in table)
    if missing:
        raise LayoutError(f"{path.name}: missing group(s) {', '.join(missing)}")
    return table


def load_group_table(path: str | Path | None = None) -> dict[tuple[str, int], list[str]]:
    """(mead_emotion, level) -> labels, for all 22 groups (default: packaged mead_groups.csv).

    Raises LayoutError (one line) when the file lacks a group, names an unknown emotion or level,
    or uses a label outside the 135 categories. An empty label list means "no emotion part".
    """
    rows = load_label_table(Path(path) if path else GROUPS_PATH, [(e, str(lv)) for e, lv in MEAD_GROUPS],
                            corpus="MEAD")
    return {(e, int(i)): list(r.labels) for (e, i), r in rows.items()}


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
