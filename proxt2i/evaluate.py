"""The evaluator: for each (sampler, steps) generate, time, and score the images.

Metrics: FID against reference shards (embedded FID Inception), CLIP score when a CLIP model is
given, the face-quality reward (the pipeline's detector and sharpness), wall time per image.
Writes OUT/metrics.json, OUT/metrics.png and OUT/grids/<sampler>_<steps>.png.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from proxt2i import SAMPLERS
from proxt2i.fid import frechet_distance, inception_features
from proxt2i.generate import LoadedModel, generate
from proxt2i.report import plot_metrics, save_grid
from proxt2i.rewards import Reward

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalPlan:
    samplers: tuple[str, ...]
    steps: tuple[int, ...]
    prompts: tuple[str, ...]
    guidance: float = 1.0
    seed: int = 0


def reference_images(shards: str, resolution: int, limit: int) -> np.ndarray:
    """Up to `limit` uint8 (R, R, 3) images from the shards, in shard order, center-cropped."""
    import webdataset as wds

    from proxt2i.data import image_transform

    transform = image_transform(resolution)
    out = []
    for (img,) in wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("jpg"):
        x = transform(img.convert("RGB"))
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
        if len(out) >= limit:
            break
    if len(out) < 2:
        raise ValueError(f"reference shards {shards} hold {len(out)} images; FID needs >= 2")
    return np.stack(out)


def score_images(
    images: np.ndarray, prompts: list[str], ref_feats: np.ndarray | None, rewards: list[Reward]
) -> dict[str, float | None]:
    row: dict[str, float | None] = {"fid": None}
    if ref_feats is not None and len(images) >= 2:
        row["fid"] = max(frechet_distance(inception_features(images), ref_feats), 0.0)
    for reward in rewards:
        row[reward.name] = float(np.mean(reward.score(images, prompts)))
    return row


def run_evaluation(
    model: LoadedModel, plan: EvalPlan, ref: np.ndarray | None, rewards: list[Reward], out: Path
) -> Path:
    (out / "grids").mkdir(parents=True, exist_ok=True)
    ref_feats = inception_features(ref) if ref is not None else None
    prompts = list(plan.prompts)
    rows: list[dict[str, Any]] = []
    for name in plan.samplers:
        sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
        for steps in plan.steps:
            start = time.perf_counter()
            images = generate(model, sampler, prompts, steps, plan.guidance, plan.seed)
            per_image = (time.perf_counter() - start) / len(images)
            row: dict[str, Any] = {"sampler": name, "steps": steps, "n_images": len(images)}
            row.update(score_images(images, prompts, ref_feats, rewards))
            row["seconds_per_image"] = per_image
            save_grid(images, out / "grids" / f"{name}_{steps:04d}.png")
            log.info("evaluated %s", row)
            rows.append(row)
    metrics = [
        m
        for m in ("fid", *[r.name for r in rewards], "seconds_per_image")
        if any(r.get(m) is not None for r in rows)
    ]
    plot_metrics(rows, metrics, out / "metrics.png")
    result = {"plan": plan.__dict__, "results": rows}
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=list))
    return out / "metrics.json"
