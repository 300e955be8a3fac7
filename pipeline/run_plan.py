"""What a run will do per stage and shard, decided from done markers and fingerprints.

The runner follows this plan, and ``laionface run --dry-run`` prints it: per stage, how many
shards run, are re-decided and are up to date, and why (the config keys that changed since the
invocation that wrote the markers, or "upstream changed"). A barrier stage decides over all of
its shards at once, so one stale shard makes it recompute whole.

Before any of that, ``check_reads`` holds each selected stage to what it declares: every stage
it reads comes before it in pipeline order and is in the run (or done in the run directory),
and the columns it needs are provided by one of them. A violation is a ``ConfigError``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from manifests.io import DoneMarker, read_marker
from manifests.layout import RunLayout
from manifests.run_record import RunHistory, read_run_history
from pipeline.config import ConfigError
from pipeline.fingerprints import (
    Action,
    ShardFingerprint,
    StageMaterial,
    action_for,
    barrier_input,
    changes,
    why,
)
from stages import STAGES
from stages.base import Redecider, RunContext, ShardPlanMissing, Stage


@dataclass(frozen=True)
class StagePlan:
    """One stage's shards by action, with the reasons and the config changes behind them."""

    stage: str
    actions: dict[int, Action]
    expected: dict[int, ShardFingerprint]
    reasons: Counter[str] = field(default_factory=Counter)
    changed: tuple[str, ...] = ()

    def shards(self, action: Action) -> list[int]:
        return [s for s, a in sorted(self.actions.items()) if a is action]

    def summary(self) -> str:
        """``filter: 2 to run, 0 to re-decide, 0 up to date (what produced it changed: ...)``"""
        n = Counter(self.actions.values())
        line = (
            f"{self.stage}: {n[Action.RUN]} to run, {n[Action.REDECIDE]} to re-decide, "
            f"{n[Action.UP_TO_DATE]} up to date"
        )
        stale = {w: c for w, c in self.reasons.items() if w != "up to date"}
        if stale:
            line += " (" + "; ".join(f"{c} {w}" for w, c in sorted(stale.items())) + ")"
        if self.changed:
            line += "; changed: " + ", ".join(self.changed)
        return line


class RunPlanner:
    """Expected fingerprints and plans of a run's stages, computed in pipeline order.

    ``selected`` stages get the fingerprints the current config implies; a stage outside the
    selection is taken as it is on disk (its markers' fingerprints), since this run does not
    change it.
    """

    def __init__(self, stages: Sequence[Stage], selected: Sequence[str], ctx: RunContext) -> None:
        check_reads(stages, selected, ctx.layout)
        self.stages = {s.name: s for s in stages}
        self.selected = set(selected)
        self.ctx = ctx
        self.history: RunHistory = read_run_history(ctx.layout)
        self._expected: dict[str, dict[int, str | None]] = {}
        self._materials: dict[str, StageMaterial] = {}

    def material(self, name: str) -> StageMaterial:
        """The stage's material, computed once per invocation (it stats every model file)."""
        if name not in self._materials:
            self._materials[name] = StageMaterial.of(self.stages[name])
        return self._materials[name]

    def plan(self, name: str) -> StagePlan:
        """The plan of stage ``name``; its shards must be known (the candidates planned)."""
        stage = self.stages[name]
        layout = self.ctx.layout
        expected = self._expect(stage)
        markers = {s: read_marker(layout, name, s) for s in expected}
        redecides = isinstance(stage, Redecider)
        actions = {s: action_for(markers[s], fp, redecides) for s, fp in expected.items()}
        own = self.material(name).digest
        reasons = Counter(self._why(name, markers[s], a, own) for s, a in actions.items())
        if stage.barrier and any(a is not Action.UP_TO_DATE for a in actions.values()):
            actions = dict.fromkeys(actions, Action.RUN)
        self._expected[name] = {s: fp.full for s, fp in expected.items()}
        return StagePlan(name, actions, expected, reasons, self._changes(name, markers))

    def settle(self, name: str) -> None:
        """Take stage ``name``'s fingerprints from its markers on disk (once its shards have
        finished): a barrier stage downstream must fingerprint the input it really reads, in
        which a failed or skipped shard is missing."""
        self._expected[name] = self._on_disk(name)

    def _on_disk(self, name: str) -> dict[int, str | None]:
        layout = self.ctx.layout
        found = {s: read_marker(layout, name, s) for s in layout.done_shards(name)}
        return {s: m.fingerprint for s, m in found.items() if m is not None}

    def _why(self, name: str, marker: DoneMarker | None, action: Action, own: str) -> str:
        record = self.history.find(marker.run_id) if marker is not None else None
        if action is Action.RUN and record is not None and record.fingerprints.get(name) == own:
            return "upstream changed"
        return why(marker, action)

    def _expect(self, stage: Stage) -> dict[int, ShardFingerprint]:
        material = self.material(stage.name)
        shards = stage.shards(self.ctx)
        if stage.upstream is None:
            return {s: material.shard(None) for s in shards}
        upstream = self._fingerprints_of(stage.upstream)
        if stage.barrier:
            together = barrier_input({s: fp for s, fp in upstream.items() if fp is not None})
            return {s: material.shard(together) for s in shards}
        return {s: material.shard(upstream.get(s)) for s in shards}

    def _fingerprints_of(self, name: str) -> dict[int, str | None]:
        """A stage's shard fingerprints after this run: planned ones, or those on disk."""
        if name in self._expected:
            return self._expected[name]
        if name in self.selected and name in self.stages:
            self.plan(name)
            return self._expected[name]
        return self._on_disk(name)

    def _changes(self, name: str, markers: dict[int, DoneMarker | None]) -> tuple[str, ...]:
        """Config keys of this stage that differ from the record that wrote its markers."""
        run_ids = {m.run_id for m in markers.values() if m is not None and m.run_id}
        material = self.material(name)
        new = self.stages[name].config.model_dump(mode="json")
        found: list[str] = []
        for run_id in sorted(run_ids):
            record = self.history.find(run_id)
            if record is None or record.fingerprints.get(name) == material.digest:
                continue
            differ = changes(record.section(name), new, f"{name}.")
            # Same settings, other material (StageMaterial): a file it reads or the software.
            found += differ or [f"{name}: an input or model file, or the version (same settings)"]
        return tuple(dict.fromkeys(found))


def check_reads(stages: Sequence[Stage], selected: Sequence[str], layout: RunLayout) -> None:
    """Each selected stage reads only stages upstream of it (before it in ``STAGES``, the
    pipeline order), each one built for this run or done in ``layout``, and finds every column
    it ``needs`` in what they provide; otherwise a one-line ConfigError says what to fix."""
    order = list(STAGES)
    built = {s.name: s for s in stages}
    for stage in stages:
        if stage.name not in selected:
            continue
        before = order[: order.index(stage.name)]
        for read in stage.reads:
            if read not in before:
                raise ConfigError(
                    f"stage {stage.name} reads {read!r}, which is not upstream of it "
                    f"(it may read {before})"
                )
            if read not in built and not layout.done_shards(read):
                raise ConfigError(
                    f"stage {stage.name} reads {read}, which is not in this run: "
                    f"add {read} to stages (or run it first in {layout.root})"
                )
        _check_needs(stage, [built[r] for r in stage.reads if r in built])


def _check_needs(stage: Stage, sources: Sequence[Stage]) -> None:
    """Every column ``stage`` needs is provided by one of ``sources``, the stages it reads that
    this run builds (one read only from disk may hold it: its config is not known here)."""
    if len(sources) < len(stage.reads):
        return
    provided = {c for source in sources for c in source.provides}
    for column, fix in stage.needs.items():
        if column not in provided:
            names = ", ".join(s.name for s in sources)
            raise ConfigError(
                f"stage {stage.name} needs column {column!r}, which none of the stages it reads "
                f"({names}) writes under this config: {fix}"
            )


def dry_run(planner: RunPlanner, names: Sequence[str]) -> list[str]:
    """One line per stage: what ``run`` would do, without running anything."""
    lines = []
    for name in names:
        try:
            lines.append(planner.plan(name).summary())
        except ShardPlanMissing:
            lines.append(f"{name}: all shards to run (the candidates stage has not planned yet)")
    return lines
