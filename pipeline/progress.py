"""Driver-side progress: one bar per stage in samples, with rate, ETA and shard counts.

Workers never draw bars (DESIGN.md §4); the runner feeds this board with the shard reports
that come back from the cluster. Each stage's counts live in a ``StageMeter``, a plain value
with an injectable clock, so rates and ETAs are computed (and tested) without a terminal;
tqdm only renders them.

A bar reads, e.g. (one line)::

    filter      42%|████▏     | 21.0M/50.0M samples, 12.3k samples/s, ETA 39:18
                | shards 16800/40000, kept 9.10M, dropped 11.9M
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

from manifests.report import ShardReport

Clock = Callable[[], float]
# Redraw at most this often (seconds): resuming a 40,000-shard stage counts its done shards
# one by one, and a terminal redraw per shard would dominate that loop.
REDRAW_S = 0.1


@dataclass
class StageMeter:
    """One stage's counts, and its rate and ETA over this run's work only.

    Shards done before this run (``add(..., resumed=True)``) are initial progress: they count
    towards done/total but not towards the rate, and the rate's clock restarts after each of
    them, so it starts when the stage's own work can start.
    """

    clock: Clock = time.monotonic
    shards_total: int | None = None
    samples_total: int | None = None
    shards_done: int = 0
    samples_done: int = 0
    shards_initial: int = 0
    samples_initial: int = 0
    kept: int = 0
    dropped: int = 0
    skipped: int = 0
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def restart(self) -> None:
        """Start the rate's clock now (the stage was just scheduled)."""
        self.started = self.clock()

    def add(self, report: ShardReport, resumed: bool = False) -> None:
        """Count one done shard: ``report.n_rows`` samples, its kept and dropped rows."""
        self.shards_done += 1
        self.samples_done += report.n_rows
        self.kept += report.n_out
        self.dropped += report.n_dropped
        if resumed:
            self.shards_initial += 1
            self.samples_initial += report.n_rows
            self.restart()

    def skip(self) -> None:
        """Count one shard given up on; its samples will never be done."""
        self.skipped += 1

    def samples_per_s(self) -> float | None:
        """Samples of this run's shards per second since the clock started; None before any."""
        return _rate(self.samples_done - self.samples_initial, self.clock() - self.started)

    def shards_per_s(self) -> float | None:
        return _rate(self.shards_done - self.shards_initial, self.clock() - self.started)

    def eta_s(self) -> float | None:
        """Seconds left at the current rate: by samples when their total is known, else by
        shards; None while the total or the rate is unknown."""
        if self.samples_total is not None:
            remaining, rate = self.samples_total - self.samples_done, self.samples_per_s()
        elif self.shards_total is not None:
            remaining = self.shards_total - self.shards_done - self.skipped
            rate = self.shards_per_s()
        else:
            return None
        if remaining <= 0:
            return 0.0
        return None if rate is None else remaining / rate

    def describe(self) -> str:
        """The bar's text after the bar itself."""
        samples_total = "?" if self.samples_total is None else compact(self.samples_total)
        rate, eta = self.samples_per_s(), self.eta_s()
        shards_total = "?" if self.shards_total is None else str(self.shards_total)
        text = (
            f"{compact(self.samples_done)}/{samples_total} samples"
            f", {'?' if rate is None else tqdm.format_sizeof(rate)} samples/s"
            f", ETA {'?' if eta is None else tqdm.format_interval(eta)}"
            f" | shards {self.shards_done}/{shards_total}"
            f", kept {compact(self.kept)}, dropped {compact(self.dropped)}"
        )
        return text + (f", skipped {self.skipped}" if self.skipped else "")

    def fraction(self) -> tuple[int, int | None]:
        """(n, total) for the bar: samples when their total is known, else shards."""
        if self.samples_total is not None:
            return self.samples_done, self.samples_total
        return self.shards_done + self.skipped, self.shards_total


def _rate(count: int, seconds: float) -> float | None:
    return count / seconds if count > 0 and seconds > 0 else None


def compact(n: int) -> str:
    """A count a person reads at a glance: exact below 1000, else 3 digits and k/M/G."""
    return str(n) if abs(n) < 1000 else tqdm.format_sizeof(n)


class ProgressBoard:
    """A meter per stage, drawn as a tqdm bar per stage when enabled.

    Counters are kept whether or not bars are drawn (``meter(stage)``).
    """

    def __init__(
        self,
        stages: Sequence[str],
        enabled: bool,
        file: TextIO | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self._meters = {stage: StageMeter(clock) for stage in stages}
        self._bars: dict[str, tqdm] = {}
        self._drawn: dict[str, float] = {}
        self._width = max((len(s) for s in stages), default=0)
        if enabled:
            for position, stage in enumerate(stages):
                self._bars[stage] = tqdm(
                    total=None,
                    desc=stage.ljust(self._width),
                    position=position,
                    file=file if file is not None else sys.stderr,
                    leave=True,
                    dynamic_ncols=True,
                    bar_format=self._format(self._meters[stage]),
                )

    def meter(self, stage: str) -> StageMeter:
        return self._meters[stage]

    def set_total(self, stage: str, total: int) -> None:
        """The stage is scheduled with ``total`` shards; its rate's clock starts now."""
        meter = self._meters[stage]
        meter.shards_total = total
        meter.restart()
        self._draw(stage, force=True)

    def set_samples(self, stage: str, total: int) -> None:
        """The samples the stage is expected to process (the candidates' rows)."""
        self._meters[stage].samples_total = total
        self._draw(stage, force=True)

    def add(self, stage: str, report: ShardReport, *, resumed: bool = False) -> None:
        """A shard of ``stage`` is done; ``resumed`` when it was done before this run
        (counted as initial progress, outside the rate)."""
        self._meters[stage].add(report, resumed)
        self._draw(stage)

    def skip(self, stage: str) -> None:
        self._meters[stage].skip()
        self._draw(stage)

    def _draw(self, stage: str, force: bool = False) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            return
        self._sync(stage, bar)
        now, last = self._clock(), self._drawn.get(stage)
        if force or last is None or now - last >= REDRAW_S:
            bar.refresh()
            self._drawn[stage] = now

    def _sync(self, stage: str, bar: tqdm) -> None:
        """Give the bar the meter's state (drawn on its next refresh or close)."""
        meter = self._meters[stage]
        bar.n, bar.total = meter.fraction()
        bar.bar_format = self._format(meter)

    @staticmethod
    def _format(meter: StageMeter) -> str:
        text = meter.describe().replace("{", "{{").replace("}", "}}")
        has_bar = meter.fraction()[1] is not None
        return ("{desc} {percentage:3.0f}%|{bar}| " if has_bar else "{desc} ") + text

    def __enter__(self) -> ProgressBoard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Draw every bar's final state (``close`` draws it) and release the terminal lines."""
        for stage, bar in self._bars.items():
            self._sync(stage, bar)
            bar.close()
