"""Filter-stage benchmarks, each against a baseline measured in the same run.

1. profile: where each millisecond of the filter stage goes, per image entering it (reading
   the tar, decoding, each filter's score, decide; from the stage's own shard reports), the
   rows each filter scored (the cascade skips rejected rows), and images/s per core (the
   1-worker stage: one worker process, one thread, OMP_NUM_THREADS=1). Target >= 20.
   Each cluster runs the stage twice: cold (each worker process imports and loads every model
   of the chain on its first shard, a one-off cost per worker that a 10,000-image shard
   amortizes) and warm (the same workers again, models in memory: the steady state of a long
   run). The profile, the overhead and the scaling ratios are the warm run's; cold is printed.
2. overhead: the filter stage (Dask, manifests, tar reading) vs a bare loop that decodes and
   scores the same images with the same filter chain and backend. Target stage/bare >= 0.9.
3. scaling: the filter stage on the same shards with 1 and with 2 Dask workers, against the
   machine's own ceiling: 2 plain processes scoring the same images with the same chain vs 1
   (virtual cores that share a physical core, or other load, cap what any code can reach).
   Target (2 workers / 1 worker) / ceiling >= 0.9. Each warm figure and each side of the
   ceiling is the fastest of ``REPEATS`` runs, so a burst of other load in one run does not
   decide a ratio.
4. refilter: rows/s re-decided from stored scores on a synthetic manifest (default 1M rows).

``--face-detector dlib`` times the chain with the slower embedded detector (docs/filters.md);
``--without body_pose face_mesh`` times the default chain less those filters.
Downloads are ``--image-size`` px (1024, the presets'; the demo photos are upscaled to it).
Absolute figures depend on the machine's load (printed); the ratios are measured in one run.

    python bench/filter.py --images 160 --shards 4 --image-size 1024 --refilter-rows 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# The bare loop runs with the threads a Dask worker gets (the nanny sets OMP_NUM_THREADS=1 in
# each worker), so "same backend" includes the same thread count.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

import numpy as np
import pyarrow as pa

from filters import Batch, FaceCountConfig, score_batch
from manifests import schema as S
from manifests.io import read_manifest, write_done, write_table_atomic
from manifests.layout import RunLayout
from manifests.report import ShardReport
from manifests.run_record import append_record
from pipeline.config import RunConfigBase, validate_config
from pipeline.demo import server_peer
from pipeline.demo_server import serve_photos, write_photo_urls
from pipeline.refilter import refilter
from pipeline.run_info import new_record
from pipeline.runner import run_pipeline
from stages.download_tar import image_bytes, open_download_tar
from stages.filter import DEFAULT_CHAIN

# Warm runs of the stage per worker count, and of each side of the machine ceiling: each
# figure is the fastest of them (machine_ceiling says why).
REPEATS = 2
PHOTOS = ["astronaut", "grace_hopper", "coffee", "astronaut_crop", "grace_hopper_crop", "rocket"]


def config(
    run_dir: Path,
    src: Path,
    shards: int,
    n: int,
    address: str,
    base: str,
    image_size: int,
    section: dict[str, Any],
) -> RunConfigBase:
    return validate_config(
        {
            "run_dir": str(run_dir),
            "cluster": {"address": address},
            "runner": {"progress": False},
            "candidates": {"input": [str(src)], "shard_size": -(-n // shards),
                           "allow_private_hosts": True},
            # One loopback host: the per-host cap would only slow the download that feeds it.
            "download": {"image_size": image_size, "resize_only_if_bigger": False,
                         "thread_count": 16,
                         "allow_addresses": [server_peer(base)],
                         "politeness": {"max_per_host": 16}},
            "filter": {"batch_size": 16, **section},
        }
    )  # fmt: skip


def prepare(
    work: Path,
    base: str,
    n: int,
    shards: int,
    address: str,
    image_size: int,
    section: dict[str, Any],
) -> RunConfigBase:
    """Candidates and downloads of ``n`` distinct photo URLs (not timed)."""
    src = write_photo_urls(base, PHOTOS, n, work / "urls.parquet")
    cfg = config(work / "run", src, shards, n, address, base, image_size, section)
    run_pipeline(cfg, ["candidates", "download"])
    return cfg


def time_filter_stage(cfg: RunConfigBase, address: str) -> tuple[float, ShardReport]:
    """Seconds of the filter stage from scratch, and its merged report."""
    layout = RunLayout(cfg.run_dir)
    shutil.rmtree(layout.stage_dir("filter"), ignore_errors=True)
    cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"address": address})})
    t0 = time.perf_counter()
    result = run_pipeline(cfg, ["filter"])
    return time.perf_counter() - t0, result.reports["filter"]


def fastest_filter_stage(
    cfg: RunConfigBase, address: str, repeats: int = REPEATS
) -> tuple[float, ShardReport]:
    """The fastest of ``repeats`` warm runs of the filter stage, with its report."""
    return min((time_filter_stage(cfg, address) for _ in range(repeats)), key=lambda r: r[0])


def _blobs(cfg: RunConfigBase, limit: int | None = None) -> list[bytes]:
    """The downloaded images, in shard order."""
    layout = RunLayout(cfg.run_dir)
    blobs: list[bytes] = []
    for shard in layout.done_shards("download"):
        keys = read_manifest(layout, "download", shard, [S.DL_KEY])[S.DL_KEY].to_pylist()
        with open_download_tar(layout, shard) as (tar, members):
            found = (image_bytes(tar, members, key) for key in keys)
            blobs.extend(blob for blob in found if blob is not None)
    return blobs[:limit]


def _score_all(section: dict[str, Any], blobs: list[bytes]) -> float:
    """Seconds for this process to decode and score ``blobs`` in stage-sized batches with the
    stage's chain and settings (models loaded and warm before the clock starts)."""
    from stages.filter import filter_stage_config, prepare_process

    config = filter_stage_config().model_validate(section)
    prepare_process(config)
    filters = config.build_filters()
    for blob in blobs[:2]:  # every model of the chain loads on an image it scores
        score_batch(filters, Batch.from_bytes([blob], {S.ALT_TEXT: [""]}))
    t0 = time.perf_counter()
    for start in range(0, len(blobs), config.batch_size):
        chunk = blobs[start : start + config.batch_size]
        batch = Batch.from_bytes(chunk, {S.ALT_TEXT: [""] * len(chunk)},
                                 detect_max_side=config.detect_max_side)  # fmt: skip
        score_batch(filters, batch, config.score_rejected)
    return time.perf_counter() - t0


def time_bare_loop(cfg: RunConfigBase) -> tuple[float, int]:
    """Decode + score every downloaded image with the same chain, in a plain loop."""
    section = cfg.stage_config("filter").model_dump(mode="json")
    blobs = _blobs(cfg)
    return _score_all(section, blobs), len(blobs)


def machine_ceiling(cfg: RunConfigBase, images: int, repeats: int = REPEATS) -> float:
    """Throughput of 2 plain processes over 1, each scoring the same images.

    Each side is the fastest of ``repeats`` runs, taken in turns (1, 2, 1, 2, ...): a single
    pair of runs gave ceilings from 1.71 to 2.09 on the same 2 cores, a slowed 1-process run
    inflating it (above 2), which no code can reach. The fastest run is the one least
    disturbed by other load, as ``timeit`` reasons for its minimum."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    section = cfg.stage_config("filter").model_dump(mode="json")
    blobs = _blobs(cfg, images)
    # Fresh processes, as Dask's nanny starts them: MediaPipe's graphs do not survive a fork
    # of a process that already ran them (the bare loop did).
    spawn = multiprocessing.get_context("spawn")
    ones, twos = [], []
    for _ in range(repeats):
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            ones.append(pool.submit(_score_all, section, blobs).result())
        with ProcessPoolExecutor(2, mp_context=spawn) as pool:
            twos.append(max(pool.map(_score_all, [section] * 2, [blobs] * 2)))
    return 2 * min(ones) / min(twos)


def profile_lines(report: ShardReport, stage_s: float) -> list[str]:
    """ms per image entering the stage for each step, and rows scored per filter."""
    n = max(report.n_in, 1)
    steps = {k: v for k, v in report.seconds.items() if k not in ("score", "total")}
    lines = [f"  {'step':<16} {'ms/image':>9} {'rows scored':>12}"]
    for step, seconds in steps.items():
        scored = report.counters.get(f"scored.{step.removeprefix('score.')}")
        rows = f"{int(scored):>12}" if step.startswith("score.") and scored is not None else ""
        lines.append(f"  {step:<16} {1000 * seconds / n:9.1f} {rows}")
    rest = stage_s - sum(steps.values())
    lines.append(f"  {'rest of stage':<16} {1000 * rest / n:9.1f}  (Dask, manifests)")
    return lines


def bench_refilter(work: Path, rows: int, shard_rows: int = 100_000) -> tuple[int, float]:
    """Synthetic filter manifests (random scores) + run.json, then refilter them."""
    cfg = validate_config({"run_dir": str(work / "synthetic"), "stages": ["filter"]})
    layout = RunLayout(cfg.run_dir)
    append_record(layout, new_record(cfg, cfg.stages, {}))
    rng = np.random.default_rng(0)
    for shard in range(-(-rows // shard_rows)):
        n = min(shard_rows, rows - shard * shard_rows)
        write_table_atomic(
            _synthetic_filter_manifest(rng, shard, n), layout.manifest("filter", shard)
        )
        ids = pa.array([f"{shard:05d}{i:011d}" for i in range(n)])
        kept = {S.KEEP: pa.array(np.ones(n, bool)), S.REJECT_REASON: pa.nulls(n, pa.string())}
        # The filter stage reads both upstream manifests (FilterStage.reads).
        candidates = {S.SAMPLE_ID: ids, S.ALT_TEXT: pa.array([""] * n), **kept}
        write_table_atomic(pa.table(candidates), layout.manifest("candidates", shard))
        download = {S.SAMPLE_ID: ids, S.DL_KEY: ids, **kept}
        write_table_atomic(pa.table(download), layout.manifest("download", shard))
        report = ShardReport(stage="filter", shards=(shard,), n_rows=n, n_in=n, n_out=n)
        write_done(layout, report)
    result = refilter(cfg.run_dir, ["filter.face_size.min_px=120"], name="bench")
    return result.rows, result.seconds


def _synthetic_filter_manifest(rng: np.random.Generator, shard: int, n: int) -> pa.Table:
    """A filter manifest with plausible score distributions for the default chain."""
    from stages.filter import FilterStage, filter_stage_config

    stage = FilterStage(filter_stage_config()())
    faces = rng.integers(0, 3, n)
    size = rng.uniform(40, 400, n)
    values = {
        S.SAMPLE_ID: [f"{shard:05d}{i:011d}" for i in range(n)],
        S.DECODE_STATUS: ["ok"] * n, S.IMG_WIDTH_PX: rng.integers(200, 1024, n),
        S.IMG_HEIGHT_PX: rng.integers(200, 1024, n), S.FACE_COUNT: faces,
        S.FACE_CONFIDENCE: rng.uniform(0.5, 1, n), S.FACE_SIZE_PX: size,
        S.FACE_AREA_FRACTION: rng.uniform(0, 0.5, n), S.FACE_BORDER_MARGIN: rng.uniform(-0.2, 2, n),
        S.FACE_YAW_DEG: rng.normal(0, 30, n), S.FACE_ROLL_DEG: rng.normal(0, 15, n),
        S.FACE_SHARPNESS: rng.uniform(0, 2000, n), S.FACE_BRIGHTNESS: rng.uniform(0, 1, n),
        S.FACE_CONTRAST: rng.uniform(0, 0.3, n), S.NSFW_SCORE: rng.uniform(0, 0.5, n),
    }  # fmt: skip
    schema = S.schema_for(stage.columns)
    columns = {}
    for field in schema:
        if field.name in values:
            columns[field.name] = pa.array(values[field.name]).cast(field.type)
        elif field.name == S.FACE_CONFIDENCES:
            columns[field.name] = pa.array([[0.9] * int(k) for k in faces], field.type)
        elif field.name == S.FACE_BOX:
            columns[field.name] = pa.array(
                [[0.0, 0.0, float(s), float(s)] for s in size], field.type
            )
        else:
            columns[field.name] = pa.nulls(n, field.type)
    return pa.table(columns, schema=schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--ceiling-images", type=int, default=40)
    parser.add_argument("--refilter-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--face-detector",
        default=FaceCountConfig().detector.type,
        help="face_count's detector type (default: the chain's)",
    )
    parser.add_argument("--without", nargs="*", default=[], help="filters to drop from the chain")
    args = parser.parse_args()
    unknown = sorted(set(args.without) - set(DEFAULT_CHAIN))
    if unknown:
        parser.error(f"--without {unknown}: not in the default chain {DEFAULT_CHAIN}")
    section = {
        "chain": [name for name in DEFAULT_CHAIN if name not in args.without],
        "face_count": {"detector": {"type": args.face_detector}},
    }
    from distributed import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="bench-filter-"))
    kw = {"threads_per_worker": 1, "dashboard_address": None, "memory_limit": "4GiB"}
    print(f"cores={os.cpu_count()} load average (1 min) at start: {os.getloadavg()[0]:.1f}")
    try:
        with (
            serve_photos() as base,
            LocalCluster(n_workers=1, **kw) as one,
            LocalCluster(n_workers=2, **kw) as two,
        ):
            cfg = prepare(work, base, args.images, args.shards, two.scheduler_address,
                          args.image_size, section)  # fmt: skip
            scaling = measure_stage(cfg, one.scheduler_address, two.scheduler_address)
        # With the clusters closed, so their idle workers share nothing with the ceiling's.
        ceiling = machine_ceiling(cfg, args.ceiling_images)
        print(f"machine ceiling, 2 processes/1:      {ceiling:.3f}")
        print(f"scaling / ceiling:                   {scaling / ceiling:.3f}  (target >= 0.9)")
        rows, refilter_s = bench_refilter(work, args.refilter_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"refilter: {rows} rows in {refilter_s:.2f} s = {rows / refilter_s:,.0f} rows/s")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")


def measure_stage(cfg: RunConfigBase, one: str, two: str) -> float:
    """Profile, overhead and scaling of the filter stage; prints each as it is measured and
    returns the scaling ratio (2 workers / 1)."""
    section = cfg.stage_config("filter")
    settings = {k: getattr(section, k) for k in ("detect_max_side", "score_rejected", "chain")}
    print("filter: " + " ".join(f"{k}={v}" for k, v in settings.items()), flush=True)
    bare_s, n = time_bare_loop(cfg)
    print(f"images={n} bare loop: {n / bare_s:7.1f} img/s ({bare_s:.1f} s)", flush=True)
    cold_s, _ = time_filter_stage(cfg, one)
    print(f"filter stage, 1 wkr, cold: {n / cold_s:7.1f} img/s ({cold_s:.1f} s)", flush=True)
    one_s, report = fastest_filter_stage(cfg, one)
    print(f"profile, filter stage with 1 worker, warm (fastest of {REPEATS}):")
    print("\n".join(profile_lines(report, one_s)))
    print(f"filter stage, 1 wkr: {n / one_s:7.1f} img/s ({one_s:.1f} s) = per core (target >= 20)")
    print(f"overhead ratio stage(1 worker)/bare: {bare_s / one_s:.3f}  (target >= 0.9)", flush=True)
    cold_s, _ = time_filter_stage(cfg, two)
    print(f"filter stage, 2 wkr, cold: {n / cold_s:7.1f} img/s ({cold_s:.1f} s)", flush=True)
    two_s, _ = fastest_filter_stage(cfg, two)
    print(f"filter stage, 2 wkr: {n / two_s:7.1f} img/s ({two_s:.1f} s)", flush=True)
    scaling = one_s / two_s
    print(f"scaling ratio 2 workers/1 worker:    {scaling:.3f}", flush=True)
    return scaling


if __name__ == "__main__":
    main()
