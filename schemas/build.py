"""THE reader of a TA-MEAD build: where a build folder is recognised, listed and read.

Every reader of a build (the trainer's data in ``model/data.py``, ``train-renderer``,
``calibrate``, ``stats``, ``fit-basis``, ``push``) opens it with :func:`open_build` and reads
its tables through :class:`Build`, so "this folder is not a TA-MEAD build", a damaged shard and
a table of a foreign schema are each recognised in one place and reported with one message.
The landmark codec (how the frames table stores landmarks as int16) lives here too, beside the
table declarations in :mod:`talkclip.schemas.tamead`.

Like the rest of ``schemas/`` this imports nothing of the project but the error classes (lazily).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import NUM_LANDMARKS
from .tamead import LANDMARK_SCALE, TABLES

# what marks a folder as a build of this tool (claim_output_dir markers): the manifest of a
# finished build, or the work folder of a started one
BUILD_MARKERS = ("manifest.json", ".work")
WORK_DIR = ".work"


# ----------------------------------------------------------------------------- landmark codec

def quantise_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 3) float landmarks -> (T, 1434) int16 (x, y, z times LANDMARK_SCALE)."""
    T = landmarks.shape[0]
    q = np.clip(np.round(landmarks.reshape(T, NUM_LANDMARKS * 3) * LANDMARK_SCALE), -32768, 32767)
    return q.astype(np.int16)


def dequantise_landmarks(values) -> np.ndarray:
    """(T, 1434) int16 (array or nested lists) -> (T, 478, 3) float32."""
    return (np.asarray(values, np.float32) / LANDMARK_SCALE).reshape(-1, NUM_LANDMARKS, 3)


# ----------------------------------------------------------------------------- shards

def shard_files(folder: str | Path) -> list[Path]:
    """Finished shards of a table folder, sorted by name (temporary and hidden files excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".") and p.is_file())


def _layout_error(message: str):
    from talkclip import LayoutError

    return LayoutError(message)


def _unreadable(path: Path, e: BaseException):
    return _layout_error(f"unreadable TA-MEAD shard {path}: not a readable parquet file ({_first_line(e)})")


def not_a_build(path: Path, why: str):
    """The one "this folder is not a TA-MEAD build" error (a LayoutError)."""
    return _layout_error(f"{path} is not a TA-MEAD build: {why} (not a TA-MEAD directory written by "
                         "`talkclip-data build-ta-mead`)")


def schema_problem(found: pa.Schema, declared: pa.Schema, columns: Sequence[str] | None = None) -> str | None:
    """Why a shard's schema does not fit its declared one (None when it fits).

    With ``columns`` only those must be present with their declared types; without, the shard
    must have exactly the declared columns, in order, with their types.
    """
    if columns is None:
        if [(f.name, f.type) for f in found] == [(f.name, f.type) for f in declared]:
            return None
        names = set(found.names)
        missing = [n for n in declared.names if n not in names]
        if missing:
            return f"no column {missing[0]!r}"
        extra = [n for n in found.names if n not in declared.names]
        if extra:
            return f"unknown column {extra[0]!r}"
        columns = declared.names
        if found.names != list(declared.names):
            return "columns in another order"
    for name in columns:
        i = found.get_field_index(name)
        if i < 0:
            return f"no column {name!r}"
        want = declared.field(name).type
        if found.field(i).type != want:
            return f"column {name!r} is {found.field(i).type}, not {want}"
    return None


class Build:
    """An opened TA-MEAD build folder (see :func:`open_build`)."""

    def __init__(self, root: Path):
        self.root = root

    def files(self, table: str) -> list[Path]:
        return shard_files(self.root / table)

    @property
    def work(self) -> Path:
        return self.root / WORK_DIR

    def _schema_of(self, path: Path) -> pa.Schema:
        import pyarrow.parquet as pq

        try:
            return pq.read_schema(path)
        except (OSError, ValueError) as e:   # pyarrow's ArrowInvalid is a ValueError
            raise _unreadable(path, e) from None

    def check(self, table: str, columns: Sequence[str] | None = None) -> list[Path]:
        """The table's shards after checking each one's schema (LayoutError naming the shard)."""
        declared = TABLES[table][0]
        files = self.files(table)
        for p in files:
            why = schema_problem(self._schema_of(p), declared, columns)
            if why:
                raise _layout_error(f"{p} does not have the {table} schema of talkclip.schemas.tamead ({why})")
        return files

    def read(self, table: str, columns: Sequence[str] | None = None) -> pa.Table:
        """A whole table (chosen ``columns``) cast to its declared schema; empty when it has no shard."""
        import pyarrow.parquet as pq

        declared = TABLES[table][0]
        want = list(columns) if columns else declared.names
        sub = pa.schema([declared.field(n) for n in want])
        parts = []
        for p in self.check(table):      # the whole schema, whatever columns are read
            try:
                parts.append(pq.read_table(p, columns=want).select(want).cast(sub))
            except (OSError, ValueError) as e:
                raise _unreadable(p, e) from None
        return pa.concat_tables(parts) if parts else sub.empty_table()

    def batches(self, table: str, columns: Sequence[str], batch_size: int = 64) -> Iterator[pa.RecordBatch]:
        """Record batches of a table, shard by shard (a damaged shard is a one-line LayoutError)."""
        import pyarrow.parquet as pq

        for p in self.check(table):
            try:
                yield from pq.ParquetFile(p).iter_batches(columns=list(columns), batch_size=batch_size)
            except (OSError, ValueError) as e:
                raise _unreadable(p, e) from None

    def manifest(self) -> dict:
        """The build's manifest.json ({} when there is none yet); LayoutError when it is not JSON."""
        p = self.root / "manifest.json"
        if not p.is_file():
            return {}
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise _layout_error(f"{p} is not valid JSON ({_first_line(e)})") from None
        if not isinstance(data, dict):
            raise _layout_error(f"{p} is not a TA-MEAD manifest (not a JSON object)")
        return data

    def source_root(self) -> Path | None:
        """The corpus root the build read (recorded in .work/options.json), or None."""
        try:
            opts = json.loads((self.work / "options.json").read_text())
            return Path(opts.get("root") or opts["mead"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def open_build(path: str | Path, tables: Sequence[str] = ("clips",)) -> Build:
    """Open a build folder that must hold ``tables`` (each with at least one shard).

    A missing folder is an InputError ("TA-MEAD folder not found"); a folder without the tables
    is :func:`not_a_build`.
    """
    from talkclip import InputError

    root = Path(path)
    if not root.exists():
        raise InputError(f"TA-MEAD folder not found: {root}")
    if not root.is_dir():
        raise not_a_build(root, "it is a file, not a folder")
    build = Build(root)
    missing = [t for t in tables if not build.files(t)]
    if missing:
        raise not_a_build(root, "no parquet files in " + ", ".join(f"{t}/" for t in missing))
    return build


def _first_line(e: BaseException) -> str:
    from talkclip import one_line

    return one_line(e)
