"""The one atomic file write of the project.

Every file the project leaves on disk (Parquet shards, manifests, cards, checkpoints, caches,
videos, CSVs) is written to a hidden temporary name beside its final path, flushed, and moved
into place with one ``os.replace`` (atomic on POSIX): a reader sees the old file or the whole
new one, never half of one, and a crash leaves at most a temporary file that the next write
replaces. This module imports nothing else from the project, so schemas/, model/, annotate/
and pipelines/ can all use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_path(path: str | Path) -> Path:
    """The temporary name :func:`atomic_write` uses for ``path`` (hidden, same folder)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_output(path: str | Path, *, shared: bool = True) -> Iterator[Path]:
    """Context manager: yields a temporary path to fill; on a clean exit it is fsynced and moved
    onto ``path``, on any exception (KeyboardInterrupt included) it is removed and ``path`` is
    left as it was, and so are its folders: the parent folders it had to create are removed
    again when still empty. With ``shared`` the file gets
    the permissions a plain ``open()`` would give (safetensors, for one, creates files 0600).
    The temporary name ends in ``.tmp``, so writers whose format is guessed from the extension
    (video muxers) must name their format explicitly.
    """
    path = Path(path)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]   # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    done = False
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if shared:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        done = True
    finally:
        if tmp.exists():
            tmp.unlink()
        for d in created if not done else ():
            try:
                d.rmdir()
            except OSError:   # no longer empty: something else lives there now
                break


@contextlib.contextmanager
def cannot_write(path: str | Path) -> Iterator[None]:
    """An OSError while writing ``path`` (disk full, a special file system, a folder removed
    under it) as a one-line :class:`talkclip.InputError` naming the file."""
    from talkclip import InputError, one_line

    try:
        yield
    except OSError as e:
        raise InputError(f"cannot write {path}: {one_line(e)}") from None


def atomic_write(path: str | Path, write: Callable[[Path], None], *, shared: bool = True) -> Path:
    """Call ``write(tmp)`` to fill a temporary file and move it onto ``path`` atomically
    (see :func:`atomic_output`)."""
    with atomic_output(path, shared=shared) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def claim_output_dir(path: str | Path, markers: tuple[str, ...], what: str) -> Path:
    """The one rule for every command that writes a folder: the folder must be missing, empty,
    or already hold one of ``markers`` (names relative to it, e.g. ``manifest.json`` or
    ``.work`` for a build, ``config.json`` for a checkpoint), i.e. be an earlier output of the
    same kind. Anything else -- a file, or a folder of the user's own files -- is refused with
    one line (:class:`talkclip.InputError`) before anything is touched. Creates the folder and
    returns it. ``what`` names the output in the message ("a TA-MEAD build", "a checkpoint").
    """
    from talkclip import InputError  # the project's error base only; nothing else is imported

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file, not a folder for {what}")
    if path.is_dir():
        try:
            entries = [p.name for p in path.iterdir()]
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from None
        if entries and not any((path / m).exists() for m in markers):
            raise InputError(f"{path} holds other files and is not {what}: choose an empty or new folder "
                             f"(refusing to touch {entries[0]!r} and the rest)")
    return _writable_dir(path)


def check_output_file(path: str | Path, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """The rule for a command that writes one file: ``path`` must not be a folder, must end in one
    of ``suffixes`` (when given), and its folder must exist or be creatable and be writable.
    Checked before any slow work; one-line :class:`talkclip.InputError` otherwise. Creates the
    parent folder and returns ``path``; an existing file of that name is replaced (atomically)
    when the command writes it."""
    from talkclip import InputError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; {what} must be a file path")
    if suffixes and path.suffix not in suffixes:
        raise InputError(f"{what} must end in {' or '.join(suffixes)}, got {path.name}")
    parent = path.parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise InputError(f"cannot write {path}: {blocker} is a file, not a folder")
    _writable_dir(parent)
    return path


def _writable_dir(folder: Path) -> Path:
    """Create ``folder`` (and its parents) when missing and check it can be written; one-line
    :class:`talkclip.InputError` otherwise."""
    from talkclip import InputError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to {folder}: permission denied")
    return folder
