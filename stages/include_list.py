"""Include lists (``candidates.include``): only the rows they name enter the run.

An include list is an input selection, not a rejection: rows it leaves out get no manifest
row; they are counted (``excluded_by_include``). Formats, chosen by the file suffix:

- ``.pth`` / ``.pt``: a torch-saved collection of LAION-400M SAMPLE_IDs, as LAION-Face
  publishes ``laion_face_ids.pth`` (github.com/FacePerceiver/LAION-Face): a 1-D integer
  tensor, a list or tuple of ints, or one such collection per LAION part (a list, tuple or
  dict of them; LAION-Face's ``convert_parquet.py`` indexes its file by part number). It is
  read with ``torch.load(weights_only=True, map_location="cpu")``, so no arbitrary object is
  ever unpickled: a file that would need one (a class, a function, numpy arrays) is refused
  with a one-line error naming what it asked for.
- ``.parquet``: one column of ids: integer SAMPLE_IDs, or strings (SAMPLE_IDs, sample_ids,
  url_sha1 hashes). With several columns, the first of ``SAMPLE_ID`` (or another LAION alias
  of it), ``sample_id``, ``url_sha1`` is read.
- ``.txt``: one id per line; blank lines and lines starting with ``#`` are skipped.

Each listed id is matched as what it can be: an integer (up to 18 digits) is a LAION
SAMPLE_ID, compared as an integer with the input's SAMPLE_ID (so ``42`` matches an input
``"42"`` or ``42``); 16 or 40 hex digits are a URL hash (our ``sample_id`` is the first 16 hex
of the sha1 of the normalized URL; the first 16 are compared); anything else is a string
SAMPLE_ID (e.g. LAION-5B's ``hash``), compared as text.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import write_bytes_atomic, write_text_atomic
from stages.laion_input import LAION_ALIASES, InputError

SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".parquet", ".txt")
_INT = r"^-?[0-9]{1,18}$"
_HASH = r"^([0-9a-fA-F]{16}|[0-9a-fA-F]{40})$"
_ID_COLUMNS: tuple[str, ...] = (*LAION_ALIASES[S.SOURCE_SAMPLE_ID], S.SAMPLE_ID, S.URL_SHA1)


class IncludeListError(InputError):
    """An include list cannot be read; the message (one line) says what was found."""


def check_include_path(path: Path) -> Path:
    """The config-time check: the file exists and has a supported suffix."""
    if not path.is_file():
        raise ValueError(f"include list {path} does not exist")
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"include list {path}: unsupported format (use one of {SUFFIXES})")
    return path


@dataclass(frozen=True)
class IncludeIds:
    """The ids of all include lists, ready for matching (sorted arrays: see ``_in_sorted``)."""

    sample_ids: np.ndarray  # int64, sorted, unique: LAION SAMPLE_IDs
    url_hashes: np.ndarray  # uint64, sorted, unique: first 16 hex of the URL sha1
    strings: frozenset[str]  # string SAMPLE_IDs

    @property
    def n_ids(self) -> int:
        return int(self.sample_ids.size + self.url_hashes.size + len(self.strings))

    @property
    def has_hashes(self) -> bool:
        return bool(self.url_hashes.size)

    def match_source(self, source_ids: pa.Array) -> np.ndarray:
        """Which rows' SAMPLE_ID (our string column) is listed."""
        found = np.zeros(len(source_ids), dtype=bool)
        if self.sample_ids.size:
            is_int = pc.fill_null(pc.match_substring_regex(source_ids, _INT), False)
            ints = pc.cast(pc.if_else(is_int, source_ids, "0"), pa.int64()).to_numpy()
            found |= _in_sorted(self.sample_ids, ints) & is_int.to_numpy(zero_copy_only=False)
        if self.strings:
            listed = pa.array(sorted(self.strings), pa.string())
            is_listed = pc.fill_null(pc.is_in(source_ids, value_set=listed), False)
            found |= is_listed.to_numpy(zero_copy_only=False)
        return found

    def match_hashes(self, hashes: Sequence[str | None]) -> np.ndarray:
        """Which rows' URL hash (hex sha1 of the normalized URL, or None) is listed."""
        values = np.fromiter((int(h[:16], 16) if h else 0 for h in hashes), np.uint64)
        valid = np.fromiter((h is not None for h in hashes), bool, count=len(hashes))
        return _in_sorted(self.url_hashes, values) & valid


def _in_sorted(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Membership by binary search: no hash set, so a 50M-id list costs 8 bytes per id."""
    if not sorted_ids.size or not values.size:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, values), sorted_ids.size - 1)
    return np.asarray(sorted_ids[at] == values)


def compile_include(paths: Sequence[str], out_dir: str) -> int:
    """Read every include list once (a Dask task) into ``out_dir``; the number of ids.

    ``out_dir`` then holds ``sample_ids.npy``, ``url_hashes.npy`` and ``strings.json``, which
    each ingest task memory-maps (``open_include``). Done when ``counts.json`` exists.
    """
    out = Path(out_dir)
    counts = out / "counts.json"
    if counts.is_file():
        return int(json.loads(counts.read_text(encoding="utf-8"))["n_ids"])
    ints: list[np.ndarray] = []
    texts: list[pa.Array] = []
    for path in paths:
        for part in _load(Path(path)):
            (ints if isinstance(part, np.ndarray) else texts).append(part)
    ids = _classify(ints, texts)
    for name, array in (("sample_ids", ids.sample_ids), ("url_hashes", ids.url_hashes)):
        write_bytes_atomic(_npy_bytes(array), out / f"{name}.npy")
    write_text_atomic(json.dumps(sorted(ids.strings)), out / "strings.json")
    write_text_atomic(json.dumps({"n_ids": ids.n_ids}), counts)
    return ids.n_ids


@functools.lru_cache(maxsize=4)
def open_include(out_dir: str) -> IncludeIds:
    """The compiled ids of ``compile_include``, memory-mapped; cached once per process."""
    out = Path(out_dir)
    strings = json.loads((out / "strings.json").read_text(encoding="utf-8"))
    return IncludeIds(
        sample_ids=np.load(out / "sample_ids.npy", mmap_mode="r"),
        url_hashes=np.load(out / "url_hashes.npy", mmap_mode="r"),
        strings=frozenset(strings),
    )


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _classify(ints: list[np.ndarray], texts: list[pa.Array]) -> IncludeIds:
    """Split the listed ids into SAMPLE_IDs, URL hashes and string ids (module docstring)."""
    numbers = list(ints)
    hashes: list[np.ndarray] = []
    strings: set[str] = set()
    for text in texts:
        text = pc.utf8_trim_whitespace(text.cast(pa.string()))
        is_int = pc.fill_null(pc.match_substring_regex(text, _INT), False)
        is_hash = pc.fill_null(pc.match_substring_regex(text, _HASH), False)
        numbers.append(pc.cast(text.filter(is_int), pa.int64()).to_numpy())
        prefixes = pc.utf8_slice_codeunits(text.filter(is_hash), 0, 16).to_pylist()
        hashes.append(np.array([int(h, 16) for h in prefixes], dtype=np.uint64))
        other = pc.invert(pc.or_(is_int, is_hash))
        strings.update(s for s in text.filter(other).to_pylist() if s)
    return IncludeIds(
        sample_ids=np.unique(np.concatenate([np.empty(0, np.int64), *numbers])),
        url_hashes=np.unique(np.concatenate([np.empty(0, np.uint64), *hashes])),
        strings=frozenset(strings),
    )


def _load(path: Path) -> list[np.ndarray | pa.Array]:
    """One include list as integer arrays (SAMPLE_IDs) and string arrays (to classify)."""
    suffix = path.suffix.lower()
    if suffix in (".pth", ".pt"):
        return _load_torch(path)
    if suffix == ".parquet":
        return [_load_parquet(path)]
    if suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [pa.array([s for s in lines if s.strip() and not s.lstrip().startswith("#")])]
    raise IncludeListError(f"candidates.include: {path}: unsupported format (use {SUFFIXES})")


def _load_parquet(path: Path) -> np.ndarray | pa.Array:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise IncludeListError(f"candidates.include: {path} is not parquet ({err})") from None
    names = list(schema.names)
    wanted = names if len(names) == 1 else [n for n in _ID_COLUMNS if n in names][:1]
    if not wanted:
        raise IncludeListError(
            f"candidates.include: {path} has columns {names[:8]}, none of {list(_ID_COLUMNS)}"
        )
    column = pq.read_table(path, columns=wanted)[wanted[0]].combine_chunks()
    if pa.types.is_integer(column.type):
        return column.drop_null().cast(pa.int64()).to_numpy()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.drop_null()
    raise IncludeListError(
        f"candidates.include: {path} column {wanted[0]!r} is {column.type}, not ids"
    )


def _load_torch(path: Path) -> list[np.ndarray | pa.Array]:
    try:
        import torch
    except ImportError:
        raise IncludeListError(
            f"candidates.include: reading {path} needs torch (pip install torch)"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol
            loaded = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        raise IncludeListError(
            f"candidates.include: {path} was refused: loading it would unpickle "
            f"{_refused_what(str(err))}; only tensors and lists/tuples/dicts of ids are read"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise IncludeListError(
            f"candidates.include: {path} is not a torch file ({first})"
        ) from None
    return _flatten(loaded, path, depth=0)


def _refused_what(message: str) -> str:
    """What torch's weights-only unpickler refused, from its (long) message."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return f"the global {found.group(1)}"
    operand = re.search(r"Unsupported operand (\d+)", message)
    if operand:
        return f"pickle opcode {operand.group(1)} (not a torch.save file)"
    return "objects it does not allow"


def _flatten(obj: Any, path: Path, depth: int) -> list[np.ndarray | pa.Array]:
    """The id arrays inside a loaded ``.pth`` (a tensor, a list of ids, or one per part)."""
    import torch

    if isinstance(obj, torch.Tensor):
        integer = not (
            obj.dtype.is_floating_point or obj.dtype.is_complex or obj.dtype == torch.bool
        )
        if obj.ndim != 1 or not integer:
            raise _found(path, f"a {obj.ndim}-D {obj.dtype} tensor")
        return [obj.numpy().astype(np.int64)]
    parts: list[Any]
    if isinstance(obj, dict):
        parts = list(obj.values())
        if depth >= 1 or not all(isinstance(v, (torch.Tensor, list, tuple)) for v in parts):
            raise _found(path, f"a dict of {_kinds(parts)}")
    elif isinstance(obj, (list, tuple)):
        parts = obj if isinstance(obj, list) else list(obj)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in parts):
            return [np.asarray(parts, dtype=np.int64)]
        if all(isinstance(v, str) for v in parts):
            return [pa.array(parts, pa.string())]
        if depth >= 1:
            raise _found(path, f"a {type(obj).__name__} of {_kinds(parts)} inside a collection")
    else:
        raise _found(path, f"a {type(obj).__name__}")
    return [array for part in parts for array in _flatten(part, path, depth + 1)]


def _kinds(values: Sequence[object]) -> str:
    return "/".join(sorted({type(v).__name__ for v in values})) or "nothing"


def _found(path: Path, what: str) -> IncludeListError:
    return IncludeListError(
        f"candidates.include: {path} holds {what}; expected a 1-D integer tensor or a list of "
        "SAMPLE_IDs (or one of those per part)"
    )
