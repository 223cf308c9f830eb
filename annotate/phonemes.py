"""Phoneme labels for speech, offline: phone recognition, or forced alignment to a known sentence.

The paper's audio encoder reads phoneme labels (as StyleTalk's does). This module turns audio
into per-video-frame phone ids with pocketsphinx (PyPI ``pocketsphinx``), whose wheel ships the
en-us acoustic model, a phone language model and the CMU dictionary, so nothing is downloaded.

Two ways to get the phones:

- **recognition** (no text): pocketsphinx's all-phone search with its phone n-gram model. On
  clean speech about 60% of the 10 ms frames carry the phone a forced alignment would give
  (measured on the fixtures' synthetic espeak speech); treat the output as a rough
  articulation signal, not a transcript. Stretches of at least :data:`GATE_MIN_S` whose level
  stays below :data:`GATE_DBFS` (or 40 dB under the clip's loud frames) are silence whatever
  the recogniser says: it labels digital silence as a fricative otherwise.
- **alignment** (the spoken sentence is known): the words are looked up in the CMU dictionary
  and their phones are aligned to the audio (pocketsphinx needs two passes: one to find the
  word boundaries, one to align phones). Words the dictionary lacks (*out of vocabulary*) get
  a pronunciation from :func:`spell_out`, a small letter-to-sound rule set of this project
  (approximate: English spelling is irregular), added to the decoder's dictionary for that
  sentence; :attr:`PhonemeResult.oov` lists them. If the alignment fails altogether (audio
  that does not fit the sentence at all), the phones are recognised instead and
  :attr:`PhonemeResult.method` says ``"recognition"`` with a ``note`` saying why.

Phones come from one fixed table, ``annotate/data/phones.csv`` (id 0 = silence, the 39 CMU
phones, two noise units; 42 rows = the model config's ``model.n_phonemes``). Frame ids use the
same grid as the log-mel features of ``model/audio.py``: row ``t`` covers ``[t/fps, (t+1)/fps)``
and gets the phone that occupies most of that interval.
"""

from __future__ import annotations

import csv
import math
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from talkclip import InputError, MissingAssetError

DATA_DIR = Path(__file__).resolve().parent / "data"
PHONES_PATH = DATA_DIR / "phones.csv"
SAMPLE_RATE = 16_000        # the en-us acoustic model's rate; audio is resampled to it
STEP_S = 0.01               # pocketsphinx frame step (10 ms)
SILENCE = "SIL"
SILENCE_ID = 0
GATE_DBFS = -60.0           # absolute silence level (RMS of a 10 ms frame)
GATE_REL_DB = 40.0          # ... or this far below the clip's loud frames (99th percentile)
GATE_MIN_S = 0.10           # shortest stretch the silence gate overrides
METHODS = ("recognition", "alignment")
# all-phone search settings (language weight and beams), chosen on the fixtures' speech
RECOGNITION_OPTIONS = {"lw": 2.0, "beam": 1e-10, "pbeam": 1e-10}
# forced alignment searches one sentence, so its beams can be wide (the defaults lose the
# sentence on a third of the fixtures' accented espeak voices)
ALIGNMENT_OPTIONS = {"beam": 1e-100, "pbeam": 1e-100, "wbeam": 1e-80, "lpbeam": 1e-80}


# ---- the phone table ---------------------------------------------------------------------

@dataclass(frozen=True)
class Phone:
    id: int
    symbol: str     # CMU / pocketsphinx symbol ("SIL", "AA", ..., "+NSN+")
    viseme: str     # mouth-shape class (15 classes, "sil" for silence and noise)
    example: str


@lru_cache(maxsize=1)
def phone_table() -> tuple[Phone, ...]:
    """The rows of ``annotate/data/phones.csv``, ids 0..n-1 in order."""
    with open(PHONES_PATH, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    table = tuple(Phone(int(r["id"]), r["phone"].strip(), r["viseme"].strip(), r["example"].strip()) for r in rows)
    if [p.id for p in table] != list(range(len(table))) or table[SILENCE_ID].symbol != SILENCE:
        raise ValueError(f"{PHONES_PATH}: ids must run 0..n-1 with {SILENCE} as id 0")
    return table


def n_phonemes() -> int:
    """Number of phone ids (the model config's ``model.n_phonemes``)."""
    return len(phone_table())


@lru_cache(maxsize=1)
def _ids() -> dict[str, int]:
    return {p.symbol: p.id for p in phone_table()}


def phone_id(symbol: str) -> int:
    """Id of a phone symbol; stress digits (``AH0``) are ignored."""
    s = re.sub(r"\d", "", symbol.strip().upper())
    try:
        return _ids()[s]
    except KeyError:
        raise InputError(f"unknown phone {symbol!r} (not in {PHONES_PATH.name})") from None


def visemes(ids: np.ndarray) -> list[str]:
    """Viseme class of each phone id."""
    table = phone_table()
    return [table[int(i)].viseme for i in np.asarray(ids).reshape(-1)]


# ---- results -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    phone: str      # a symbol of the phone table
    start: float    # seconds
    end: float      # seconds, > start


@dataclass(frozen=True)
class PhonemeResult:
    """Phone segments covering ``[0, duration)`` in order, without gaps or overlaps."""

    segments: tuple[Segment, ...]
    method: str                     # "recognition" | "alignment"
    duration: float                 # seconds of audio
    text: str | None = None         # the sentence aligned to (alignment only)
    oov: tuple[str, ...] = ()       # words spelled out by rule (alignment only)
    note: str | None = None         # why recognition replaced an asked-for alignment
    words: tuple[tuple[str, float, float], ...] = field(default=())  # (word, start, end), alignment

    def ids(self, fps: float, n_frames: int | None = None) -> np.ndarray:
        """(T,) int64 phone ids on the video frame grid (see :func:`frame_ids`)."""
        return frame_ids(self.segments, fps, n_frames, self.duration)

    def to_dict(self, fps: float | None = None) -> dict:
        d = {"method": self.method, "duration_s": round(self.duration, 4), "text": self.text,
             "oov": list(self.oov), "note": self.note,
             "segments": [{"phone": s.phone, "start": round(s.start, 3), "end": round(s.end, 3)}
                          for s in self.segments]}
        if self.words:
            d["words"] = [{"word": w, "start": round(a, 3), "end": round(b, 3)} for w, a, b in self.words]
        if fps is not None:
            d["fps"] = fps
            d["frame_ids"] = self.ids(fps).tolist()
        return d


def frame_ids(segments, fps: float, n_frames: int | None = None, duration: float | None = None) -> np.ndarray:
    """Phone ids on the video frame grid: row ``t`` covers ``[t/fps, (t+1)/fps)`` and gets the
    phone with the largest share of that interval (silence where no segment reaches).

    ``n_frames`` None = as many whole frames as ``duration`` covers (the rule of
    ``model.audio.n_video_frames``, so the rows match the log-mel rows). Returns (T,) int64.
    """
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise InputError(f"bad video frame rate {fps}")
    if n_frames is None:
        end = duration if duration is not None else (segments[-1].end if segments else 0.0)
        n_frames = int(math.floor(end * fps + 1e-6))
    T = int(n_frames)
    share = np.zeros((max(T, 0), n_phonemes()), dtype=np.float64)    # (T, n_phonemes) seconds
    for s in segments:
        pid = phone_id(s.phone)
        first, last = int(math.floor(s.start * fps)), int(math.ceil(s.end * fps))
        for t in range(max(first, 0), min(last, T)):
            share[t, pid] += max(0.0, min(s.end, (t + 1) / fps) - max(s.start, t / fps))
    ids = share.argmax(axis=1)
    ids[share.max(axis=1) <= 0] = SILENCE_ID
    return ids.astype(np.int64)


# ---- text -> dictionary phones -----------------------------------------------------------

_DIGITS = "zero one two three four five six seven eight nine".split()


def normalize_text(text: str) -> list[str]:
    """Lower-case words of a sentence: punctuation dropped (apostrophes kept inside words),
    digits read one by one ("42" -> "four two")."""
    text = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", str(text).lower())
    words = re.sub(r"[^a-z']+", " ", text).split()
    return [w.strip("'") for w in words if w.strip("'")]


@lru_cache(maxsize=1)
def _dictionary() -> dict[str, list[tuple[str, ...]]]:
    """The CMU dictionary shipped with pocketsphinx: word -> its pronunciations, in file order."""
    path = Path(_model_path()) / "en-us" / "cmudict-en-us.dict"
    out: dict[str, list[tuple[str, ...]]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            word = re.sub(r"\(\d+\)$", "", parts[0])
            phones = tuple(p for p in parts[1:] if not p.startswith("#"))
            out.setdefault(word, []).append(phones)
    return out


def pronunciations(word: str) -> list[tuple[str, ...]]:
    """Every pronunciation the CMU dictionary gives ``word`` ([] when out of vocabulary)."""
    return list(_dictionary().get(word.lower(), []))


# letter-to-sound rules for out-of-vocabulary words: longest grapheme first
_RULES = sorted({
    "tch": "CH", "sch": "S K", "igh": "AY", "ough": "AO", "tion": "SH AH N", "sion": "ZH AH N",
    "ch": "CH", "sh": "SH", "th": "TH", "ph": "F", "wh": "W", "ck": "K", "ng": "NG", "qu": "K W",
    "gh": "G", "kn": "N", "wr": "R", "ee": "IY", "ea": "IY", "ie": "IY", "oo": "UW", "ou": "AW",
    "ow": "OW", "oa": "OW", "ai": "EY", "ay": "EY", "ei": "EY", "ey": "EY", "oi": "OY", "oy": "OY",
    "au": "AO", "aw": "AO", "ew": "UW", "ue": "UW", "er": "ER", "ir": "ER", "ur": "ER", "ar": "AA R",
    "or": "AO R", "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH",
    "i": "IH", "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K",
    "r": "R", "s": "S", "t": "T", "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "IY", "z": "Z",
}.items(), key=lambda kv: -len(kv[0]))


def spell_out(word: str) -> tuple[str, ...]:
    """An approximate pronunciation of a word from its spelling (this project's own rules):
    doubled letters count once, a final silent ``e`` is dropped, ``c`` before e/i/y is S,
    ``y`` is Y at the start of a word, ``x`` at the start is Z."""
    w = re.sub(r"[^a-z]", "", word.lower())
    w = re.sub(r"([bcdfgklmnprstvz])\1", r"\1", w)
    if len(w) > 2 and w.endswith("e") and not w.endswith(("ee", "ie", "ue")):
        w = w[:-1]
    phones: list[str] = []
    i = 0
    while i < len(w):
        if w[i] == "c" and i + 1 < len(w) and w[i + 1] in "eiy":
            phones.append("S"); i += 1; continue
        if w[i] in "yx" and i == 0:
            phones.append("Y" if w[i] == "y" else "Z"); i += 1; continue
        g, ph = next((g, ph) for g, ph in _RULES if w.startswith(g, i))
        phones.extend(ph.split())
        i += len(g)
    return tuple(phones) or (SILENCE,)


# ---- pocketsphinx ------------------------------------------------------------------------

def _model_path() -> str:
    try:
        from pocketsphinx import get_model_path
    except ImportError:
        raise MissingAssetError("phoneme labels need the package 'pocketsphinx' (pip install "
                                "pocketsphinx==5.1.1)") from None
    return get_model_path()


_LOCK = threading.Lock()
_DECODERS: dict[str, object] = {}


def _decoder(kind: str):
    """One cached pocketsphinx decoder per kind ("recognition" | "alignment") and process."""
    if kind not in _DECODERS:
        mp = _model_path()
        from pocketsphinx import Decoder

        if kind == "recognition":
            _DECODERS[kind] = Decoder(allphone=f"{mp}/en-us/en-us-phone.lm.bin", lm=None, loglevel="FATAL",
                                      samprate=SAMPLE_RATE, **RECOGNITION_OPTIONS)
        else:
            _DECODERS[kind] = Decoder(bestpath=False, lm=None, loglevel="FATAL", samprate=SAMPLE_RATE,
                                      **ALIGNMENT_OPTIONS)
    return _DECODERS[kind]


def _pcm16(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _check_wav(wav: np.ndarray) -> np.ndarray:
    """(N,) float32 mono in [-1, 1] at 16 kHz; int16 is scaled. Non-finite samples are bad input."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise InputError(f"audio must be mono (N,), got shape {wav.shape}")
    if wav.dtype == np.int16:
        return wav.astype(np.float32) / 32768.0
    wav = wav.astype(np.float32, copy=False)
    if not np.isfinite(wav).all():
        raise InputError("audio holds NaN or infinite samples")
    return wav


def _decode(decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _segments(items, n_steps: int, duration: float) -> tuple[Segment, ...]:
    """Segments covering ``[0, duration)`` from ``(phone, first_step, end_step)`` items (10 ms
    steps, end exclusive): gaps become silence, neighbouring silences merge, the last segment
    ends at ``duration``."""
    out: list[list] = []                         # [phone, first, end] in steps
    pos = 0
    for phone, a, b in sorted(items, key=lambda it: it[1]):
        a, b = max(a, pos), min(b, n_steps)
        if b <= a:
            continue
        if a > pos:
            out.append([SILENCE, pos, a])
        out.append([phone, a, b])
        pos = b
    if pos < n_steps:
        out.append([SILENCE, pos, n_steps])
    merged: list[list] = []
    for seg in out:
        if merged and seg[0] == SILENCE and merged[-1][0] == SILENCE:
            merged[-1][2] = seg[2]
        else:
            merged.append(seg)
    segs = [Segment(p, round(a * STEP_S, 6), round(min(b * STEP_S, duration), 6)) for p, a, b in merged]
    if segs:
        segs[-1] = Segment(segs[-1].phone, segs[-1].start, duration)
    return tuple(s for s in segs if s.end > s.start)


def _silent_steps(wav: np.ndarray, n_steps: int) -> np.ndarray:
    """(n_steps,) bool: 10 ms steps inside a run of >= GATE_MIN_S below the silence gate."""
    hop = int(SAMPLE_RATE * STEP_S)
    x = np.zeros(n_steps * hop, dtype=np.float32)
    x[:min(len(wav), len(x))] = wav[:len(x)]
    rms = np.sqrt(np.mean(x.reshape(n_steps, hop).astype(np.float64) ** 2, axis=1))   # (n_steps,)
    loud = np.percentile(rms, 99) if n_steps else 0.0
    gate = max(10 ** (GATE_DBFS / 20), loud * 10 ** (-GATE_REL_DB / 20))
    quiet = rms < gate
    out = np.zeros(n_steps, dtype=bool)
    min_len = int(round(GATE_MIN_S / STEP_S))
    i = 0
    while i < n_steps:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < n_steps and quiet[j]:
            j += 1
        if j - i >= min_len:
            out[i:j] = True
        i = j
    return out


def recognize(wav: np.ndarray) -> PhonemeResult:
    """Phone recognition (no text). wav: (N,) float32 mono at 16 kHz."""
    wav = _check_wav(wav)
    duration = len(wav) / SAMPLE_RATE
    n_steps = int(math.ceil(duration / STEP_S - 1e-9))
    labels = np.full(n_steps, SILENCE, dtype=object)                  # (n_steps,) phone per 10 ms
    if len(wav) >= int(SAMPLE_RATE * STEP_S) * 3:
        with _LOCK:
            d = _decoder("recognition")
            _decode(d, _pcm16(wav))
            segs = [(s.word, s.start_frame, s.end_frame + 1) for s in d.seg()]
        known = _ids()
        for phone, a, b in segs:
            labels[max(a, 0):min(b, n_steps)] = phone if phone in known else "+NSN+"
    labels[_silent_steps(wav, n_steps)] = SILENCE
    items, i = [], 0
    while i < n_steps:                                                # runs of one label
        j = i
        while j < n_steps and labels[j] == labels[i]:
            j += 1
        items.append((labels[i], i, j))
        i = j
    return PhonemeResult(_segments(items, n_steps, duration), "recognition", duration)


def _add_oov_words(decoder, words: list[str]) -> list[str]:
    """Give the decoder a rule-based pronunciation of every word the dictionary lacks."""
    oov = []
    for w in words:
        if decoder.lookup_word(w) is None:
            decoder.add_word(w, " ".join(spell_out(w)), True)
            oov.append(w)
    return oov


def align(wav: np.ndarray, text: str) -> PhonemeResult:
    """Forced alignment of ``text`` (the spoken sentence) to wav ((N,) float32 mono, 16 kHz).

    Falls back to :func:`recognize` (``method`` "recognition", ``note`` saying why) when the
    aligner finds no alignment."""
    wav = _check_wav(wav)
    words = normalize_text(text)
    if not words:
        raise InputError(f"the sentence {text!r} has no words to align")
    duration = len(wav) / SAMPLE_RATE
    n_steps = int(math.ceil(duration / STEP_S - 1e-9))
    items, spans, oov = [], [], []
    with _LOCK:
        d = _decoder("alignment")
        oov = _add_oov_words(d, words)
        try:
            d.set_align_text(" ".join(words))
            pcm = _pcm16(wav)
            _decode(d, pcm)
            d.set_alignment()
            _decode(d, pcm)
            alignment = d.get_alignment()
            for w in alignment or ():
                name = re.sub(r"\(\d+\)$", "", w.name)
                if name not in ("<sil>", "<s>", "</s>"):
                    spans.append((name, w.start * STEP_S, min((w.start + w.duration) * STEP_S, duration)))
                items += [(p.name if p.name in _ids() else SILENCE, p.start, p.start + p.duration) for p in w]
        except RuntimeError:  # pocketsphinx: no alignment could be found
            alignment = None
    if not alignment or [s[0] for s in spans] != words:
        res = recognize(wav)
        return PhonemeResult(res.segments, "recognition", duration, text, tuple(oov),
                             "the sentence could not be aligned to the audio; phones were recognised")
    return PhonemeResult(_segments(items, n_steps, duration), "alignment", duration, text, tuple(oov),
                         None, tuple(spans))


def extract(wav: np.ndarray, text: str | None = None) -> PhonemeResult:
    """Phones of wav ((N,) float32 mono, 16 kHz): aligned to ``text`` when given, else recognised."""
    return align(wav, text) if text is not None else recognize(wav)


def extract_file(src, text: str | None = None) -> PhonemeResult:
    """Phones of the first audio stream of any file ``annotate.media.load_audio`` reads."""
    from .media import load_audio

    return extract(load_audio(src, SAMPLE_RATE), text)


def clip_track(wav: np.ndarray, fps: float, n_frames: int, sentence: str | None = None) -> dict:
    """The phoneme track of one clip, as the columns of a build's phonemes table (without
    ``clip_id``): ``fps``, ``method``, ``sentence``, ``note``, the segments as ``phones`` /
    ``starts`` / ``ends`` (seconds) and ``frame_ids`` (n_frames,) on the clip's video frame grid.
    wav: (N,) float32 mono at 16 kHz (int16 accepted)."""
    res = extract(wav, sentence)
    return {"fps": float(fps), "method": res.method, "sentence": sentence, "note": res.note,
            "phones": [s.phone for s in res.segments], "starts": [s.start for s in res.segments],
            "ends": [s.end for s in res.segments], "frame_ids": res.ids(fps, n_frames).tolist()}
