"""RAVDESS (Livingstone & Russo 2018): 24 actors, two statements, eight emotions, two intensities.

Layout, as the Zenodo zips (``Video_Speech_Actor_NN.zip``, ``Video_Song_Actor_NN.zip``) unpack::

    <root>/Actor_NN/MM-VV-EE-II-SS-RR-NN.mp4

Seven two-digit fields: modality (01 full audio-video, 02 video-only, 03 audio-only), vocal
channel (01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry,
06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02 strong; neutral has no strong),
statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the door"), repetition
(01, 02), actor (01-24; odd = male, even = female).

What is listed: speech full-AV files (``--include-song`` adds song). A video-only file whose
full-AV twin (same fields, modality 01) is present is dropped silently; one without its twin is
listed and fails at the audio stage ("no audio"), since RAVDESS's video-only mp4s carry no
audio track. Audio-only files and other extensions are not videos and are ignored. An mp4
whose name does not parse (wrong field count, a code out of range, a neutral "strong" clip, an
actor field that disagrees with its folder) is skipped with a warning.

Clip ids are the file stems (``01-01-03-02-01-01-12``); speakers ``Actor_NN``; emotion and
intensity are written as the words above; the statement is the clip's ``sentence``.
"""

from __future__ import annotations

import re
from pathlib import Path

from talkclip import LayoutError

from . import ClipSpec, Corpus, Listing, MediaRef, Recipe, Selection, data_file

EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
            "07": "disgust", "08": "surprised"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
LAYOUT = "<root>/Actor_NN/MM-VV-EE-II-SS-RR-NN.mp4 (RAVDESS's Video_Speech/Video_Song zips unpacked)"

_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
_ACTOR_DIR = re.compile(r"Actor_(\d\d)")


def _problem(fields: tuple[str, ...], folder_actor: str) -> str | None:
    """Why a parsed name is not a valid RAVDESS name (None when it is)."""
    modality, channel, emotion, intensity, statement, repetition, actor = fields
    checks = ((modality in ("01", "02", "03"), f"modality {modality}"),
              (channel in ("01", "02"), f"vocal channel {channel}"),
              (emotion in EMOTIONS, f"emotion {emotion}"),
              (intensity in INTENSITIES, f"intensity {intensity}"),
              (not (emotion == "01" and intensity == "02"), "neutral has no strong intensity"),
              (statement in STATEMENTS, f"statement {statement}"),
              (repetition in ("01", "02"), f"repetition {repetition}"),
              (1 <= int(actor) <= 24, f"actor {actor}"),
              (actor == folder_actor, f"actor {actor} in the folder of actor {folder_actor}"))
    return next((why for ok, why in checks if not ok), None)


def list_clips(root: Path, selection: Selection) -> Listing:
    actor_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _ACTOR_DIR.fullmatch(d.name))
    if not actor_dirs:
        raise LayoutError(f"{root} is not RAVDESS-shaped: no Actor_NN folder; expected {LAYOUT}")
    parsed: dict[tuple[str, ...], Path] = {}
    skipped: list[str] = []
    for d in actor_dirs:
        for p in sorted(d.iterdir()):
            if not p.is_file() or p.suffix.lower() != ".mp4":
                continue
            m = _NAME.fullmatch(p.stem)
            why = "not MM-VV-EE-II-SS-RR-NN" if m is None else _problem(m.groups(), d.name[-2:])
            if why:
                skipped.append(f"{d.name}/{p.name}: not a RAVDESS name ({why}); skipped")
                continue
            parsed[m.groups()] = p
    clips = []
    for fields, path in parsed.items():
        modality, channel, emotion, intensity, statement, repetition, actor = fields
        if modality == "03" or (channel == "02" and not selection.include_song):
            continue
        if modality == "02" and ("01",) + fields[1:] in parsed:
            continue              # the full audio-video twin is listed instead
        clips.append(ClipSpec(
            clip_id=path.stem, speaker=f"Actor_{actor}", gender="man" if int(actor) % 2 else "woman",
            emotion=EMOTIONS[emotion], intensity=INTENSITIES[intensity], video=MediaRef(str(path)),
            sentence=STATEMENTS[statement], take=repetition))
    return Listing(clips, skipped)


RECIPE = Recipe(
    name="ravdess",
    version="1",
    summary="RAVDESS: 24 actors, 2 statements, 8 emotions x 2 intensities (speech; --include-song adds song)",
    layout=LAYOUT,
    labels=data_file("ravdess_groups.csv"),
    corpus=Corpus(
        dataset="TA-RAVDESS",
        title="RAVDESS (The Ryerson Audio-Visual Database of Emotional Speech and Song)",
        homepage="https://zenodo.org/records/1188976",
        licence="cc-by-nc-sa-4.0",
        licence_name="Creative Commons Attribution-NonCommercial-ShareAlike 4.0",
        licence_link="https://creativecommons.org/licenses/by-nc-sa/4.0/",
        terms=("RAVDESS is released under CC BY-NC-SA 4.0: this derived data (which includes the actors' "
               "speech audio and per-frame face measurements) may be shared for non-commercial use only, "
               "under the same licence, crediting Livingstone & Russo (2018)."),
        citation="""@article{livingstone2018ravdess,
  title   = {The Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS): A dynamic,
             multimodal set of facial and vocal expressions in North American English},
  author  = {Livingstone, Steven R. and Russo, Frank A.},
  journal = {PLoS ONE},
  volume  = {13},
  number  = {5},
  pages   = {e0196391},
  year    = {2018},
  doi     = {10.1371/journal.pone.0196391}
}"""),
    list_clips=list_clips,
    groups=tuple((e, i) for e in EMOTIONS.values() for i in INTENSITIES.values()
                 if not (e == "neutral" and i == "strong")),
    options=frozenset({"include_song"}),
)
