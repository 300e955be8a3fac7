"""The shard plan: written once by the candidates stage, read by every later stage."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from manifests.io import write_text_atomic
from manifests.layout import RunLayout
from stages.base import ShardPlanMissing
from stages.names import CANDIDATES

PLANNING_STAGE = CANDIDATES


@dataclass(frozen=True)
class ShardPlan:
    """Input files, their row counts and how many shards the rows are bucketed into.

    ``ingest`` is the key of the candidates stage's rows files (``RUN/candidates/_global/
    ingest-<key>/``): it changes with what the rows depend on, never with the shards.
    """

    inputs: tuple[tuple[str, int], ...]
    shard_size: int
    n_shards: int
    ingest: str = ""

    @property
    def n_rows(self) -> int:
        return sum(n for _, n in self.inputs)

    @property
    def shard_ids(self) -> list[int]:
        return list(range(self.n_shards))


def plan_path(layout: RunLayout) -> Path:
    """Where the run's shard plan lives (written by the candidates stage)."""
    return layout.stage_global(PLANNING_STAGE) / "plan.json"


def write_plan(layout: RunLayout, plan: ShardPlan) -> None:
    write_text_atomic(json.dumps(asdict(plan), indent=2), plan_path(layout))


def read_plan(layout: RunLayout) -> ShardPlan:
    path = plan_path(layout)
    if not path.is_file():
        raise ShardPlanMissing(f"{path} is missing: run the candidates stage first")
    data = json.loads(path.read_text(encoding="utf-8"))
    inputs = tuple((str(p), int(n)) for p, n in data["inputs"])
    return ShardPlan(
        inputs=inputs,
        shard_size=int(data["shard_size"]),
        n_shards=int(data["n_shards"]),
        ingest=str(data.get("ingest", "")),
    )
