"""All six stages end to end at N and at factor x N generated photos, on a loopback server.

The photos (``bench/scale_photos.py``) are distinct variants of public-domain photos: ~68%
faces, ~30% non-faces, ~2% broken URLs (404s, undecodable bytes). Both runs use the same
config (a 2-worker LocalCluster, one thread each, shards of N/8 rows at both sizes, so the
larger run has factor x as many shards of the same size), each its own fresh cluster.

Printed per run and stage: samples/s from the shard reports (rows over the summed task
seconds, times the worker slots: the stage's rate with every slot on it) and the stage's span
(first shard start to last shard end, from the shard logs; stages overlap, so spans do too);
peak RSS of the driver and of the worker processes (every descendant of the driver, sampled
from the driver with psutil), end-to-end samples/s. Then the slowest stage of the larger run
is rerun alone on the same run directory (its done markers and manifests removed) and timed.

Targets: wall time factor x N / N <= 1.1 x factor (11 for 10x); driver and worker peak RSS
ratios <= 1.15; end to end >= 0.8 x the slowest stage alone (stages overlap per shard).
Rendering the photos happens before anything is timed.

    python bench/scale.py                 # N = 2000, 10x
    python bench/scale.py --quick         # N = 100, 3x: a smoke run
    python bench/scale.py --pools         # candidates+download on a worker pool of their own
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scale_photos, from anywhere

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from scale_photos import photo_spec, render_all, serve_directory

from manifests.io import read_stage_reports
from manifests.layout import RunLayout
from pipeline.config import RunConfigBase, validate_config
from pipeline.demo import server_peer
from pipeline.runner import RunResult, run_pipeline

STAGES = ["candidates", "download", "filter", "dedup", "caption", "shard"]
IO_STAGES = ["candidates", "download"]  # --pools: on a worker of their own
N_WORKERS, THREADS = 2, 1
SAMPLE_EVERY_S = 0.1  # RSS sampling period: short against any stage's shard tasks
MiB = 2**20
# Targets from issue 9's Evidence section.
TIME_SLACK, RSS_RATIO_MAX, OVERLAP_MIN = 1.1, 1.15, 0.8


@dataclass(frozen=True)
class RssPeaks:
    """Peak resident memory seen while sampling, in bytes."""

    driver: int
    driver_start: int  # the driver's RSS as the run starts: both runs share one driver process
    worker: int  # the largest single descendant process (a worker, or its download child)
    worker_kind: str  # which kind of process that was
    workers_total: int  # the largest sum over all descendants at one sampling instant


def _kind(process: psutil.Process) -> str:
    """A short name for a descendant of the driver: what its memory belongs to."""
    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    if "img2dataset_shard" in cmdline:
        return "img2dataset subprocess"
    return "dask worker" if "multiprocessing" in cmdline else process.name()


class RssSampler:
    """Samples the driver's RSS and its descendants' (the cluster) in a daemon thread."""

    def __init__(self, exclude: set[int]) -> None:
        self._me = psutil.Process()
        self._exclude = exclude | {os.getpid()}  # the photo server is not the pipeline's
        self._stop = threading.Event()
        self._driver = self._worker = self._total = 0
        self._driver_start = self._me.memory_info().rss
        self._worker_kind = "-"
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        self._driver = max(self._driver, self._me.memory_info().rss)
        total = 0
        for child in self._me.children(recursive=True):
            if child.pid in self._exclude:
                continue
            try:
                rss = child.memory_info().rss
            except psutil.Error:  # it ended between listing and reading: nothing to count
                continue
            if rss > self._worker:
                self._worker, self._worker_kind = rss, _kind(child)
            total += rss
        self._total = max(self._total, total)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self._sample()

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self._sample()

    def peaks(self) -> RssPeaks:
        return RssPeaks(
            self._driver, self._driver_start, self._worker, self._worker_kind, self._total
        )


@dataclass(frozen=True)
class StageStats:
    """One stage of one run, from its shard reports and shard logs."""

    stage: str
    rows: int
    shards: int
    task_s: float  # summed seconds["total"] over the stage's shard tasks
    span_s: float | None  # first shard start to last shard end (None: no logs)

    @property
    def rate(self) -> float:
        """Samples/s with every worker slot on this stage (what it would do alone)."""
        return self.rows / self.task_s * N_WORKERS * THREADS if self.task_s > 0 else float("inf")


@dataclass
class ScaleRun:
    """One end-to-end run at one size."""

    samples: int
    wall_s: float
    peaks: RssPeaks
    config: RunConfigBase
    result: RunResult
    stages: list[StageStats] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.samples / self.wall_s

    def slowest(self) -> StageStats:
        return min(self.stages, key=lambda s: s.rate)


def _log_time(line: str) -> float:
    """Epoch seconds of a shard-log line (pipeline.shard_task's format: asctime first)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_span(layout: RunLayout, stage: str, shards: list[int]) -> float | None:
    """First ``start`` to last ``done`` over the stage's shard logs, in seconds."""
    starts, ends = [], []
    for shard in shards:
        path = layout.shard_log(stage, shard)
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        starts += [_log_time(x) for x in lines if ": start " in x][:1]
        ends += [_log_time(x) for x in lines if ": done: " in x][-1:]
    return max(ends) - min(starts) if starts and ends else None


def stage_stats(layout: RunLayout, stage: str) -> StageStats:
    reports = read_stage_reports(layout, stage)
    shards = [s for r in reports for s in r.shards]
    return StageStats(
        stage=stage,
        rows=sum(r.n_rows for r in reports),
        shards=len(shards),
        task_s=sum(r.seconds.get("total", 0.0) for r in reports),
        span_s=log_span(layout, stage, shards),
    )


def write_candidates(base: str, sizes: list[tuple[int, int]], seed: int, path: Path) -> Path:
    """Candidate rows in the LAION-5B layout for indices 0..len(sizes)-1."""
    specs = [photo_spec(seed, i) for i in range(len(sizes))]
    n = len(specs)
    table = pa.table(
        {
            "URL": [f"{base}/{spec.name}" for spec in specs],
            "TEXT": [spec.alt_text for spec in specs],
            "WIDTH": pa.array([w for w, _ in sizes], pa.int64()),
            "HEIGHT": pa.array([h for _, h in sizes], pa.int64()),
            # Plausible LAION-5B metadata; no prefilter is configured, so they decide nothing.
            "similarity": pa.array([0.32] * n, pa.float64()),
            "punsafe": pa.array([0.01] * n, pa.float64()),
            "pwatermark": pa.array([0.05] * n, pa.float64()),
        }
    )
    pq.write_table(table, path)
    return path


def cluster_section(pools: bool) -> dict[str, object]:
    """N_WORKERS workers running every stage, or those plus a download pool of its own."""
    flat: dict[str, object] = {
        "n_workers": N_WORKERS,
        "threads_per_worker": THREADS,
        "dashboard_address": None,
    }
    if not pools:
        return flat
    rest = [s for s in STAGES if s not in IO_STAGES]
    return {
        "dashboard_address": None,
        "pools": {
            "io": {"stages": IO_STAGES, "workers": 1, "threads_per_worker": THREADS},
            "work": {"stages": rest, "workers": N_WORKERS, "threads_per_worker": THREADS},
        },
    }


def pipeline_config(
    run_dir: Path, src: Path, shard_size: int, base: str, pools: bool
) -> RunConfigBase:
    return validate_config(
        {
            "run_dir": str(run_dir),
            "stages": STAGES,
            "cluster": cluster_section(pools),
            "runner": {"progress": False, "retries": 1, "on_shard_error": "fail"},
            "candidates": {"input": [str(src)], "shard_size": shard_size,
                           "allow_private_hosts": True, "resolve_hosts": False},
            "download": {"image_size": 512, "resize_mode": "keep_ratio", "timeout_s": 10,
                         "thread_count": 16, "allow_addresses": [server_peer(base)],
                         # one loopback host: its per-host cap would measure politeness
                         "politeness": {"max_per_host": 16}},
            "filter": {"batch_size": 8},
            "caption": {"captioner": {"type": "attributes"}},
            "shard": {"samples_per_shard": shard_size},
        }
    )  # fmt: skip


def run_scale(
    work: Path,
    base: str,
    sizes: list[tuple[int, int]],
    args: argparse.Namespace,
    shard_size: int,
    server: int,
) -> ScaleRun:
    """Run all six stages on the first ``len(sizes)`` photos; wall time and RSS peaks."""
    samples = len(sizes)
    src = write_candidates(base, sizes, args.seed, work / f"candidates-{samples}.parquet")
    config = pipeline_config(work / f"run-{samples}", src, shard_size, base, args.pools)
    sampler = RssSampler(exclude={server})
    with sampler.running():
        t0 = time.perf_counter()
        result = run_pipeline(config)
        wall_s = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"run at {samples} skipped shards: {result.skipped}")
    layout = RunLayout(config.run_dir)
    stats = [stage_stats(layout, stage) for stage in STAGES]
    return ScaleRun(samples, wall_s, sampler.peaks(), config, result, stats)


def time_stage_alone(config: RunConfigBase, stage: str) -> float:
    """Wall seconds of ``run_pipeline(config, [stage])`` after discarding that stage's done
    markers and manifests, so every one of its shards is recomputed (cluster start included,
    as in the end-to-end run)."""
    layout = RunLayout(config.run_dir)
    for shard in layout.done_shards(stage):
        layout.done_marker(stage, shard).unlink()
        layout.manifest(stage, shard).unlink(missing_ok=True)
    t0 = time.perf_counter()
    result = run_pipeline(config, [stage])
    seconds = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"{stage} alone skipped shards: {result.skipped}")
    return seconds


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / MiB:.0f} MiB"


def print_run(run: ScaleRun) -> None:
    """The run's per-stage table, its funnel and its RSS peaks."""
    shards = run.stages[0].shards
    print(f"\n== {run.samples} samples, {shards} shards: {run.wall_s:.1f} s wall, "
          f"{run.rate:.1f} samples/s end to end")  # fmt: skip
    print(f"{'stage':<11}{'rows':>7}{'shards':>8}{'task s':>9}{'samples/s':>11}{'span s':>8}")
    for s in run.stages:
        span = f"{s.span_s:.1f}" if s.span_s is not None else "-"
        print(f"{s.stage:<11}{s.rows:>7}{s.shards:>8}{s.task_s:>9.1f}{s.rate:>11.1f}{span:>8}")
    reports = run.result.reports
    dedup = reports["dedup"]
    share = dedup.n_dropped / dedup.n_in if dedup.n_in else 0.0
    reasons = dict(sorted(dedup.dropped.items()))
    print(f"funnel: downloaded {reports['download'].n_out}, kept by filter "
          f"{reports['filter'].n_out}, dedup dropped {dedup.n_dropped} ({share:.1%} of its "
          f"input: {reasons}), published {reports['shard'].n_out}")  # fmt: skip
    p = run.peaks
    print(f"peak RSS: driver {_mib(p.driver)} (at start {_mib(p.driver_start)}), largest "
          f"worker process {_mib(p.worker)} ({p.worker_kind}), all worker processes "
          f"{_mib(p.workers_total)}")  # fmt: skip


def _verdict(name: str, value: float, target: str, ok: bool) -> None:
    print(f"{name:<34}{value:>8.2f}   (target {target:<8}) {'PASS' if ok else 'FAIL'}")


def print_targets(small: ScaleRun, large: ScaleRun, slow: StageStats, alone_s: float) -> None:
    """Ratios of the larger run over the smaller, and end to end over the slowest stage."""
    factor = large.samples / small.samples
    print(f"\n== targets ({large.samples} vs {small.samples} samples)")
    time_ratio = large.wall_s / small.wall_s
    _verdict("time ratio", time_ratio, f"<= {TIME_SLACK * factor:.1f}",
             time_ratio <= TIME_SLACK * factor)  # fmt: skip
    for name, a, b in (
        ("driver peak RSS ratio", large.peaks.driver, small.peaks.driver),
        ("worker peak RSS ratio", large.peaks.worker, small.peaks.worker),
        ("all workers peak RSS ratio", large.peaks.workers_total, small.peaks.workers_total),
    ):
        _verdict(name, a / b, f"<= {RSS_RATIO_MAX}", a / b <= RSS_RATIO_MAX)
    alone_rate = large.samples / alone_s
    print(f"slowest stage by task rate: {slow.stage}; alone on the {large.samples}-sample "
          f"run: {alone_s:.1f} s = {alone_rate:.1f} samples/s; end to end "
          f"{large.rate:.1f} samples/s")  # fmt: skip
    overlap = large.rate / alone_rate
    _verdict("end to end / slowest stage alone", overlap, f">= {OVERLAP_MIN}",
             overlap >= OVERLAP_MIN)  # fmt: skip
    # Where every stage runs on the same CPU slots, end to end can at best do all stages'
    # work back to back on every slot: this says how much of that the overlap reaches.
    busy = sum(s.task_s for s in large.stages) / (N_WORKERS * THREADS)
    print(f"all stages' task seconds over {N_WORKERS * THREADS} slots: {busy:.1f} s = "
          f"{large.samples / busy:.1f} samples/s; end to end / that: "
          f"{large.rate * busy / large.samples:.2f} (1.0: no slot ever idle)")  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="samples of the smaller run")
    parser.add_argument("--factor", type=int, default=10, help="the larger run has factor x n")
    parser.add_argument("--quick", action="store_true", help="n=100, factor=3: a smoke run")
    parser.add_argument("--work", type=Path, help="work directory (default: a temp dir, removed)")
    parser.add_argument("--seed", type=int, default=0, help="picks the photo variants")
    parser.add_argument(
        "--pools", action="store_true", help="candidates+download on one more worker of their own"
    )
    parser.add_argument("--render-processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.quick:
        args.n, args.factor = 100, 3
    return args


def bench(args: argparse.Namespace, work: Path) -> None:
    total = args.n * args.factor
    shard_size = max(1, args.n // 8)  # several shards at n; the same size at factor x n
    t0 = time.perf_counter()
    sizes = render_all(work / "photos", args.seed, total, args.render_processes)
    print(f"rendered {total} photos (seed {args.seed}) in {time.perf_counter() - t0:.1f} s; "
          f"shard_size {shard_size}, {N_WORKERS} workers x {THREADS} thread"
          f"{' + 1 download worker (--pools)' if args.pools else ''}")  # fmt: skip
    with serve_directory(work / "photos") as (base, server):
        small = run_scale(work, base, sizes[: args.n], args, shard_size, server)
        print_run(small)
        large = run_scale(work, base, sizes, args, shard_size, server)
        print_run(large)
        slow = large.slowest()
        alone_s = time_stage_alone(large.config, slow.stage)
    print_targets(small, large, slow, alone_s)


def main() -> None:
    args = parse_args()
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    for old in work.glob("run-*"):  # a reused --work would otherwise resume, not rerun
        if RunLayout(old).run_json.is_file():
            shutil.rmtree(old)
    try:
        bench(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
