"""Subset indexes beside the published tars: a wids index and a sample list per subset tag.

A subset is a tag on published samples (DESIGN.md §3), e.g. ``hands_subset``; its files never
copy bytes. For subset ``hands``:

- ``hands-subset.wids-index.json``: a wids index in the format of ``wids-index.json``, listing
  the tars that hold at least one tagged sample (wids addresses whole tars, so each entry is
  the tar's own, unchanged entry);
- ``hands-subset.json``: the sample list: ``sample_ids`` in corpus order, their ``positions``
  in ``wids-index.json`` (to upweight them in a sampler over the full corpus) and their
  ``subset_positions`` in the subset's wids index (to read only them).

Both are derived from the tars' Parquet indexes, so a takedown that rebuilds a tar and calls
``finalize`` again rewrites them consistently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import write_text_atomic
from stages.shard.records import tag_columns
from stages.shard.writer import OutShard, index_name

TAG_SUFFIX = "_subset"  # a subset's tag column is ``<subset>_subset`` (manifests.schema)


def subsets() -> dict[str, str]:
    """Subset name -> the tag column that selects its samples: one per tag the registered
    filters declare (``subset_tags``), so a filter that tags a new subset gets its files."""
    return {tag.removesuffix(TAG_SUFFIX): tag for tag in tag_columns()}


def subset_wids_name(subset: str) -> str:
    return f"{subset}-subset.wids-index.json"


def subset_list_name(subset: str) -> str:
    return f"{subset}-subset.json"


@dataclass
class SubsetList:
    """The tagged samples of one subset (see the module docstring)."""

    subset: str
    tag: str
    sample_ids: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    subset_positions: list[int] = field(default_factory=list)
    tars: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "subset": self.subset,
            "tag": self.tag,
            "count": len(self.sample_ids),
            "wids_index": subset_wids_name(self.subset),
            "sample_ids": self.sample_ids,
            "positions": self.positions,
            "subset_positions": self.subset_positions,
        }


def _tagged_rows(out_dir: Path, shard: OutShard, tag: str) -> list[int] | None:
    """Positions inside ``shard`` of its tagged samples; None when no row has the tag decided
    (null: the run's chain had no filter deciding it)."""
    path = out_dir / index_name(shard.name)
    if tag not in pq.read_schema(path).names:
        return None
    table = pq.read_table(path, columns=[S.OUT_INDEX, tag])
    if table.num_rows and table[tag].null_count == table.num_rows:
        return None
    pairs = zip(table[S.OUT_INDEX].to_pylist(), table[tag].to_pylist(), strict=True)
    return sorted(index for index, tagged in pairs if tagged)


def subset_list(out_dir: Path, shards: list[OutShard], subset: str) -> SubsetList | None:
    """The subset's samples over ``shards`` (in wids order); None when no index has its tag
    (the run's filter chain did not decide it)."""
    tag = subsets()[subset]
    found = SubsetList(subset, tag)
    offset, subset_offset, any_tag = 0, 0, False
    for shard in shards:
        rows = _tagged_rows(out_dir, shard, tag)
        any_tag |= rows is not None
        if rows:
            ids = pq.read_table(out_dir / index_name(shard.name), columns=[S.SAMPLE_ID])
            sample_ids = ids[S.SAMPLE_ID].to_pylist()
            found.sample_ids += [sample_ids[i] for i in rows]
            found.positions += [offset + i for i in rows]
            found.subset_positions += [subset_offset + i for i in rows]
            found.tars.append(shard.name)
            subset_offset += shard.nsamples
        offset += shard.nsamples
    return found if any_tag else None


def write_subsets(
    out_dir: Path, shards: list[OutShard], wids: dict, dataset_name: str
) -> dict[str, int]:
    """Write every subset's wids index and sample list (``wids``: the full index, whose
    entries are reused); returns the samples per subset written."""
    counts: dict[str, int] = {}
    entries = {entry["url"]: entry for entry in wids["shardlist"]}
    for subset in subsets():
        found = subset_list(out_dir, shards, subset)
        if found is None:
            (out_dir / subset_wids_name(subset)).unlink(missing_ok=True)
            (out_dir / subset_list_name(subset)).unlink(missing_ok=True)
            continue
        index = {
            **wids,
            "name": f"{dataset_name} ({subset} subset)",
            "shardlist": [entries[name] for name in found.tars],
        }
        write_text_atomic(json.dumps(index, indent=2) + "\n", out_dir / subset_wids_name(subset))
        write_text_atomic(
            json.dumps(found.as_json(), indent=2) + "\n", out_dir / subset_list_name(subset)
        )
        counts[subset] = len(found.sample_ids)
    return counts


def read_subset_list(out_dir: Path, subset: str) -> dict | None:
    """A written sample list (``as_json``), or None when the corpus has none for ``subset``."""
    path = out_dir / subset_list_name(subset)
    if not path.is_file():
        return None
    data: dict = json.loads(path.read_text(encoding="utf-8"))
    return data
