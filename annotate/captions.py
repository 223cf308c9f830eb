"""Caption rendering: ``<SUB> <EMOTION> and speaks with <AU>`` (TalkCLIP, Sec. 3.1).

Examples::

    A woman is astonished and speaks with inner brows extremely lifted and jaw slightly dropped.
    A man speaks with lip corners pulled, cheeks raised and lips slightly parted.   (AU part only)
    A man is furious while speaking.                                                (emotion only)
    A person speaks with a neutral face.                                            (nothing active)

Variants are drawn with ``random.Random(str(seed))`` (string seeds hash the same way in every
process), so the same inputs and seed always give the same captions.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

import numpy as np

from talkclip.schemas import AU_IDS, NUM_AUS

from .au import AUTable, order_active
from .emotions import emotion_phrases

NEUTRAL_FACES = ("a neutral face", "a relaxed face", "a calm face")
# Words that start with a vowel letter but a consonant sound, and the reverse.
_A_BEFORE = ("one", "once", "uni", "use", "usu", "eu", "ewe", "uro")
_AN_BEFORE = ("hour", "honest", "honor", "honour", "heir")


def article(phrase: str) -> str:
    """Indefinite article for ``phrase``: "a man", "an elderly woman", "a young person"."""
    word = phrase.strip().lower()
    if not word:
        return "a"
    if word.startswith(_AN_BEFORE):
        return "an"
    if word.startswith(_A_BEFORE):
        return "a"
    return "an" if word[0] in "aeiou" else "a"


def join_list(items: Sequence[str]) -> str:
    """English list: "x", "x and y", "x, y and z"."""
    items = list(items)
    assert items, "join_list needs at least one item"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def subject_for_speaker(speaker: str) -> str:
    """MEAD speaker id -> subject word: "M003" -> "man", "W009" -> "woman", else "person"."""
    m = re.fullmatch(r"\s*([MmWw])\d+\s*", speaker or "")
    if not m:
        return "person"
    return "man" if m.group(1).lower() == "m" else "woman"


def au_phrase(au_levels: np.ndarray, au_table: AUTable, rng: random.Random | None = None) -> str | None:
    """The <AU> part, e.g. "inner brows extremely raised and lips parted"; None if no AU is active.

    Active AUs (level >= 1) are listed in face order, upper face first (brows, lids, cheeks,
    nose, then mouth and jaw). ``rng`` picks one of each AU's two verbs.
    """
    levels = np.asarray(au_levels)
    assert levels.shape == (NUM_AUS,), f"au_levels must be (12,), got {levels.shape}"
    active = order_active(levels)
    if not active:
        return None
    return join_list([au_table.phrase(au, int(levels[AU_IDS.index(au)]), rng) for au in active])


def _sentence(subject: str, emotion: str | None, aus: str | None, rng: random.Random) -> str:
    head = f"{article(subject).capitalize()} {subject}"
    if emotion and aus:
        return f"{head} {emotion} and speaks with {aus}."
    if aus:
        return f"{head} speaks with {aus}."
    if emotion:
        return f"{head} {emotion} while speaking."
    return f"{head} speaks with {rng.choice(NEUTRAL_FACES)}."


def count_variants(*, au_levels: np.ndarray, au_table: AUTable, emotion_labels: Sequence[str] | None = None,
                   drop_parts: bool = True) -> int:
    """How many distinct captions :func:`render_captions` can give for these inputs (the subject
    is fixed): A distinct AU phrases (a verb choice per active AU), E distinct emotion phrases,
    and the kinds of sentence ("full", AU part only, emotion part only) in use."""
    labels = [x for x in (emotion_labels or []) if x]
    levels = np.asarray(au_levels)
    active = order_active(levels)
    au_count = 1
    for au in active:
        au_count *= len(set(au_table.verbs[AU_IDS.index(au)]))
    emo_count = len({p for label in labels for p in emotion_phrases(label)})
    if labels and active:
        return emo_count * au_count + ((au_count + emo_count) if drop_parts else 0)
    if labels:
        return emo_count
    if active:
        return au_count
    return len(NEUTRAL_FACES)


def render_captions(*, subject: str, au_levels: np.ndarray, au_table: AUTable,
                    emotion_labels: Sequence[str] | None = None, n: int = 5, seed: int | str = 0,
                    drop_parts: bool = True) -> list[str]:
    """``n`` caption variants for one clip, deterministic for (inputs, seed).

    Each variant picks one of ``emotion_labels`` (labels from the 135 categories) and one of its
    phrases, and one verb per active AU. With ``drop_parts`` and both parts available, variant 1
    is complete, variant 2 drops the emotion part, variant 3 drops the AU part and later variants
    pick at random (complete twice as often), as in the paper's training. Without emotion labels
    every caption has the AU part only; without active AUs, the emotion part only (or, with no
    emotion either, "speaks with a neutral face"). Repeats are avoided where the options allow.
    """
    assert n >= 1, f"n must be >= 1, got {n}"
    subject = subject.strip()
    assert subject, "subject must not be empty"
    labels = [x for x in (emotion_labels or []) if x]
    for label in labels:
        emotion_phrases(label)  # raises InputError for a label outside the 135
    rng = random.Random(f"{seed}")
    has_aus = bool((np.asarray(au_levels) >= 1).any())
    both = bool(labels) and has_aus

    def kind_for(i: int) -> str:
        if not (both and drop_parts):
            return "full"
        if i < 3:
            return ("full", "au", "emotion")[i]
        return rng.choice(("full", "full", "au", "emotion"))

    out: list[str] = []
    for i in range(n):
        kind = kind_for(i)
        text = ""
        for _ in range(20):  # retry a few draws to avoid repeating an earlier variant
            emotion = rng.choice(emotion_phrases(rng.choice(labels))) if labels and kind != "au" else None
            aus = au_phrase(au_levels, au_table, rng) if kind != "emotion" else None
            text = _sentence(subject, emotion, aus, rng)
            if text not in out:
                break
        if text in out:   # the random draws found nothing new: take an unused variant in seeded order
            text = next((t for t in _all_variants(subject, labels, au_levels, au_table, both and drop_parts, rng)
                         if t not in out), text)
        out.append(text)
    return out


def _all_variants(subject: str, labels: list[str], au_levels: np.ndarray, au_table: AUTable,
                  drop_parts: bool, rng: random.Random) -> list[str]:
    """Every distinct caption for these inputs (see :func:`count_variants`), in a seeded order."""
    import itertools

    levels = np.asarray(au_levels)
    active = order_active(levels)
    verb_choices = [range(len(set(au_table.verbs[AU_IDS.index(au)]))) for au in active]
    aus = [join_list([au_table.phrase(au, int(levels[AU_IDS.index(au)]), verb=v) for au, v in zip(active, pick)])
           for pick in itertools.product(*verb_choices)] if active else []
    emotions = sorted({p for label in labels for p in emotion_phrases(label)})
    head = f"{article(subject).capitalize()} {subject}"
    texts = [f"{head} {e} and speaks with {a}." for e in emotions for a in aus]
    if drop_parts or not (emotions and aus):
        texts += [f"{head} speaks with {a}." for a in aus] + [f"{head} {e} while speaking." for e in emotions]
    if not (emotions or aus):
        texts = [f"{head} speaks with {face}." for face in NEUTRAL_FACES]
    rng.shuffle(texts)
    return texts
