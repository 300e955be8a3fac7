"""Candidates-stage ingest at LAION scale: peak worker memory and rows/s against input size.

Generates (in a temp dir, never committed) a synthetic LAION-400M-shaped parquet per size:
columns SAMPLE_ID, URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW, similarity; URLs of about 100
characters and captions of about 60 (the means of shared/data/laion_urls_10k.parquet: 98 and
58) with varied hosts, paths, queries, a few repeated, non-ASCII and broken URLs; snappy row
groups of 2**20 rows, as Spark's 128 MB blocks make them in LAION-400M's parts. Runs only the
candidates stage (``run_pipeline``) on a LocalCluster of ONE worker process with
``memory_limit: 2GiB``, sampling the worker's RSS from the driver every 0.1 s.

Printed per size: rows/s, peak worker RSS, the two ingest passes and the per-shard task and
gather seconds; then RSS(big)/RSS(small) (target <= 1.15) and time(big)/time(small) (target
<= 11 for 10x the rows).

    python bench/ingest.py            # 1.3M and 13M rows
    python bench/ingest.py --quick    # 200k and 2M rows
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client

from pipeline.cluster import local_cluster
from pipeline.config import ClusterConfig, validate_config
from pipeline.runner import run_pipeline

ROW_GROUP = 1 << 20
WORDS = [
    "portrait",
    "woman",
    "man",
    "smiling",
    "young",
    "old",
    "face",
    "close",
    "up",
    "studio",
    "photo",
    "of",
    "a",
    "the",
    "with",
    "in",
    "black",
    "white",
    "red",
    "blue",
    "hair",
    "eyes",
    "beautiful",
    "happy",
    "business",
    "casual",
    "wedding",
    "summer",
    "stock",
    "vector",
    "illustration",
    "actor",
    "singer",
    "team",
    "people",
    "family",
    "child",
    "girl",
    "boy",
    "headshot",
]
TLDS = ("com", "net", "org", "co.uk", "de", "fr", "ru", "com.br", "jp", "info")
LICENSES = ("?", "cc-by", "cc-by-sa", "cc0")
NSFW = ("UNLIKELY", "UNLIKELY", "UNLIKELY", "UNSURE", "NSFW")


def synthetic_chunk(rng: np.random.Generator, start: int, n: int) -> pa.Table:
    """``n`` LAION-400M-shaped rows; SAMPLE_IDs from ``start``."""
    hosts = rng.integers(0, 20_000, n)
    depth = rng.integers(1, 5, n)
    tails = rng.integers(0, 1 << 62, n)
    kinds = rng.random(n)
    urls = [
        _url(int(h), int(d), int(t), float(k), i)
        for i, (h, d, t, k) in enumerate(zip(hosts, depth, tails, kinds, strict=True))
    ]
    n_words = rng.integers(2, 17, n)
    picks = rng.integers(0, len(WORDS), (n, 16))
    texts = [" ".join(WORDS[j] for j in picks[i, : n_words[i]]) for i in range(n)]
    return pa.table(
        {
            "SAMPLE_ID": pa.array(np.arange(start, start + n) * 7 + 3, pa.int64()),
            "URL": pa.array(urls, pa.string()),
            "TEXT": pa.array(texts, pa.string()),
            "HEIGHT": pa.array(rng.integers(64, 2048, n), pa.int32()),
            "WIDTH": pa.array(rng.integers(64, 2048, n), pa.int32()),
            "LICENSE": pa.array([LICENSES[i % 4] for i in range(n)], pa.string()),
            "NSFW": pa.array([NSFW[int(x)] for x in rng.integers(0, 5, n)], pa.string()),
            "similarity": pa.array(rng.uniform(0.28, 0.45, n), pa.float64()),
        }
    )


def _url(host: int, depth: int, tail: int, kind: float, i: int) -> str:
    domain = f"img{host % 97}.site{host}-media.{TLDS[host % len(TLDS)]}"
    path = "/".join(f"{(tail >> (8 * k)) & 0xFFFF:x}dir" for k in range(depth))
    name = f"{tail:x}_photo_{i % 1000}"
    if kind < 0.01:
        return f"https://{domain}/uploads/{i % 50}.jpg"  # repeated URLs
    if kind < 0.011:
        return "not a url" if kind < 0.0105 else ""
    if kind < 0.03:
        return f"https://{domain}/фото/{path}/{name} large.jpg"  # non-ASCII and a space
    if kind < 0.3:
        return f"https://{domain}/{path}/{name}.jpg?w=800&h=600&crop=faces&fit=max"
    return f"http://{domain}/wp-content/uploads/{path}/{name}-1024x768.jpg"


def make_input(path: Path, n_rows: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    first = synthetic_chunk(rng, 0, min(n_rows, ROW_GROUP))
    with pq.ParquetWriter(path, first.schema, compression="snappy") as writer:
        writer.write_table(first, row_group_size=ROW_GROUP)
        for start in range(first.num_rows, n_rows, ROW_GROUP):
            chunk = synthetic_chunk(rng, start, min(ROW_GROUP, n_rows - start))
            writer.write_table(chunk, row_group_size=ROW_GROUP)
    return path


class RssSampler:
    """The peak RSS of one process, sampled from a driver thread."""

    def __init__(self, pid: int, period_s: float = 0.1) -> None:
        self._proc = psutil.Process(pid)
        self._period_s = period_s
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                self.peak = max(self.peak, self._proc.memory_info().rss)
            except psutil.NoSuchProcess:  # the nanny restarted the worker
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Measurement:
    rows: int
    seconds: float
    idle_rss: int
    peak_rss: int
    ok: bool
    ingest: dict[str, float]
    n_shards: int
    task_s: float
    gather_s: float


def measure(work: Path, src: Path, n_rows: int) -> Measurement:
    cluster_config = ClusterConfig(n_workers=1, memory_limit="2GiB", dashboard_address=":0")
    with local_cluster(cluster_config) as cluster, Client(cluster) as client:
        (pid,) = client.run(os.getpid).values()
        config = validate_config(
            {
                "run_dir": str(work / "run"),
                "stages": ["candidates"],
                "cluster": {"address": cluster.scheduler_address},
                "runner": {"progress": False},
                "candidates": {"input": [str(src)], "resolve_hosts": False},
            }
        )
        with RssSampler(pid) as sampler:
            t0 = time.perf_counter()
            result = run_pipeline(config)
            seconds = time.perf_counter() - t0
        idle = psutil.Process(pid).memory_info().rss if psutil.pid_exists(pid) else 0
        same_worker = list(client.run(os.getpid).values()) == [pid]
    report = result.reports["candidates"]
    summary = json.loads((work / "run" / "candidates" / "_global" / "ingest.json").read_text())
    n_shards = len(report.shards)
    return Measurement(
        rows=n_rows,
        seconds=seconds,
        idle_rss=idle,
        peak_rss=sampler.peak,
        ok=result.ok and same_worker and report.n_rows == n_rows,
        ingest=summary["seconds"],
        n_shards=n_shards,
        task_s=report.seconds.get("total", 0.0) / max(1, n_shards),
        gather_s=report.seconds.get("gather", 0.0) / max(1, n_shards),
    )


def show(m: Measurement) -> None:
    mib = 1 << 20
    print(
        f"{m.rows:>11,} rows  {m.seconds:7.1f} s  {m.rows / m.seconds:9,.0f} rows/s  "
        f"peak worker RSS {m.peak_rss / mib:6.0f} MiB (after: {m.idle_rss / mib:.0f})  "
        f"{'ok' if m.ok else 'FAILED (worker restarted or rows missing)'}"
    )
    print(
        f"{'':13}ingest read {m.ingest['read']:.1f} s, bucket {m.ingest['bucket']:.1f} s; "
        f"{m.n_shards} shards: {m.task_s * 1e3:.1f} ms per shard task, "
        f"gather {m.gather_s * 1e3:.2f} ms per shard"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs=2, default=[1_300_000, 13_000_000])
    parser.add_argument("--quick", action="store_true", help="200k and 2M rows")
    args = parser.parse_args()
    sizes = [200_000, 2_000_000] if args.quick else args.rows
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for n in sizes:
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            t0 = time.perf_counter()
            src = make_input(work / "part-00000.parquet", n)
            size_mib = src.stat().st_size / (1 << 20)
            print(f"generated {n:,} rows in {time.perf_counter() - t0:.0f} s ({size_mib:.0f} MiB)")
            results.append(measure(work, src, n))
            show(results[-1])
            src.unlink()
    small, big = results
    print(f"rows ratio {big.rows / small.rows:.1f}x")
    print(f"peak RSS ratio {big.peak_rss / small.peak_rss:.3f} (target <= 1.15)")
    print(f"time ratio {big.seconds / small.seconds:.2f} (target <= 11)")


if __name__ == "__main__":
    main()
