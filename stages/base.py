"""The ``Stage`` extension point: one module per stage, each implementing this protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from manifests.layout import RunLayout
from manifests.report import ShardReport

if TYPE_CHECKING:
    from distributed import Client


@dataclass(frozen=True)
class RunContext:
    """What every shard task knows about the run; small and picklable (it travels to workers)."""

    run_dir: Path

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)


@runtime_checkable
class Stage(Protocol):
    """One step of the pipeline, run shard by shard.

    ``upstream`` names the stage whose manifest this one reads (None for the first stage);
    ``columns`` are the registered columns of its manifest, in order (user-listed extras may
    follow).
    A ``barrier`` stage needs every upstream shard done first: the runner then calls
    ``prepare`` on the driver, which may use the cluster for run-wide work (planning the shards,
    global dedup). ``resources`` is the Dask resource annotation of its tasks (e.g. a GPU).
    ``config`` is the stage's config section: its fields (by role, see
    ``manifests.fingerprint``) and the upstream shards' fingerprints decide each shard's
    fingerprint. A shard whose marker carries another fingerprint is recomputed; a stale
    barrier stage has all its markers deleted and ``reset`` called first. ``run_shard`` must
    be idempotent: the runner discards the shard's scratch space before each attempt and
    writes the done marker after it returns.
    """

    name: ClassVar[str]
    upstream: ClassVar[str | None]
    barrier: ClassVar[bool]

    @property
    def config(self) -> BaseModel:
        """The stage's config section; its fields decide the shards' fingerprints."""
        ...

    @property
    def columns(self) -> tuple[str, ...]: ...

    @property
    def resources(self) -> Mapping[str, float]: ...

    def prepare(self, ctx: RunContext, client: Client) -> None: ...

    def reset(self, ctx: RunContext) -> None:
        """Discard run-wide state derived from upstream (barrier stages), before a recompute."""
        ...

    def shards(self, ctx: RunContext) -> list[int]: ...

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport: ...


@runtime_checkable
class Redecider(Protocol):
    """A stage whose thresholds can be re-applied to its stored scores without a model.

    ``redecide_shard`` rewrites the shard's verdict columns from its own manifest under the
    current thresholds; where that is not enough (a row would now reach a filter that never
    scored it), it recomputes the shard. The runner calls it when only thresholds changed.
    """

    def redecide_shard(self, shard: int, ctx: RunContext) -> ShardReport: ...


class ShardPlanMissing(FileNotFoundError):
    """A stage was asked for its shards before the candidates stage planned them."""
