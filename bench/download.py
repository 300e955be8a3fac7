"""Download stage vs img2dataset called directly, same URLs, same loopback server, one run.

Both sides download the same N distinct URLs (photos served from 127.0.0.1 with a unique
query string each) with the same img2dataset settings and the same parallelism: the stage
runs S shards on a 2-worker Dask cluster (one subprocess per shard running img2dataset's
``Downloader``), the baseline calls ``img2dataset.download`` once with ``processes_count=2``
over the same rows. Printed: both rates (successful images per second) and stage/baseline.
Target: >= 0.95. The stage's time includes reading and writing its manifests.

    python bench/download.py --urls 4000 --shards 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

import pyarrow.parquet as pq

from pipeline.config import validate_config
from pipeline.demo import server_peer
from pipeline.demo_server import serve_photos, write_photo_urls
from pipeline.runner import run_pipeline

PHOTOS = ["astronaut", "grace_hopper", "coffee", "rocket", "chelsea", "astronaut_crop"]
SETTINGS = {"image_size": 256, "resize_mode": "keep_ratio", "timeout_s": 10, "thread_count": 32}
# Every URL is on one loopback host: its per-host cap would measure politeness, not the stage.
POLITENESS = {"max_per_host": SETTINGS["thread_count"]}


def time_stage(
    work: Path, src: Path, n: int, shards: int, address: str, base: str
) -> tuple[float, int]:
    section = {"input": [str(src)], "shard_size": -(-n // shards), "allow_private_hosts": True}
    config = validate_config(
        {
            "run_dir": str(work / "run"),
            "cluster": {"address": address},
            "runner": {"progress": False},
            "candidates": section,
            "download": {
                **SETTINGS,
                "allow_addresses": [server_peer(base)],
                "politeness": POLITENESS,
            },
        }
    )
    run_pipeline(config, ["candidates"])  # not timed: the stage under test is download
    t0 = time.perf_counter()
    result = run_pipeline(config, ["download"])
    seconds = time.perf_counter() - t0
    return seconds, n - result.reports["download"].n_dropped


def time_direct(work: Path, src: Path, n: int) -> tuple[float, int]:
    from img2dataset import download

    out = work / "direct"
    t0 = time.perf_counter()
    download(
        url_list=str(src), input_format="parquet", url_col="URL", caption_col="TEXT",
        output_format="webdataset", output_folder=str(out), processes_count=2,
        thread_count=SETTINGS["thread_count"], number_sample_per_shard=-(-n // 2),
        image_size=SETTINGS["image_size"], resize_mode="keep_ratio", resize_only_if_bigger=True,
        timeout=SETTINGS["timeout_s"], compute_hash="sha256", enable_wandb=False,
        extract_exif=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    ok = sum(
        int(v == "success")
        for p in out.glob("*.parquet")
        for v in pq.read_table(p, columns=["status"])["status"].to_pylist()
    )
    return seconds, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=4000)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    from distributed import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        with (
            serve_photos() as base,
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        ):
            src = write_photo_urls(base, PHOTOS, args.urls, work / "urls.parquet")
            direct_s, direct_ok = time_direct(work, src, args.urls)
            stage_s, stage_ok = time_stage(
                work, src, args.urls, args.shards, cluster.scheduler_address, base
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    direct_rate, stage_rate = direct_ok / direct_s, stage_ok / stage_s
    print(f"urls={args.urls} shards={args.shards}")
    print(f"img2dataset direct: {direct_ok} images in {direct_s:.1f} s = {direct_rate:.1f} img/s")
    print(f"download stage:     {stage_ok} images in {stage_s:.1f} s = {stage_rate:.1f} img/s")
    print(f"ratio stage/direct: {stage_rate / direct_rate:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
