"""Stage ``dedup``: run-wide exact (sha256) and near (perceptual hash) duplicate removal.

The only stage that looks across shards (DESIGN.md §3). ``prepare`` builds a Dask dataframe
over the kept samples of every filter shard and finds duplicate edges without loading the
run in one process: exact copies share a sha256 (a shuffle on it); near copies are found by
LSH banding — with the 64-bit pHash split into ``max_hamming + 1`` bands, two hashes within
``max_hamming`` bits agree on at least one band (pigeonhole), so only rows sharing a band value
are compared. The driver then holds only the edges: a union-find turns them into groups, and
each group keeps its largest face (then the smallest sample_id); the others get
``dedup:exact`` or ``dedup:near`` and ``dedup_group`` = the kept sample_id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from manifests import schema as S
from manifests.io import write_table_atomic
from manifests.report import ShardReport
from manifests.verdicts import read_upstream
from stages.base import DeclaredColumns, RunContext
from stages.dedup_groups import Groups, band_edges, exact_edges
from stages.names import DEDUP, DOWNLOAD, FILTER
from stages.plan import read_plan

if TYPE_CHECKING:
    from distributed import Client

NAME = DEDUP
# What to change when near-dedup has no perceptual hash to compare (the image filter writes it).
_NEEDS_PHASH = (
    "near-dedup compares perceptual hashes: add the `image` filter to filter.chain with "
    "perceptual_hash: true, or set dedup.near: false"
)
_META = pd.DataFrame(
    {
        S.SAMPLE_ID: pd.Series(dtype=str),
        S.SHARD: pd.Series(dtype="int64"),
        S.DL_SHA256: pd.Series(dtype=str),
        S.PHASH: pd.Series(dtype=str),
        S.FACE_SIZE_PX: pd.Series(dtype="float64"),
    }
)


class DedupConfig(BaseModel):
    """Section ``dedup``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exact: bool = Field(True, description="drop byte-identical copies (sha256 of the bytes)")
    near: bool = Field(True, description="drop near copies (pHash within max_hamming bits)")
    max_hamming: int = Field(
        6, ge=0, le=15,
        description="pHash bit distance still called a copy: re-encodes and small resizes stay "
        "within ~4 of 64 bits, distinct photos are typically > 20 apart (imagehash docs)",
    )  # fmt: skip
    max_band_group: int = Field(
        5000, ge=2, description="rows sharing one band value compared pairwise at most"
    )

    def build(self) -> DedupStage:
        return DedupStage(self)


class DedupStage(DeclaredColumns):
    """See the module docstring."""

    name: ClassVar[str] = NAME
    # Download: the sha256; filter: the perceptual hash, face size and the verdict.
    reads: ClassVar[tuple[str, ...]] = (DOWNLOAD, FILTER)
    upstream: ClassVar[str | None] = FILTER
    columns: ClassVar[tuple[str, ...]] = S.DEDUP_COLUMNS
    barrier: ClassVar[bool] = True

    def __init__(self, config: DedupConfig) -> None:
        self.config = config

    @property
    def needs(self) -> Mapping[str, str]:
        return {S.PHASH: _NEEDS_PHASH} if self.config.near else {}

    @property
    def resources(self) -> dict[str, float]:
        return {}

    def shards(self, ctx: RunContext) -> list[int]:
        return read_plan(ctx.layout).shard_ids

    def reset(self, ctx: RunContext) -> None:
        (ctx.layout.stage_global(NAME) / "duplicates.parquet").unlink(missing_ok=True)

    def prepare(self, ctx: RunContext, client: Client) -> None:
        """Find duplicate groups over the whole run and store them for the shard tasks."""
        import dask
        import dask.dataframe as dd

        layout = ctx.layout
        if (layout.stage_global(NAME) / "duplicates.parquet").is_file():
            return  # decided already; the runner resets it when upstream changes
        shards = [s for s in self.shards(ctx) if layout.done_marker(FILTER, s).is_file()]
        parts = [dask.delayed(_kept_rows)(ctx, self.reads, s) for s in shards] or [
            dask.delayed(_META.copy)()
        ]
        # Persisted: the edges and the group members are both read from it, manifests once.
        rows = client.persist(dd.from_delayed(parts, meta=_META, verify_meta=False))
        edges = []
        if self.config.exact:
            edges.append(rows.shuffle(on=S.DL_SHA256).map_partitions(exact_edges, meta=_EDGE_META))
        if self.config.near:
            banded = rows.map_partitions(_band_keys, self.config.max_hamming, meta=_BAND_META)
            edges.append(
                banded.shuffle(on=_BAND).map_partitions(
                    band_edges, self.config.max_hamming, self.config.max_band_group, meta=_EDGE_META
                )
            )
        found = [client.compute(e).result() for e in edges]
        pairs = pd.concat([_EDGE_META, *found], ignore_index=True)
        ids = sorted(set(pairs["a"]) | set(pairs["b"]))
        nodes = client.compute(rows[rows[S.SAMPLE_ID].isin(ids)]).result() if ids else _META
        table = Groups.from_edges(pairs, nodes).decisions()
        write_table_atomic(table, ctx.layout.stage_global(NAME) / "duplicates.parquet")

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        layout = ctx.layout
        upstream = read_upstream(layout, self.reads, shard, [S.SAMPLE_ID])
        dups = pq.read_table(
            layout.stage_global(NAME) / "duplicates.parquet", filters=[(S.SHARD, "=", shard)]
        )
        group = dict(
            zip(dups[S.SAMPLE_ID].to_pylist(), dups[S.DEDUP_GROUP].to_pylist(), strict=True)
        )
        why = dict(
            zip(dups[S.SAMPLE_ID].to_pylist(), dups[S.REJECT_REASON].to_pylist(), strict=True)
        )
        ids = upstream.rows[S.SAMPLE_ID].to_pylist()
        after = upstream.combine([why.get(i) for i in ids])
        table = pa.table(
            {
                S.SAMPLE_ID: upstream.rows[S.SAMPLE_ID],
                S.DEDUP_GROUP: pa.array([group.get(i) for i in ids], pa.string()),
                **after.columns(),
            }
        )
        write_table_atomic(table.cast(S.schema_for(self.columns)), layout.manifest(NAME, shard))
        return upstream.count(NAME, shard, after)


_BAND = "band"
_EDGE_META = pd.DataFrame({"a": pd.Series(dtype=str), "b": pd.Series(dtype=str)})
_BAND_META = pd.DataFrame(
    {_BAND: pd.Series(dtype=str), S.SAMPLE_ID: pd.Series(dtype=str), S.PHASH: pd.Series(dtype=str)}
)


def _kept_rows(ctx: RunContext, reads: tuple[str, ...], shard: int) -> pd.DataFrame:
    """The kept rows of one shard with what dedup needs (sha256, pHash, face size) from the
    manifests of ``reads``."""
    wanted = [S.SAMPLE_ID, S.DL_SHA256, S.PHASH, S.FACE_SIZE_PX]
    upstream = read_upstream(ctx.layout, reads, shard)
    present = [c for c in wanted if c in upstream.rows.column_names]
    # Filtered in Arrow: a boolean slice of the pandas frame is a view, and the columns
    # written below would then warn (SettingWithCopyWarning) on every shard.
    frame = upstream.rows.select(present).filter(pa.array(upstream.keep)).to_pandas()
    for column in (S.PHASH, S.FACE_SIZE_PX):
        if column not in frame:
            frame[column] = None
    frame[S.SHARD] = shard
    frame[S.FACE_SIZE_PX] = frame[S.FACE_SIZE_PX].astype("float64")
    return frame[list(_META.columns)]


def _band_keys(frame: pd.DataFrame, max_hamming: int) -> pd.DataFrame:
    """One row per (sample, band): the band's index and bits as a key."""
    frame = frame[frame[S.PHASH].notna()]
    n_bands = max_hamming + 1
    out = []
    for sample_id, phash in zip(frame[S.SAMPLE_ID], frame[S.PHASH], strict=True):
        bits = f"{int(phash, 16):064b}"
        for band, chunk in enumerate(np.array_split(np.arange(64), n_bands)):
            key = f"{band}:{bits[chunk[0] : chunk[-1] + 1]}"
            out.append((key, sample_id, phash))
    return pd.DataFrame(out, columns=list(_BAND_META.columns)) if out else _BAND_META
