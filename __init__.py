"""talkclip: text-guided expressive talking heads (TalkCLIP) and the TA-MEAD dataset toolkit.

The repository root is this package (``package-dir = {"talkclip" = "."}``).

User-facing errors are raised once as a :class:`TalkclipError` subclass with a one-line
message; ``cli.py`` prints that line on stderr and exits with ``exit_code``.
"""

__version__ = "0.1.0"


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity where the OS has one, else all)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


class TalkclipError(Exception):
    """Base of every error meant for the user: one line, no traceback."""

    exit_code = 2


class InputError(TalkclipError):
    """A path or option the user gave is unusable (missing file, bad value)."""


class MediaError(TalkclipError):
    """Media that cannot be decoded (unreadable, truncated, no stream)."""


class NoFaceError(TalkclipError):
    """No face was found where one is required."""


class MissingAssetError(TalkclipError):
    """A model file or sample the project needs is not installed (message says how to get it)."""


class LayoutError(TalkclipError):
    """A folder does not have the layout a command expects (e.g. not MEAD-shaped)."""


class OutdatedTableError(LayoutError):
    """A table written by an earlier talkclip lacks columns the current schema declares."""


class CheckpointError(TalkclipError):
    """A checkpoint directory is missing, incomplete or corrupt."""


class ConfigError(TalkclipError):
    """A model or training config is invalid (unknown keys, bad values)."""


class OfflineError(TalkclipError):
    """An optional online path was asked for but the network or a token is unavailable."""
