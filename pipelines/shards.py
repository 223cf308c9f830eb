"""Parquet shards: atomic writes, readers that never see a half-written file.

A shard is written through the project's one atomic write (:mod:`talkclip.schemas.files`: a
hidden temporary file beside its final name, fsynced, then moved into place). Readers only list
``*.parquet`` files whose name does not start with a dot (:func:`talkclip.schemas.build.shard_files`),
so a temp file left by a killed process is never read; :func:`remove_temp_files` sweeps them away.

Every writer casts to the table's schema from :mod:`talkclip.schemas` before writing; rows are
the schema's row types (:mod:`talkclip.schemas.tamead`) or dicts with exactly its columns.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from talkclip import OutdatedTableError
from talkclip.schemas import cast_table
from talkclip.schemas.build import shard_files
from talkclip.schemas.files import TEMP_SUFFIX, atomic_output

COMPRESSION = "zstd"
__all__ = ["shard_files", "remove_temp_files", "write_table", "write_rows", "rows_to_table", "read_table",
           "read_column", "list_of_fixed", "list_of_values", "encodings"]


def remove_temp_files(folder: str | Path) -> int:
    """Delete temp files a killed writer left in ``folder``; returns how many."""
    folder = Path(folder)
    n = 0
    if folder.is_dir():
        for p in folder.glob(f".*{TEMP_SUFFIX}"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _leaf_paths(field: pa.Field, prefix: str = "") -> list[tuple[str, pa.DataType]]:
    """Parquet column paths of a field's leaves, e.g. ``blendshapes.list.element.list.element``."""
    name = f"{prefix}{field.name}"
    t = field.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _leaf_paths(pa.field("element", t.value_type), f"{name}.list.")
    if pa.types.is_struct(t):
        return [leaf for i in range(t.num_fields) for leaf in _leaf_paths(t.field(i), f"{name}.")]
    return [(name, t)]


def encodings(schema: pa.Schema) -> dict:
    """Per-column Parquet encodings: dictionary for text, BYTE_STREAM_SPLIT for numbers.

    Measured on TA-MEAD shards with zstd: byte-stream-split numbers take 24-38 % less space than
    pyarrow's default (dictionary, then plain) for blendshapes, pose, int16 landmarks and PCM.
    """
    leaves = [leaf for f in schema for leaf in _leaf_paths(f)]
    text = [p for p, t in leaves if pa.types.is_string(t) or pa.types.is_large_string(t)]
    numbers = [p for p, t in leaves if pa.types.is_floating(t) or pa.types.is_integer(t)]
    return dict(use_dictionary=text or False, use_byte_stream_split=numbers or False)


def write_table(table: pa.Table, schema: pa.Schema, path: str | Path) -> Path:
    """Cast ``table`` to ``schema`` and write it atomically to ``path`` (a .parquet file)."""
    path = Path(path)
    if path.suffix != ".parquet":
        raise ValueError(f"shard names end in .parquet, got {path.name}")
    table = cast_table(table, schema)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        pq.write_table(table, f, compression=COMPRESSION, **encodings(schema))
    return path


def rows_to_table(rows: Sequence[Any], schema: pa.Schema) -> pa.Table:
    """Rows (the schema's row types, or dicts) -> a table of ``schema``.

    A dict key that is not a column is a programming error (ValueError), so a writer cannot
    drift from its schema unnoticed; absent keys are nulls.
    """
    names = schema.names
    cols: dict[str, list] = {n: [] for n in names}
    for r in rows:
        d = asdict(r) if is_dataclass(r) else dict(r)
        extra = set(d) - set(names)
        if extra:
            raise ValueError(f"row keys {sorted(extra)} are not columns of the schema")
        for n in names:
            cols[n].append(d.get(n))
    return pa.Table.from_pydict(cols, schema=schema)


def write_rows(rows: Sequence[Any], schema: pa.Schema, path: str | Path) -> Path:
    return write_table(rows_to_table(rows, schema), schema, path)


def read_table(folder: str | Path, schema: pa.Schema | None = None,
               columns: Sequence[str] | None = None) -> pa.Table:
    """Concatenate a table folder's finished shards (an empty table of ``schema`` if none)."""
    files = shard_files(folder)
    if not files:
        if schema is None:
            return pa.table({})
        empty = schema.empty_table()
        return empty.select(list(columns)) if columns else empty
    tables = [pq.read_table(p, columns=list(columns) if columns else None) for p in files]
    if schema is not None:
        want = list(columns) if columns else schema.names
        sub = pa.schema([schema.field(n) for n in want])
        for t in tables:
            missing = [n for n in want if n not in t.column_names]
            if missing:
                raise OutdatedTableError(f"{folder} was written by an earlier talkclip (no column {', '.join(missing)}): "
                                         "build into a new folder, or delete this one to start over")
        tables = [cast_table(t, sub) for t in tables]
    return pa.concat_tables(tables)


def read_column(folder: str | Path, column: str) -> list:
    files = shard_files(folder)
    out: list = []
    for p in files:
        out.extend(pq.read_table(p, columns=[column]).column(column).to_pylist())
    return out


# ---- building nested list columns straight from numpy (no per-element Python objects)

def list_of_fixed(arrays: Iterable[np.ndarray], width: int, value_type: pa.DataType) -> pa.Array:
    """[(T_i, width)] arrays -> list<fixed_size_list<value_type, width>> with one entry per array."""
    arrays = list(arrays)
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    for a in arrays:
        if a.ndim != 2 or a.shape[1] != width:
            raise ValueError(f"expected (T, {width}), got {a.shape}")
    flat = (np.concatenate([a.reshape(-1) for a in arrays]) if arrays
            else np.zeros(0, value_type.to_pandas_dtype()))
    values = pa.array(flat.astype(value_type.to_pandas_dtype(), copy=False), type=value_type)
    inner = pa.FixedSizeListArray.from_arrays(values, width)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32), type=pa.int32())
    return pa.ListArray.from_arrays(offsets, inner)


def list_of_values(arrays: Iterable[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """[(N_i,)] arrays -> list<value_type> with one entry per array."""
    arrays = list(arrays)
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    dtype = np.bool_ if pa.types.is_boolean(value_type) else value_type.to_pandas_dtype()
    flat = np.concatenate([np.asarray(a).reshape(-1) for a in arrays]) if arrays else np.zeros(0, dtype)
    values = pa.array(flat.astype(dtype, copy=False), type=value_type)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32), type=pa.int32())
    return pa.ListArray.from_arrays(offsets, values)

