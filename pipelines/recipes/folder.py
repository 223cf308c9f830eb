"""Any folder of talking-face videos (HDTF-, VoxCeleb-style), labelled or not.

Layout::

    <root>/<speaker>/.../<name>.mp4        speaker = the first path component
    <root>/labels.csv                      optional: path, speaker, emotion, intensity [, subject]

Videos: ``.mp4 .mov .mkv .avi .webm .m4v .flv`` anywhere below the root. A ``.wav`` or ``.m4a``
with the same stem beside a video is its audio; otherwise the video's own track is used (a clip
with neither fails at the audio stage).

Without ``labels.csv`` every video is unlabelled: its captions have the AU part only (as
``talkclip-data caption`` without ``--emotion``), its level is 0. A video directly in the root
(no speaker folder) is skipped with a warning.

With ``labels.csv`` the CSV is the clip list: ``path`` relative to the root (required),
``speaker`` (empty = the first path component), ``emotion`` and ``intensity`` (either may be
empty: no emotion = AU-only captions), optional ``subject`` (the caption's subject word, default
"person"). Emotion and intensity words are looked up in the label table (packaged
``folder_groups.csv``: neutral, calm, happy, sad, angry, fearful, disgusted, surprised, contempt
x no intensity, low, medium, high; pass your own with ``--groups``). A row whose file is
missing, and a video the CSV does not list, are skipped with a warning.

Clip ids are the relative paths without extension, ``/`` written as ``__``.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from talkclip import InputError, LayoutError, one_line

from . import ClipSpec, Corpus, Listing, MediaRef, Recipe, Selection, data_file

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv")
AUDIO_SUFFIXES = (".wav", ".m4a")
CSV_NAME = "labels.csv"
LAYOUT = "<root>/<speaker>/.../<video>.mp4 (any video type), optional <root>/labels.csv (path,speaker,emotion,intensity)"


def _clip(root: Path, rel: str, speaker: str, emotion: str = "", intensity: str = "",
          subject: str = "person") -> ClipSpec:
    path = root / rel
    audio = next((a for a in (path.with_suffix(s) for s in AUDIO_SUFFIXES) if a.is_file()), None)
    return ClipSpec(
        clip_id=str(PurePosixPath(rel).with_suffix("")).replace("/", "__"), speaker=speaker,
        gender=subject or "person", emotion=emotion.strip().lower(), intensity=intensity.strip().lower(),
        video=MediaRef(str(path)), audio=MediaRef(str(audio)) if audio else None,
        audio_kind=audio.suffix[1:].lower() if audio else "m4a")


def _videos(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read {path}: {one_line(e)}") from None
    if rows and "path" not in rows[0]:
        raise InputError(f"{path} has no 'path' column (expected path,speaker,emotion,intensity)")
    return rows


def _from_csv(root: Path, videos: list[str]) -> Listing:
    clips, skipped, seen = [], [], set()
    for k, row in enumerate(_read_csv(root / CSV_NAME), start=2):      # row 1 is the header
        rel = PurePosixPath((row.get("path") or "").strip().replace("\\", "/")).as_posix()
        if rel in seen:
            raise InputError(f"{CSV_NAME} line {k}: {rel} is listed twice")
        seen.add(rel)
        if rel in ("", ".") or ".." in PurePosixPath(rel).parts or not (root / rel).is_file():
            skipped.append(f"{CSV_NAME} line {k}: no video {rel!r} under the root; skipped")
            continue
        speaker = (row.get("speaker") or "").strip() or PurePosixPath(rel).parts[0]
        clips.append(_clip(root, rel, speaker, row.get("emotion") or "", row.get("intensity") or "",
                           (row.get("subject") or "").strip()))
    skipped += [f"{rel}: not listed in {CSV_NAME}; skipped" for rel in videos if rel not in seen]
    return Listing(clips, skipped)


def list_clips(root: Path, selection: Selection) -> Listing:
    videos = _videos(root)
    if not videos:
        raise LayoutError(f"{root} holds no video ({', '.join(VIDEO_SUFFIXES)}); expected {LAYOUT}")
    if (root / CSV_NAME).is_file():
        listing = _from_csv(root, videos)
    else:
        listing = Listing([], [])
        for rel in videos:
            parts = PurePosixPath(rel).parts
            if len(parts) < 2:
                listing.skipped.append(f"{rel}: not in a speaker folder (<root>/<speaker>/...); skipped")
            else:
                listing.clips.append(_clip(root, rel, parts[0]))
    ids: dict[str, str] = {}
    for c in listing.clips:
        if c.clip_id in ids:
            raise InputError(f"{ids[c.clip_id]} and {c.video.path} give the same clip id {c.clip_id}; rename one")
        ids[c.clip_id] = c.video.path
    return listing


RECIPE = Recipe(
    name="folder",
    version="1",
    summary="any folder of videos: speakers = first path component, optional labels.csv with emotions",
    layout=LAYOUT,
    labels=data_file("folder_groups.csv"),
    corpus=Corpus(
        dataset="TA-folder",
        title="a folder of videos (talkclip `folder` recipe)",
        homepage="",
        licence="other",
        licence_name="the terms of the source videos",
        licence_link="",
        terms=("The videos' own terms apply to this derived data (which includes their speech audio and "
               "per-frame face measurements of the people shown); check them before sharing it."),
        citation=""),
    list_clips=list_clips,
)
