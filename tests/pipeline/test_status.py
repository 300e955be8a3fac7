"""`status` on a synthetic run: exact counts, and a done-marker summary that is never stale."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from manifests.done_summary import _load, stage_summary, summary_path
from manifests.io import read_stage_reports, write_done, write_text_atomic
from manifests.layout import RunLayout
from manifests.report import ShardReport, merge_reports
from pipeline.cli import main
from pipeline.status import run_status
from stages.plan import ShardPlan, write_plan

STAGES3 = ("candidates", "download", "filter")
HOUR_NS = 3600 * 10**9


def report(stage: str, shard: int, n_out: int = 6) -> ShardReport:
    """10 rows, 8 reaching the stage, ``n_out`` kept, the rest dropped for one reason."""
    return ShardReport(
        stage=stage,
        shards=(shard,),
        n_rows=10,
        n_in=8,
        n_out=n_out,
        dropped={f"{stage}:why": 8 - n_out},
        seconds={"work": 0.5},
    )


@pytest.fixture
def run(tmp_path: Path) -> RunLayout:
    """30 planned shards; candidates and download all done, filter 20 of them."""
    layout = RunLayout(tmp_path / "run")
    write_text_atomic("{}\n", layout.run_json)
    write_plan(layout, ShardPlan((("in.parquet", 300),), 10, 30))
    for stage, n_done in zip(STAGES3, (30, 30, 20), strict=True):
        for shard in range(n_done):
            write_done(layout, report(stage, shard))
    return layout


def age(layout: RunLayout, stage: str) -> None:
    """Make every marker of ``stage`` and its directory an hour old (settled)."""
    done_dir = layout.done_marker(stage, 0).parent
    old = time.time_ns() - HOUR_NS
    for path in [*done_dir.iterdir(), done_dir]:
        os.utime(path, ns=(old, old))


def stored_shards(layout: RunLayout, stage: str) -> int:
    """How many markers the stored summary covers (0 when none is stored)."""
    stored = _load(layout, stage, with_markers=True)
    return 0 if stored is None else len(stored.markers)


def test_status_counts_shards_rows_and_samples(run: RunLayout) -> None:
    by_stage = {s.stage: s for s in run_status(run.root)}
    assert list(by_stage) == list(STAGES3)
    filt = by_stage["filter"]
    assert (filt.planned, filt.done, filt.failed, filt.missing) == (30, 20, 0, 10)
    assert (filt.report.n_in, filt.report.n_out) == (160, 120)
    assert filt.report.dropped == {"filter:why": 40}
    assert (filt.samples_done, filt.samples_planned) == (200, 300)
    down = by_stage["download"]
    assert (down.done, down.missing, down.samples_done) == (30, 0, 300)
    assert down.report.seconds == {"work": 15.0}


def test_samples_planned_is_unknown_until_candidates_are_done(run: RunLayout) -> None:
    run.done_marker("candidates", 7).unlink()
    assert {s.samples_planned for s in run_status(run.root)} == {None}


def test_status_line(run: RunLayout, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(run.root)]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "filter      shards 20/30 done, 0 failed, 10 missing | samples 200/300"
        " | rows in 160, kept 120, dropped 40",
        "          40  filter:why",
    ]


def test_summary_equals_reading_every_marker(run: RunLayout) -> None:
    for stage in STAGES3:
        done, merged = stage_summary(run, stage)
        assert merged == merge_reports(stage, read_stage_reports(run, stage))
        assert done == frozenset(run.done_shards(stage))


def test_merge_reports_in_one_pass_equals_pairwise_merging() -> None:
    parts = [
        ShardReport("dedup", (3,), 5, 4, 3, {"dedup:exact": 1}, {"a": 0.25}, {"n": 1.0}, ("e3",)),
        ShardReport("dedup", (1,), 7, 6, 4, {"dedup:near": 2}, {"a": 0.5}, {}, ("e1",)),
        ShardReport("dedup", (2,), 0, 0, 0),
    ]
    pairwise = ShardReport.empty("dedup")
    for part in parts:
        pairwise = pairwise.merge(part)
    assert merge_reports("dedup", parts) == pairwise
    assert pairwise.shards == (1, 2, 3)
    assert pairwise.errors == ("e3", "e1")
    assert merge_reports("dedup", []) == ShardReport.empty("dedup")
    with pytest.raises(ValueError, match="cannot merge reports of 'filter' and 'dedup'"):
        merge_reports("filter", parts)


def test_settled_summary_is_stored_and_reused(run: RunLayout) -> None:
    assert stage_summary(run, "filter")[1].n_out == 120
    assert stored_shards(run, "filter") == 0  # markers written just now are not stored yet
    age(run, "filter")
    assert stage_summary(run, "filter")[1].n_out == 120
    stored = _load(run, "filter", with_markers=True)
    assert stored is not None and len(stored.markers) == 20 and stored.dir_key is not None
    stamp = summary_path(run, "filter").stat().st_mtime_ns
    done, merged = stage_summary(run, "filter")  # the directory did not change: reused as is
    assert (len(done), merged.n_out, merged.dropped) == (20, 120, {"filter:why": 40})
    assert summary_path(run, "filter").stat().st_mtime_ns == stamp


def test_summary_sees_an_added_marker(run: RunLayout) -> None:
    age(run, "filter")
    stage_summary(run, "filter")
    write_done(run, report("filter", 25, n_out=2))
    done, merged = stage_summary(run, "filter")
    assert (len(done), 25 in done) == (21, True)
    assert (merged.n_rows, merged.n_in, merged.n_out) == (210, 168, 122)
    assert merged.dropped == {"filter:why": 46}
    assert stored_shards(run, "filter") == 20  # the new one is stored once it has settled
    age(run, "filter")
    assert stage_summary(run, "filter")[1].n_out == 122
    assert stored_shards(run, "filter") == 21


def test_summary_sees_a_deleted_marker(run: RunLayout) -> None:
    age(run, "filter")
    stage_summary(run, "filter")
    run.done_marker("filter", 4).unlink()
    done, merged = stage_summary(run, "filter")
    assert (len(done), 4 in done) == (19, False)
    assert (merged.n_rows, merged.n_in, merged.n_out) == (190, 152, 114)
    assert merged.shards == tuple(s for s in range(20) if s != 4)


def test_summary_sees_a_rewritten_marker(run: RunLayout) -> None:
    age(run, "filter")
    stage_summary(run, "filter")
    write_done(run, report("filter", 5, n_out=7))
    done, merged = stage_summary(run, "filter")
    assert len(done) == 20
    assert (merged.n_in, merged.n_out, merged.dropped) == (160, 121, {"filter:why": 39})


def test_summary_sees_a_rewrite_of_equal_size_and_mtime(run: RunLayout) -> None:
    """The same size and mtime (a timestamp tick shared with the old file): the inode tells."""
    age(run, "filter")
    stage_summary(run, "filter")
    marker = run.done_marker("filter", 5)
    before = marker.stat()
    write_done(run, report("filter", 5, n_out=5))
    os.utime(marker, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert marker.stat().st_size == before.st_size
    merged = stage_summary(run, "filter")[1]
    assert (merged.n_out, merged.dropped) == (119, {"filter:why": 41})


def test_summary_of_a_stage_without_markers(run: RunLayout) -> None:
    assert stage_summary(run, "dedup") == (frozenset(), ShardReport.empty("dedup"))
    assert not run.stage_dir("dedup").exists()  # and no directory was made for it


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_summary_is_rebuilt(run: RunLayout, damage: str) -> None:
    age(run, "download")
    stage_summary(run, "download")
    path = summary_path(run, "download")
    body = path.read_bytes()
    path.write_bytes(b"{not json" if damage == "garbage" else body[:-8])
    write_done(run, report("download", 30, n_out=1))  # the directory changed: summary reread
    done, merged = stage_summary(run, "download")
    assert (len(done), merged.n_out) == (31, 181)
