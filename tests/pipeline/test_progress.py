"""Progress in samples: rates and ETAs from an injected clock, and what the bars draw."""

from __future__ import annotations

import io

from manifests.report import ShardReport
from pipeline.progress import ProgressBoard, StageMeter, compact


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def report(shard: int, n_rows: int = 100, dropped: int = 10) -> ShardReport:
    return ShardReport(
        stage="filter",
        shards=(shard,),
        n_rows=n_rows,
        n_in=n_rows - 5,
        n_out=n_rows - 5 - dropped,
        dropped={"face_count:zero": dropped},
    )


def test_rate_and_eta_count_only_this_runs_work() -> None:
    clock = FakeClock(100.0)
    meter = StageMeter(clock, shards_total=5, samples_total=500)
    clock.now = 105.0
    meter.add(report(0), resumed=True)  # done before this run: its clock restarts at 105
    meter.add(report(1), resumed=True)
    assert (meter.samples_done, meter.samples_initial, meter.shards_done) == (200, 200, 2)
    assert meter.samples_per_s() is None and meter.eta_s() is None
    clock.now = 115.0
    meter.add(report(2, n_rows=50))
    assert meter.samples_per_s() == 5.0  # 50 samples in 10 s
    assert meter.shards_per_s() == 0.1
    assert meter.eta_s() == 50.0  # 250 samples left
    clock.now = 125.0
    meter.add(report(3, n_rows=150))
    assert meter.samples_per_s() == 10.0  # 200 in 20 s
    assert meter.eta_s() == 10.0  # 100 left


def test_eta_by_shards_until_the_sample_total_is_known() -> None:
    clock = FakeClock()
    meter = StageMeter(clock, shards_total=10)
    clock.now = 4.0
    meter.add(report(0))
    meter.add(report(1))
    meter.skip()  # given up on: not left to do
    assert meter.eta_s() == 14.0  # 7 shards left at 0.5 shards/s
    meter.samples_total = 1000
    assert meter.eta_s() == 16.0  # 800 samples left at 50 samples/s
    assert StageMeter(clock).eta_s() is None  # no total at all


def test_eta_is_zero_when_all_samples_are_done() -> None:
    clock = FakeClock()
    meter = StageMeter(clock, shards_total=1, samples_total=100)
    meter.add(report(0), resumed=True)
    assert meter.eta_s() == 0.0


def test_describe_reads_samples_rate_eta_and_shards() -> None:
    clock = FakeClock()
    meter = StageMeter(clock, shards_total=40_000, samples_total=50_000_000)
    clock.now = 2.0
    meter.add(report(0, n_rows=24_600, dropped=12_000))
    meter.skip()
    # 12,300 samples/s; (50,000,000 - 24,600) / 12,300 = 4063.0 s
    assert meter.describe() == (
        "24.6k/50.0M samples, 12.3k samples/s, ETA 1:07:43"
        " | shards 1/40000, kept 12.6k, dropped 12.0k, skipped 1"
    )
    assert StageMeter(clock).describe() == (
        "0/? samples, ? samples/s, ETA ? | shards 0/?, kept 0, dropped 0"
    )


def test_compact_counts() -> None:
    assert [compact(n) for n in (0, 999, 1000, 1234, 123_456, 50_000_000)] == [
        "0",
        "999",
        "1.00k",
        "1.23k",
        "123k",
        "50.0M",
    ]


def feed(board: ProgressBoard, clock: FakeClock) -> None:
    """What the runner does: plan, count already-done shards, then this run's results."""
    board.set_total("filter", 6)
    board.set_samples("filter", 600)
    board.add("filter", report(0), resumed=True)
    board.add("filter", report(1), resumed=True)
    clock.now += 10.0
    board.add("filter", report(2))
    board.skip("filter")


def test_disabled_board_draws_nothing_and_still_counts() -> None:
    out, clock = io.StringIO(), FakeClock()
    with ProgressBoard(["candidates", "filter"], enabled=False, file=out, clock=clock) as board:
        feed(board, clock)
    assert out.getvalue() == ""
    meter = board.meter("filter")
    assert (meter.shards_done, meter.skipped, meter.shards_total) == (3, 1, 6)
    assert (meter.samples_done, meter.samples_total, meter.samples_initial) == (300, 600, 200)
    assert (meter.kept, meter.dropped) == (255, 30)
    assert meter.samples_per_s() == 10.0  # the two resumed shards are not in the rate
    assert board.meter("candidates").shards_done == 0


def test_enabled_board_draws_samples_and_shards() -> None:
    out, clock = io.StringIO(), FakeClock()
    with ProgressBoard(["candidates", "filter"], enabled=True, file=out, clock=clock) as board:
        feed(board, clock)
    final = out.getvalue().split("\r")[-1]  # each redraw starts with a carriage return
    assert final.startswith("filter      50%|")
    assert final.rstrip("\n").endswith(
        "| 300/600 samples, 10.0 samples/s, ETA 00:30 | shards 3/6, kept 255, dropped 30, skipped 1"
    )
    assert "candidates 0/? samples, ? samples/s, ETA ? | shards 0/?" in out.getvalue()


def test_redraws_are_throttled() -> None:
    """Counting 1000 resumed shards in one instant draws once, not 1000 times."""
    out, clock = io.StringIO(), FakeClock()
    with ProgressBoard(["filter"], enabled=True, file=out, clock=clock) as board:
        board.set_total("filter", 1000)
        for shard in range(1000):
            board.add("filter", report(shard), resumed=True)
        assert out.getvalue().count("\r") == 2  # tqdm's first draw, then set_total's
    assert out.getvalue().count("\r") == 3  # and the final state on close
    assert out.getvalue().split("\r")[-1] == (  # no sample total yet: the bar is in shards
        "filter 100%|##########| 100k/? samples, ? samples/s, ETA 00:00"
        " | shards 1000/1000, kept 85.0k, dropped 10.0k\n"
    )
