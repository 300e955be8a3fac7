"""Reading LAION metadata parquet files (local paths, globs or fsspec URLs) into our columns.

Known layouts, recognised by their column names (case-insensitive):
- LAION-400M: ``SAMPLE_ID, URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW, similarity``
- LAION-5B / Re-LAION: ``URL, TEXT, WIDTH, HEIGHT, similarity, punsafe, pwatermark, hash, ...``
- plain: ``URL, TEXT``
Anything else is mapped with the config's ``column_map`` (our column -> input column).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as S

# Our column -> input names tried in order (first present wins), case-insensitive.
LAION_ALIASES: dict[str, tuple[str, ...]] = {
    S.URL_ORIGINAL: ("URL", "url", "image_url"),
    S.ALT_TEXT: ("TEXT", "caption", "text", "alt_text"),
    S.META_WIDTH_PX: ("WIDTH", "original_width"),
    S.META_HEIGHT_PX: ("HEIGHT", "original_height"),
    S.SIMILARITY: ("similarity",),
    S.PUNSAFE: ("punsafe",),
    S.PWATERMARK: ("pwatermark",),
    S.NSFW_TAG: ("NSFW",),
    S.LICENSE: ("LICENSE",),
    S.SOURCE_SAMPLE_ID: ("SAMPLE_ID", "hash", "key"),
}
METADATA_COLUMNS: tuple[str, ...] = tuple(LAION_ALIASES)


class InputError(ValueError):
    """The input files cannot be read as LAION metadata; the message says what to fix."""


# Read-ahead of the parquet reader, per column: with ``pre_buffer`` off, a row group is read
# in pieces of this size instead of whole, so memory stays bounded by the batch even when an
# input file is one huge row group.
_READ_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One input parquet file: its fsspec path, row count and the row count of each row group."""

    path: str
    n_rows: int
    row_groups: tuple[int, ...] = ()
    identity: tuple[object, ...] = ()  # file_identity: size and modification stamp


def list_inputs(patterns: Sequence[str]) -> list[InputFile]:
    """Expand paths/globs/URLs into sorted files with their row counts (from metadata only)."""
    return sorted({_describe(url) for url in expand_inputs(patterns)}, key=lambda f: f.path)


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """The files that paths/globs/URLs name (local paths plain, others as fsspec URLs)."""
    urls: list[str] = []
    for pattern in patterns:
        fs, path = fsspec.core.url_to_fs(pattern)
        if glob.has_magic(path):
            matches = sorted(fs.glob(path))
        else:
            matches = [path] if fs.exists(path) else []
        if not matches:
            raise InputError(f"candidates.input: no file matches {pattern!r}")
        urls += [match if _is_local(fs) else fs.unstrip_protocol(match) for match in matches]
    return urls


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local file system (its ``protocol`` is a name or a tuple)."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol


def input_identity(patterns: Sequence[str]) -> list[tuple[str, tuple[object, ...]]]:
    """Each input file with its identity (``file_identity``), in path order: what a rerun
    compares to notice an input replaced under the same name. Stats only, never a footer."""
    return sorted((url, file_identity(url)) for url in set(expand_inputs(patterns)))


def file_identity(url: str) -> tuple[object, ...]:
    """Size and modification stamp of one input file (mtime in ns for a local file; for an
    object store, the first of its listing's mtime, LastModified or ETag that it gives)."""
    fs, local = fsspec.core.url_to_fs(url)
    if _is_local(fs):
        stat = Path(local).stat()
        return (stat.st_size, stat.st_mtime_ns)
    info = fs.info(local)
    stamp = next((info[k] for k in ("mtime", "LastModified", "ETag") if info.get(k)), None)
    return (info.get("size"), str(stamp) if stamp is not None else None)


def _describe(path: str) -> InputFile:
    """Row counts of one file, read from its footer only."""
    fs, local = fsspec.core.url_to_fs(path)
    try:
        with fs.open(local, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
            groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
            return InputFile(path, int(meta.num_rows), groups, file_identity(path))
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(
            f"candidates.input: {path} is not a readable parquet file ({err})"
        ) from None


def resolve_columns(
    names: Sequence[str], column_map: Mapping[str, str], keep_columns: Sequence[str]
) -> dict[str, str]:
    """Our column -> input column for one file; fails if no URL column is found."""
    lower = {n.lower(): n for n in names}
    resolved: dict[str, str] = {}
    for ours, aliases in LAION_ALIASES.items():
        if ours in column_map:
            wanted = column_map[ours]
            if wanted not in names:
                raise InputError(f"candidates.column_map.{ours}: no column {wanted!r} in input")
            resolved[ours] = wanted
            continue
        found = next((lower[a.lower()] for a in aliases if a.lower() in lower), None)
        if found is not None:
            resolved[ours] = found
    if S.URL_ORIGINAL not in resolved:
        raise InputError(
            f"candidates: no URL column among {list(names)[:12]}; set candidates.column_map.url"
        )
    missing = [c for c in keep_columns if c not in names]
    if missing:
        raise InputError(f"candidates.keep_columns: {missing} not in input columns")
    return resolved


def iter_input(
    path: str,
    column_map: Mapping[str, str],
    keep_columns: Sequence[str],
    row_groups: Sequence[int],
    batch_rows: int,
) -> Iterator[pa.Table]:
    """Stream row groups ``row_groups`` of one file as tables of at most ``batch_rows`` rows,
    in our metadata columns (typed) plus the user's ``keep_columns``.

    The first table is always the empty one (the schema), so a caller can learn the output
    schema of a range that holds no rows.
    """
    fs, local = fsspec.core.url_to_fs(path)
    with fs.open(local, "rb") as handle:
        pfile = pq.ParquetFile(handle, pre_buffer=False, buffer_size=_READ_BUFFER_BYTES)
        names = pfile.schema_arrow.names
        resolved = resolve_columns(names, column_map, keep_columns)
        wanted = sorted(set(resolved.values()) | set(keep_columns))
        yield _our_columns(pfile.schema_arrow.empty_table().select(wanted), resolved, keep_columns)
        if not row_groups:
            return
        batches = pfile.iter_batches(batch_rows, row_groups=list(row_groups), columns=wanted)
        for batch in batches:
            yield _our_columns(pa.table(batch), resolved, keep_columns)


def _our_columns(
    table: pa.Table, resolved: Mapping[str, str], keep_columns: Sequence[str]
) -> pa.Table:
    arrays = {ours: _typed(table[src], S.COLUMNS[ours].dtype) for ours, src in resolved.items()}
    n = table.num_rows
    columns = {
        ours: arrays.get(ours, pa.nulls(n, S.COLUMNS[ours].dtype)) for ours in METADATA_COLUMNS
    }
    for extra in keep_columns:
        columns[extra] = _plain(table[extra].combine_chunks())
    return pa.table(columns)


def _plain(array: pa.Array) -> pa.Array:
    """Dictionary-encoded input columns decoded, so every batch of a file has one schema."""
    if pa.types.is_dictionary(array.type):
        return array.dictionary_decode()
    return array


def _typed(column: pa.ChunkedArray, dtype: pa.DataType) -> pa.Array:
    """Cast leniently: values that do not fit the type become null instead of failing the file."""
    array = column.combine_chunks()
    if array.type == dtype:
        return array
    if pa.types.is_string(dtype):
        return pc.cast(array, pa.string(), safe=False)
    try:
        return pc.cast(array, dtype, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        as_text = pc.cast(array, pa.string(), safe=False)
        return pa.array([_parse_number(v, dtype) for v in as_text.to_pylist()], dtype)


def _parse_number(value: str | None, dtype: pa.DataType) -> float | int | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    if number is None or number != number:  # NaN
        return None
    return int(number) if pa.types.is_integer(dtype) else number
