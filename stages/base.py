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

    ``reads`` names, in pipeline order and by their ``NAME``, the stages whose manifests this
    one reads (``manifests.verdicts.read_upstream``); ``upstream`` is the last of them (None
    for the first stage), whose shards this one's wait for and whose verdict it receives.
    Planning checks that each comes before this stage and is in the run (``pipeline.run_plan``).
    ``columns`` are the registered columns of its manifest, in order (user-listed extras may
    follow); ``provides`` those of them that hold values under its config; ``needs`` maps each
    column this stage requires from the stages it reads to what to change when none provides it.
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
    reads: ClassVar[tuple[str, ...]]
    upstream: ClassVar[str | None]
    barrier: ClassVar[bool]

    @property
    def config(self) -> BaseModel:
        """The stage's config section; its fields decide the shards' fingerprints."""
        ...

    @property
    def columns(self) -> tuple[str, ...]: ...

    @property
    def provides(self) -> tuple[str, ...]: ...

    @property
    def needs(self) -> Mapping[str, str]: ...

    @property
    def resources(self) -> Mapping[str, float]: ...

    def prepare(self, ctx: RunContext, client: Client) -> None: ...

    def reset(self, ctx: RunContext) -> None:
        """Discard run-wide state derived from upstream (barrier stages), before a recompute."""
        ...

    def shards(self, ctx: RunContext) -> list[int]: ...

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport: ...


class DeclaredColumns:
    """Defaults of ``provides`` (every column) and ``needs`` (none) for a stage class that sets
    ``columns``; a stage whose config leaves a column empty, or that requires one from
    upstream, overrides them."""

    @property
    def columns(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def provides(self) -> tuple[str, ...]:
        return self.columns

    @property
    def needs(self) -> Mapping[str, str]:
        return {}


@runtime_checkable
class InputReader(Protocol):
    """A stage that reads files from outside the run (the candidates stage's LAION parquet):
    ``input_identity`` (JSON-ready: paths with sizes and modification stamps) joins its
    fingerprint, so replacing an input under the same name recomputes what was built on it."""

    def input_identity(self) -> object: ...


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
