"""Purging taken-down samples from the run's caches of their bytes.

- ``RUN/download/<shard>.tar``: img2dataset's members ``<dl_key>.jpg/.txt/.json`` of a sample
  (the image, its alt text, its metadata), located by the download manifest's ``dl_key``. Only
  a tar that holds one is rewritten (``stages.download_tar.remove_samples``: the other members
  keep their bytes and order).
- ``RUN/shard/_global/parts/<shard>.parquet``: per publishable sample, the published ``json``
  member (URL, alt text, boxes, scores) and the caption. A part file lists what may be
  published, it is not a manifest, so a taken-down row leaves it.
- Scratch: ``RUN/<stage>/_tmp/<shard>/`` of the shards concerned (a killed task's partial tar,
  img2dataset's URL list) and stale temp files of tar writes in ``RUN/download`` and
  ``RUN/shards``. Every rerun discards them anyway, so they are removed whole, not inspected;
  that is only safe while no run is in flight, as is a takedown itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import write_table_atomic
from manifests.layout import RunLayout
from stages.download_tar import remove_samples
from stages.names import DOWNLOAD
from stages.shard.writer import part_path, publish_dir

Places = dict[str, set[str]]  # sample_id -> the places (paths under RUN) it was removed from


def place(layout: RunLayout, path: Path) -> str:
    """A place as a takedown names it: the path under RUN."""
    return path.relative_to(layout.root).as_posix()


def add_places(into: Places, more: Mapping[str, set[str]]) -> None:
    for sample_id, where in more.items():
        into.setdefault(sample_id, set()).update(where)


def _download_keys(layout: RunLayout, shard: int, sample_ids: frozenset[str]) -> dict[str, str]:
    """The dl_key of each of ``sample_ids`` that the shard's download manifest has one for."""
    path = layout.manifest(DOWNLOAD, shard)
    if not path.is_file():
        return {}
    table = pq.read_table(path, columns=[S.SAMPLE_ID, S.DL_KEY])
    pairs = zip(table[S.SAMPLE_ID].to_pylist(), table[S.DL_KEY].to_pylist(), strict=True)
    return {sid: key for sid, key in pairs if sid in sample_ids and key is not None}


def purge_download_shard(layout: RunLayout, shard: int, sample_ids: frozenset[str]) -> Places:
    """Remove the members of ``sample_ids`` from the shard's download tar.

    Must run before the retraction clears their ``dl_key``s, which are what locates them.
    """
    keys = _download_keys(layout, shard, sample_ids)
    tar = layout.shard_file(DOWNLOAD, shard, ".tar")
    if not keys or not tar.is_file():
        return {}
    removed = remove_samples(tar, set(keys.values()))
    return {sid: {place(layout, tar)} for sid, key in keys.items() if key in removed}


def purge_part(layout: RunLayout, shard: int, sample_ids: frozenset[str]) -> Places:
    """Drop the rows of ``sample_ids`` from the shard stage's part file of ``shard``."""
    path = part_path(layout, shard)
    if not path.is_file():
        return {}
    table = pq.read_table(path)
    mask = pc.is_in(table[S.SAMPLE_ID], value_set=pa.array(sorted(sample_ids), pa.string()))
    gone = pc.filter(table[S.SAMPLE_ID], mask).to_pylist()
    if gone:
        write_table_atomic(table.filter(pc.invert(mask)), path)
    return {sid: {place(layout, path)} for sid in gone}


def discard_scratch(layout: RunLayout, shards: Iterable[int]) -> list[str]:
    """Remove the scratch space of ``shards`` in every stage, and stale temp files of tar
    writes; returns what was removed (paths under RUN)."""
    found: list[Path] = []
    for shard in sorted(set(shards)):
        found += sorted(layout.root.glob(f"*/_tmp/{shard:05d}"))
    for folder in (layout.stage_dir(DOWNLOAD), publish_dir(layout)):
        # manifests.io and stages.shard.writer name temp files ".<name>.<hex>.tmp".
        found += sorted(folder.glob(".*.tar.*.tmp"))
    for path in found:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return [place(layout, p) for p in found]
