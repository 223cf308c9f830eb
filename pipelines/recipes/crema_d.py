"""CREMA-D (Cao et al. 2014): 91 actors, 12 sentences, six emotions, four levels.

Layout, as the CREMA-D repository holds it::

    <root>/VideoFlash/AAAA_SSS_EEE_LL.flv       video (Flash video; its own audio track too)
    <root>/AudioWAV/AAAA_SSS_EEE_LL.wav         the audio as 16 kHz WAV (used when present)
    <root>/VideoDemographics.csv                optional: ActorID, Age, Sex, Race, Ethnicity

Name fields: actor id 1001-1091; sentence code (IEO, TIE, IOM, IWW, TAI, MTI, IWL, ITH, DFA,
ITS, TSI, WSI; the sentences are those of the corpus's README, written to the clips table's
``sentence``); emotion ANG, DIS, FEA, HAP, NEU, SAD (written as anger, disgust, fear, happy,
neutral, sad); level LO, MD, HI, XX (written as low, medium, high, unspecified; most clips are
XX, which the packaged label table maps to level 0 = unspecified).

The caption subject is "man" / "woman" from ``VideoDemographics.csv``'s Sex column when the file
is there, else "person". Audio: the WAV of the same name, else the FLV's own track; a clip with
neither fails at the audio stage. An ``.flv`` whose name does not parse is skipped with a warning.
Clip ids are the file stems (``1001_DFA_ANG_XX``), speakers the actor ids.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from talkclip import InputError, LayoutError, one_line

from . import ClipSpec, Corpus, Listing, MediaRef, Recipe, Selection, data_file

SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold", "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment", "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before", "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
LAYOUT = "<root>/VideoFlash/AAAA_SSS_EEE_LL.flv (+ <root>/AudioWAV/AAAA_SSS_EEE_LL.wav, optional VideoDemographics.csv)"

_NAME = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")


def _problem(actor: str, sentence: str, emotion: str, level: str) -> str | None:
    checks = ((1001 <= int(actor) <= 1091, f"actor {actor}"), (sentence in SENTENCES, f"sentence {sentence}"),
              (emotion in EMOTIONS, f"emotion {emotion}"), (level in LEVELS, f"level {level}"))
    return next((why for ok, why in checks if not ok), None)


def read_demographics(path: Path) -> dict[str, str]:
    """ActorID -> "man" | "woman" from VideoDemographics.csv (empty when the file is absent)."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read {path}: {one_line(e)}") from None
    if rows and not {"ActorID", "Sex"} <= set(rows[0]):
        raise InputError(f"{path} lacks the ActorID and Sex columns")
    words = {"male": "man", "female": "woman"}
    return {r["ActorID"].strip(): words.get((r["Sex"] or "").strip().lower(), "person") for r in rows}


def list_clips(root: Path, selection: Selection) -> Listing:
    video_dir = root / "VideoFlash"
    if not video_dir.is_dir():
        raise LayoutError(f"{root} is not CREMA-D-shaped: no VideoFlash folder; expected {LAYOUT}")
    subjects = read_demographics(root / "VideoDemographics.csv")
    clips, skipped = [], []
    for p in sorted(video_dir.iterdir()):
        if not p.is_file() or p.suffix.lower() != ".flv":
            continue
        m = _NAME.fullmatch(p.stem)
        why = "not AAAA_SSS_EEE_LL" if m is None else _problem(*m.groups())
        if why:
            skipped.append(f"VideoFlash/{p.name}: not a CREMA-D name ({why}); skipped")
            continue
        actor, sentence, emotion, level = m.groups()
        wav = root / "AudioWAV" / f"{p.stem}.wav"
        clips.append(ClipSpec(
            clip_id=p.stem, speaker=actor, gender=subjects.get(actor, "person"), emotion=EMOTIONS[emotion],
            intensity=LEVELS[level], video=MediaRef(str(p)), audio=MediaRef(str(wav)) if wav.is_file() else None,
            audio_kind="wav", sentence=SENTENCES[sentence]))
    return Listing(clips, skipped)


RECIPE = Recipe(
    name="crema-d",
    version="1",
    summary="CREMA-D: 91 actors, 12 sentences, 6 emotions x 4 levels (FLV video + 16 kHz WAV)",
    layout=LAYOUT,
    labels=data_file("crema_d_groups.csv"),
    corpus=Corpus(
        dataset="TA-CREMA-D",
        title="CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset)",
        homepage="https://github.com/CheyneyComputerScience/CREMA-D",
        licence="odbl",
        licence_name="Open Database License 1.0 (contents: Database Contents License 1.0)",
        licence_link="https://opendatacommons.org/licenses/odbl/1-0/",
        terms=("CREMA-D is made available under the Open Database License (ODbL 1.0); rights in its "
               "individual contents are licensed under the Database Contents License (DbCL 1.0). This "
               "derived database is shared under the ODbL's share-alike terms; credit Cao et al. (2014)."),
        citation="""@article{cao2014cremad,
  title   = {{CREMA-D}: Crowd-sourced Emotional Multimodal Actors Dataset},
  author  = {Cao, Houwei and Cooper, David G. and Keutmann, Michael K. and Gur, Ruben C. and
             Nenkova, Ani and Verma, Ragini},
  journal = {IEEE Transactions on Affective Computing},
  volume  = {5},
  number  = {4},
  pages   = {377--390},
  year    = {2014},
  doi     = {10.1109/TAFFC.2014.2336244}
}"""),
    list_clips=list_clips,
    groups=tuple((e, lv) for e in EMOTIONS.values() for lv in LEVELS.values()),
)
