"""`laionface status` on a run of many shards, against reading every done marker.

Builds a synthetic run directory (done markers only, written through ``manifests.io.write_done``;
no manifests, no images) of ``--shards`` shards in each of the six stages, waits until the
markers have settled (as they have when a person asks for the status of a run), then times:

- baseline: every marker of every stage read with ``read_stage_reports`` and summed with
  ``merge_reports`` (one pass); ``--old-merge`` also times status as it was, folding the
  reports pairwise with ``ShardReport.merge`` (quadratic in the shards: minutes at 40,000);
- cold: ``run_status`` with no summary stored yet (it reads every marker once, stores one);
- warm: ``run_status`` again (the summary is valid: one stat and one small read per stage);
- one new marker: ``run_status`` after one more shard of one stage is marked done (a listing
  of that stage's markers revalidates the summary; only the new marker is read);
- cli: ``laionface status`` in a fresh process, imports included, and those imports alone.

Ratios are baseline / each. Target: warm status under a second at 40,000 shards.

    python bench/status.py --shards 40000
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from manifests.done_summary import SETTLE_NS
from manifests.io import read_stage_reports, write_done, write_text_atomic
from manifests.layout import RunLayout
from manifests.report import ShardReport, merge_reports
from pipeline.status import run_status
from stages import STAGES
from stages.plan import ShardPlan, write_plan

Merge = Callable[[str, list[ShardReport]], ShardReport]
ROWS_PER_SHARD = 1250  # ~50M LAION-Face candidates over 40,000 shards


def shard_report(stage: str, shard: int) -> ShardReport:
    """A plausible report: every row in the manifest, a few reasons, a few timings."""
    dropped = {f"{stage}:reason_a": shard % 7, f"{stage}:reason_b": shard % 5}
    n_in = ROWS_PER_SHARD - (shard % 11)
    return ShardReport(
        stage=stage,
        shards=(shard,),
        n_rows=ROWS_PER_SHARD,
        n_in=n_in,
        n_out=n_in - sum(dropped.values()),
        dropped=dropped,
        seconds={"read": 0.25, "work": 1.5, "write": 0.125},
        counters={"bytes": 1024.0 * shard},
    )


def build_run(root: Path, n_shards: int) -> RunLayout:
    """A run directory with every shard of every registered stage done."""
    layout = RunLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    # status only needs run.json to exist; its content is the run record's business.
    write_text_atomic("{}\n", layout.run_json)
    write_plan(
        layout, ShardPlan((("synthetic.parquet", n_shards * ROWS_PER_SHARD),), 1250, n_shards)
    )
    for stage in STAGES:
        for shard in range(n_shards):
            write_done(layout, shard_report(stage, shard))
    return layout


def read_every_marker(layout: RunLayout, merge: Merge) -> list[ShardReport]:
    """The baseline: every marker of every stage read and summed."""
    return [merge(stage, read_stage_reports(layout, stage)) for stage in STAGES]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=40_000)
    parser.add_argument("--old-merge", action="store_true", help="also time merge_reports")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        start = time.perf_counter()
        layout = build_run(Path(tmp) / "run", args.shards)
        print(f"built {args.shards} shards x {len(STAGES)} stages in "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip
        time.sleep(SETTLE_NS / 1e9 + 0.5)
        baseline = timed(lambda: read_every_marker(layout, merge_reports))
        timings = {"cold": timed(lambda: run_status(layout.root))}
        timings["warm"] = timed(lambda: run_status(layout.root))
        write_done(layout, shard_report(list(STAGES)[-1], args.shards))
        timings["one new marker"] = timed(lambda: run_status(layout.root))
        cli = f"from pipeline.cli import main; main(['status', {str(layout.root)!r}])"
        timings["cli (process)"] = timed(lambda: python(cli))
        timings["cli imports only"] = timed(lambda: python("import pipeline.cli"))
        if args.old_merge:
            old = timed(lambda: read_every_marker(layout, pairwise))
            print(f"status before the summary (pairwise merge): {old:8.3f} s")
        print(f"baseline (read every marker): {baseline:8.3f} s")
        for name, seconds in timings.items():
            print(f"status {name:<15} {seconds:8.3f} s   baseline/this {baseline / seconds:8.1f}")


def pairwise(stage: str, reports: list[ShardReport]) -> ShardReport:
    """How reports were summed before: one ``ShardReport.merge`` per shard."""
    return functools.reduce(ShardReport.merge, reports, ShardReport.empty(stage))


if __name__ == "__main__":
    main()
