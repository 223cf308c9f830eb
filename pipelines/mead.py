"""Walking a MEAD corpus: extracted folders or the per-speaker ``video.tar`` / ``audio.tar``.

Layouts accepted under the root (one speaker folder per actor, e.g. ``M003``, ``W009``)::

    <root>/<SPK>/video/<view>/<emotion>/level_<n>/<NNN>.mp4      extracted
    <root>/<SPK>/audio/<emotion>/level_<n>/<NNN>.m4a
    <root>/<SPK>/video.tar, <root>/<SPK>/audio.tar                as downloaded

A speaker may mix both (an extracted ``video/`` folder wins over ``video.tar``). Members of a
tar archive are located by reading the archive's headers once (``tarfile`` seeks over the file
data of an uncompressed tar); a member is later read on its own with one seek and one read of
its bytes (:meth:`MediaRef.open`), so no archive is ever unpacked to disk.

Clip ids are ``<SPK>_<view>_<emotion>_level_<n>_<NNN>``, e.g. ``M003_front_angry_level_1_001``.

Audio of a clip: the separate m4a when MEAD has one for (speaker, emotion, level, take), else
the mp4's own track; which one is recorded in the clips table (``audio_source``). What happens
when neither exists, or their lengths disagree, is decided by the build (see
:mod:`talkclip.pipelines.build_ta_mead`).

A folder with no speaker folder of either shape raises :class:`talkclip.LayoutError` naming the
expected layout.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

from talkclip import InputError, LayoutError, MediaError, one_line

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
EXPECTED = ("<root>/<SPK>/video/<view>/<emotion>/level_<n>/<NNN>.mp4 (with optional "
            "<root>/<SPK>/audio/<emotion>/level_<n>/<NNN>.m4a) or <root>/<SPK>/video.tar + audio.tar")

_VIDEO_RE = re.compile(r"(?:^|/)video/([^/]+)/([^/]+)/level_(\d+)/([^/]+)\.mp4$", re.IGNORECASE)
_AUDIO_RE = re.compile(r"(?:^|/)audio/([^/]+)/level_(\d+)/([^/]+)\.m4a$", re.IGNORECASE)


@dataclass(frozen=True)
class MediaRef:
    """A media file on disk, or one member of an uncompressed tar archive."""

    path: str                     # the file, or the archive
    member: str | None = None     # member name inside the archive
    offset: int = -1              # byte offset of the member's data in the archive
    size: int = -1                # member size in bytes

    @property
    def display(self) -> str:
        """How the clips table names it: the path, or ``archive.tar::member``."""
        return self.path if self.member is None else f"{self.path}::{self.member}"

    @property
    def name(self) -> str:
        return Path(self.member or self.path).name

    def open(self) -> str | BinaryIO:
        """A source the decoders accept: the path, or the member's bytes as a named file object."""
        if self.member is None:
            return self.path
        from talkclip.annotate.media import read_bytes_source

        return read_bytes_source(read_member(self), self.display)


def read_member(ref: MediaRef) -> bytes:
    """Read one tar member's bytes with a single seek + read (``tarfile`` as a fallback)."""
    if ref.member is None:
        raise ValueError("read_member needs a tar member reference")
    if ref.offset >= 0 and ref.size >= 0:
        with open(ref.path, "rb") as f:
            f.seek(ref.offset)
            data = f.read(ref.size)
        if len(data) == ref.size:
            return data
        raise MediaError(f"truncated archive {Path(ref.path).name}: member {ref.member} has {len(data)} "
                         f"of its {ref.size} bytes")
    try:
        with tarfile.open(ref.path, "r:") as tf:
            fobj = tf.extractfile(ref.member)
            if fobj is None:
                raise InputError(f"{ref.display} is not a regular file in its archive")
            return fobj.read()
    except (tarfile.TarError, KeyError) as e:
        raise MediaError(f"cannot read {ref.member} from archive {Path(ref.path).name}: {one_line(e)}") from None


@dataclass(frozen=True)
class MeadClip:
    speaker: str
    view: str
    emotion: str
    level: int
    take: str
    video: MediaRef
    audio: MediaRef | None    # the separate m4a, when MEAD has one

    @property
    def clip_id(self) -> str:
        return clip_id(self.speaker, self.view, self.emotion, self.level, self.take)


def clip_id(speaker: str, view: str, emotion: str, level: int, take: str) -> str:
    return f"{speaker}_{view}_{emotion}_level_{int(level)}_{take}"


def _is_speaker_dir(d: Path) -> bool:
    return d.is_dir() and ((d / "video").is_dir() or (d / "video.tar").is_file())


def find_speakers(root: str | Path) -> list[str]:
    """Speaker folder names under ``root`` (sorted); LayoutError when there are none."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"no such folder: {root}")
    if not root.is_dir():
        raise LayoutError(f"{root} is not a folder; expected a MEAD root: {EXPECTED}")
    speakers = sorted(d.name for d in root.iterdir() if _is_speaker_dir(d))
    if not speakers:
        hint = ""
        if (root / "video").is_dir() or (root / "video.tar").is_file():
            hint = f" ({root.name} looks like one speaker's folder: pass its parent)"
        raise LayoutError(f"{root} is not MEAD-shaped: no speaker folder found; expected {EXPECTED}{hint}")
    return speakers


def _tar_members(tar_path: Path, warnings: list[str] | None = None) -> Iterable[tuple[str, int, int]]:
    """(name, data offset, size) of the regular files in an uncompressed tar.

    A damaged archive (truncated download) does not stop the listing of the corpus: the members
    whose headers could be read are listed (reading one whose data is cut off fails later, for
    that clip only), and a warning is added to ``warnings``. Without ``warnings`` it raises.
    """
    n = 0
    try:
        with tarfile.open(tar_path, "r:") as tf:
            for m in tf:
                if m.isfile():
                    n += 1
                    yield m.name, m.offset_data, m.size
    except (tarfile.TarError, OSError) as e:
        if warnings is None:
            raise LayoutError(f"cannot read archive {tar_path}: {one_line(e)}") from None
        warnings.append(f"damaged archive {tar_path.parent.name}/{tar_path.name} ({one_line(e)}): "
                        f"only the {n} member(s) before the damage are listed")


def _speaker_videos(spk_dir: Path, warnings: list[str] | None = None) -> list[tuple[str, str, int, str, MediaRef]]:
    """(view, emotion, level, take, ref) for every mp4 of one speaker."""
    out = []
    vdir = spk_dir / "video"
    if vdir.is_dir():
        for p in sorted(vdir.glob("*/*/level_*/*.mp4")):
            m = _VIDEO_RE.search(p.relative_to(spk_dir).as_posix())
            if m:
                out.append((m.group(1), m.group(2), int(m.group(3)), m.group(4), MediaRef(str(p))))
    elif (spk_dir / "video.tar").is_file():
        tar = spk_dir / "video.tar"
        for name, off, size in _tar_members(tar, warnings):
            m = _VIDEO_RE.search(name)
            if m:
                out.append((m.group(1), m.group(2), int(m.group(3)), m.group(4),
                            MediaRef(str(tar), name, off, size)))
    return out


def _speaker_audio(spk_dir: Path, warnings: list[str] | None = None) -> dict[tuple[str, int, str], MediaRef]:
    """(emotion, level, take) -> m4a reference for one speaker."""
    out: dict[tuple[str, int, str], MediaRef] = {}
    adir = spk_dir / "audio"
    if adir.is_dir():
        for p in sorted(adir.glob("*/level_*/*.m4a")):
            m = _AUDIO_RE.search(p.relative_to(spk_dir).as_posix())
            if m:
                out[(m.group(1), int(m.group(2)), m.group(3))] = MediaRef(str(p))
    elif (spk_dir / "audio.tar").is_file():
        tar = spk_dir / "audio.tar"
        for name, off, size in _tar_members(tar, warnings):
            m = _AUDIO_RE.search(name)
            if m:
                out[(m.group(1), int(m.group(2)), m.group(3))] = MediaRef(str(tar), name, off, size)
    return out


def _check_choice(kind: str, given: Sequence[str] | None, allowed: Sequence[str]) -> list[str] | None:
    if given is None:
        return None
    given = [g.strip() for g in given if g and g.strip()]
    bad = [g for g in given if g not in allowed]
    if bad:
        raise InputError(f"unknown {kind} {', '.join(bad)}; MEAD has {', '.join(allowed)}")
    return given


def walk_mead(root: str | Path, *, speakers: Sequence[str] | None = None,
              views: Sequence[str] | None = ("front",), emotions: Sequence[str] | None = None,
              limit: int | None = None, warnings: list[str] | None = None) -> list[MeadClip]:
    """List the clips of a MEAD root that pass the filters, sorted by clip id.

    ``views=None`` (or ``["all"]``) / ``emotions=None`` / ``speakers=None`` mean all; an empty
    ``views`` means the default, front. ``limit`` keeps the first N clips of the sorted
    selection. Raises LayoutError when the folder is not MEAD-shaped or the selection finds no
    clip, InputError for unknown filter values. With a ``warnings`` list, a damaged speaker
    archive is listed as far as it can be read and noted there instead of raising.
    """
    root = Path(root)
    all_speakers = find_speakers(root)
    views = _check_choice("view", view_selection(views), VIEWS)
    emotions = _check_choice("emotion", emotions, EMOTIONS)
    if speakers is not None:
        speakers = [s.strip() for s in speakers if s and s.strip()]
        missing = [s for s in speakers if s not in all_speakers]
        if missing:
            raise InputError(f"speaker(s) {', '.join(missing)} not found under {root} "
                             f"(found {', '.join(all_speakers[:8])}{' ...' if len(all_speakers) > 8 else ''})")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    clips: list[MeadClip] = []
    for spk in speakers or all_speakers:
        d = root / spk
        videos = _speaker_videos(d, warnings)
        audio = _speaker_audio(d, warnings) if videos else {}
        for view, emo, level, take, ref in videos:
            if views is not None and view not in views:
                continue
            if emotions is not None and emo not in emotions:
                continue
            clips.append(MeadClip(spk, view, emo, level, take, ref, audio.get((emo, level, take))))
    clips.sort(key=lambda c: c.clip_id)
    if not clips:
        raise LayoutError(f"no clip under {root} matches the selection (views {list(views) if views else 'all'}, "
                          f"emotions {list(emotions) if emotions else 'all'}); expected {EXPECTED}")
    return clips[:limit] if limit else clips


def view_selection(views: Sequence[str] | None) -> list[str] | None:
    """The one --views rule: not given (empty) = front only; "all" (or None) = every view."""
    if views is None:
        return None
    views = [v.strip() for v in views if v and v.strip()]
    if not views:
        return ["front"]
    return None if "all" in views else views
