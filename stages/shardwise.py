"""Defaults shared by the stages that work shard by shard on the candidates' plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from stages.base import DeclaredColumns, RunContext
from stages.plan import read_plan

if TYPE_CHECKING:
    from distributed import Client


class ShardwiseStage(DeclaredColumns):
    """Not a barrier: no run-wide preparation or state, the planned shards, no resources.

    A subclass sets ``name``, ``reads``, ``upstream`` and ``columns`` and implements
    ``run_shard``; one that needs a GPU overrides ``resources``.
    """

    barrier: ClassVar[bool] = False

    @property
    def resources(self) -> dict[str, float]:
        return {}

    def prepare(self, ctx: RunContext, client: Client) -> None:
        return None

    def reset(self, ctx: RunContext) -> None:
        return None

    def shards(self, ctx: RunContext) -> list[int]:
        return read_plan(ctx.layout).shard_ids
