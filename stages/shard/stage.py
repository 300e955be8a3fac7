"""Stage ``shard``: the published corpus, WebDataset tars in ``RUN/shards/`` (DESIGN.md §3).

A barrier stage: output tars are cut across input shards, so all the work that touches
images happens in ``prepare`` on the cluster (one task per input shard to gather the
publishable samples, then one task per output tar to write it), and ``run_shard`` writes the
per-input-shard manifest (sample_id, out_tar, out_index, takedown, verdict), which keeps each
sample's history a join. A finished publication is recorded in
``RUN/shard/_global/published.json``; ``prepare`` then does nothing, so reruns resume and a
takedown is never undone. Delete ``RUN/shard`` and ``RUN/shards`` to publish again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from manifests import schema as S
from manifests.io import write_table_atomic
from manifests.layout import RunLayout
from manifests.report import ShardReport
from stages.base import DeclaredColumns, RunContext
from stages.plan import read_plan
from stages.shard.plan import (
    NAME,
    SHARD_COLUMNS,
    SOURCE_STAGES,
    UPSTREAM,
    assignment_path,
    gather_part,
    plan_assignment,
    read_assignment,
    read_takedown_register,
    shard_manifest,
)
from stages.shard.publish import finalize, published_path, read_published
from stages.shard.records import ImageSettings
from stages.shard.writer import OutShard, part_path, write_output_tar

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


class ShardConfig(BaseModel):
    """Section ``shard``: how the final tars are cut and what their image member holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset_name: str = Field(
        default="LAION-Face-T2I", description="title of the card and wids index"
    )
    samples_per_shard: int = Field(default=10_000, ge=1, description="samples per tar, at most")
    # 1 GB: large enough for sequential reads, small enough to shard over many workers
    # (webdataset's ShardWriter default is 3e9 bytes).
    max_shard_bytes: int = Field(default=1_000_000_000, ge=1, description="bytes per tar, at most")
    reencode: bool = Field(default=False, description="re-encode images as JPEG instead of copying")
    max_side_px: int | None = Field(
        default=None, ge=16, description="with reencode: downscale to fit"
    )
    jpeg_quality: int = Field(default=95, ge=1, le=100, description="with reencode: JPEG quality")

    def build(self) -> ShardStage:
        return ShardStage(self)

    @property
    def image(self) -> ImageSettings:
        return ImageSettings(self.reencode, self.max_side_px, self.jpeg_quality)


class ShardStage(DeclaredColumns):
    """See the module docstring."""

    name: ClassVar[str] = NAME
    reads: ClassVar[tuple[str, ...]] = SOURCE_STAGES
    upstream: ClassVar[str | None] = UPSTREAM
    columns: ClassVar[tuple[str, ...]] = SHARD_COLUMNS
    barrier: ClassVar[bool] = True

    def __init__(self, config: ShardConfig) -> None:
        self.config = config

    @property
    def resources(self) -> dict[str, float]:
        return {}

    def reset(self, ctx: RunContext) -> None:
        """Unpublish (the takedown register stays and is applied again on republishing)."""
        published_path(ctx.layout).unlink(missing_ok=True)

    def prepare(self, ctx: RunContext, client: Client) -> None:
        """Gather, plan and write every output tar, then the indexes and the card."""
        layout = ctx.layout
        if read_published(layout) is not None:
            return
        shards = [s for s in self.shards(ctx) if layout.done_marker(UPSTREAM, s).is_file()]
        if len(shards) < len(self.shards(ctx)):
            log.warning("publishing %d input shards: the others have no %s", len(shards), UPSTREAM)
        client.gather(client.map(gather_part, shards, layout=layout, settings=self.config.image))
        parts = pa.concat_tables(
            pq.read_table(part_path(layout, s), columns=[S.SAMPLE_ID, S.SHARD, S.OUT_SIZE_BYTES])
            for s in shards
        )
        assignment = plan_assignment(
            parts,
            self.config.samples_per_shard,
            self.config.max_shard_bytes,
            read_takedown_register(layout),
        )
        write_table_atomic(assignment, assignment_path(layout))
        names = sorted(set(assignment[S.OUT_TAR].to_pylist()))
        futures = client.map(
            _write_one,
            names,
            [assignment.filter(pc.equal(assignment[S.OUT_TAR], n)) for n in names],
            layout=layout,
            settings=self.config.image,
        )
        published: list[OutShard] = client.gather(futures)
        finalize(layout, published, self.config.dataset_name)
        log.info("published %d tars in %s", len(published), layout.root / "shards")

    def shards(self, ctx: RunContext) -> list[int]:
        return read_plan(ctx.layout).shard_ids

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        layout = ctx.layout
        table, report = shard_manifest(
            layout, shard, read_assignment(layout), read_takedown_register(layout)
        )
        write_table_atomic(table, layout.manifest(NAME, shard))
        return report


def _write_one(name: str, rows: pa.Table, layout: RunLayout, settings: ImageSettings) -> OutShard:
    return write_output_tar(layout, name, rows, settings)
