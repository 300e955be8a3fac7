"""The evaluator: for each (sampler, steps, guidance) row, generate `samples` images and score them.

Memory is flat in the sample count: a row is generated `batch_size` images at a time, and each
chunk is turned into Inception features (on the model's device) and rewards, then dropped; only
the features (2048 floats per image) and the first `grid_images` images stay. Image i of every
row draws from its own stream seeded by (seed, i) (`generate_seeded`), so rows share their
random numbers (a paired comparison) and nothing depends on the chunk size.

The reference is the first `count` decodable samples of held-out shards, which must not be
among the checkpoint's training shards; their own captions are the prompts (prompt i is caption
i mod count), the protocol of text-to-image FIDs on MS-COCO captions. Shards are buckets of a
URL hash, so their first samples are a uniform draw of the corpus. Metrics: FID (Heusel et al.
2017) and KID (Binkowski et al. 2018; unbiased, so usable at small counts), CLIP score when a
CLIP model is given, the face rewards, NFE and seconds.

Writes OUT/metrics.json, OUT/metrics.txt (the table), OUT/metrics.png, OUT/guidance.png (FID
vs CLIP score per guidance weight, for sweeps) and OUT/grids/<sampler>_<steps>_w<guidance>.png.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from proxt2i import SAMPLERS
from proxt2i.config import ConfigError
from proxt2i.evaluate_config import EvalConfig, KidConfig
from proxt2i.fid import frechet_distance, inception_features, kernel_inception_distance
from proxt2i.generate import LoadedModel, generate_seeded, network_calls
from proxt2i.report import format_table, plot_guidance_sweep, plot_metrics, save_grid
from proxt2i.rewards import Reward
from proxt2i.samplers.base import Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """Inception features and captions of the reference samples, and why others were skipped."""

    shards: str
    features: np.ndarray
    captions: tuple[str, ...]
    skipped: dict[str, int] = field(default_factory=dict)


def expand_shards(pattern: str) -> list[str]:
    """Brace-expanded tar URLs; local paths made absolute, so two spellings of a file match."""
    from braceexpand import braceexpand

    urls = list(braceexpand(pattern))
    return [u if "://" in u or u.startswith("pipe:") else str(Path(u).resolve()) for u in urls]


def check_held_out(ckpt: Path, train_shards: str, eval_shards: str) -> None:
    """Refuse (one line) evaluation shards that the checkpoint's training also read."""
    train = set(expand_shards(train_shards))
    shared = [u for u in expand_shards(eval_shards) if u in train]
    if shared:
        more = f" and {len(shared) - 1} more" if len(shared) > 1 else ""
        raise ConfigError(
            f"evaluation shards {eval_shards} overlap the training shards of {ckpt} "
            f"(data.shards = {train_shards}): {shared[0]}{more}; give held-out shards"
        )


def _decoded(sample: dict[str, Any], transform: Any) -> tuple[np.ndarray, str] | str:
    """(uint8 image at the model's resolution, caption), or the reason the sample is skipped."""
    if "jpg" not in sample:
        return "reference:no_image"
    caption = sample.get("txt", b"").decode("utf-8", errors="replace").strip()
    if not caption:
        return "reference:no_caption"
    try:
        image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB")
    except (OSError, ValueError):
        return "reference:undecodable"
    x = transform(image)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy(), caption


def check_shards_exist(shards: str) -> None:
    """Refuse (one line) a local reference shard that is not there; URLs are left to the reader."""
    for url in expand_shards(shards):
        if "://" not in url and not url.startswith("pipe:") and not Path(url).is_file():
            raise ConfigError(f"reference shard not found: {url} (reference.shards = {shards})")


def _samples(shards: str) -> Iterator[dict[str, Any]]:
    import webdataset as wds

    # a truncated tar member is skipped with a warning rather than ending the evaluation
    yield from wds.WebDataset(shards, shardshuffle=False, handler=wds.warn_and_continue)


def read_reference(
    shards: str, resolution: int, count: int, batch_size: int, device: Any
) -> Reference:
    """Features and captions of the first `count` usable samples, `batch_size` at a time."""
    from proxt2i.data import image_transform

    transform = image_transform(resolution)
    feats: list[np.ndarray] = []
    captions: list[str] = []
    chunk: list[np.ndarray] = []
    skipped: Counter[str] = Counter()
    for sample in _samples(shards):
        got = _decoded(sample, transform)
        if isinstance(got, str):
            skipped[got] += 1
            continue
        chunk.append(got[0])
        captions.append(got[1])
        if len(chunk) == batch_size or len(captions) == count:
            feats.append(inception_features(np.stack(chunk), batch_size=batch_size, device=device))
            chunk = []
        if len(captions) == count:
            break
    if chunk:
        feats.append(inception_features(np.stack(chunk), batch_size=batch_size, device=device))
    if len(captions) < 2:
        raise ConfigError(
            f"reference shards {shards} hold {len(captions)} usable samples; FID and KID need >= 2"
        )
    return Reference(shards, np.concatenate(feats), tuple(captions), dict(skipped))


def eval_prompts(
    cfg: EvalConfig, ref: Reference | None, file_prompts: list[str] | None
) -> list[str]:
    """One prompt per generated image: the prompts file (each `images_per_prompt` times) or
    the reference captions, cycled to `samples` (default: each once)."""
    if file_prompts:
        base = [p for p in file_prompts for _ in range(cfg.images_per_prompt)]
    elif ref is not None:
        base = list(ref.captions)
    else:
        raise ConfigError(
            "evaluation needs prompts: set reference.shards (--reference: held-out shards, whose "
            "captions are the prompts) or prompts (--prompts FILE)"
        )
    return [base[i % len(base)] for i in range(cfg.samples or len(base))]


def sample_seeds(seed: int, start: int, count: int) -> list[int]:
    """The seeds of images start..start+count-1: one stream per (seed, image index)."""
    return [
        int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        for i in range(start, start + count)
    ]


def distances(
    feats: np.ndarray | None, ref: np.ndarray | None, kid: KidConfig, seed: int
) -> dict[str, float | None]:
    if feats is None or ref is None or len(feats) < 2:
        return {"fid": None, "kid_mean": None, "kid_std": None}
    mean, std = kernel_inception_distance(feats, ref, kid.subsets, kid.subset_size, seed)
    # FID >= 0 in exact arithmetic; a tiny negative is rounding
    return {"fid": max(frechet_distance(feats, ref), 0.0), "kid_mean": mean, "kid_std": std}


@dataclass
class RowOutputs:
    """What a row keeps while its chunks stream through."""

    feats: list[np.ndarray] = field(default_factory=list)
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)
    grid: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0


def generate_row(
    model: LoadedModel,
    sampler: Sampler,
    steps: int,
    guidance: float,
    prompts: list[str],
    cfg: EvalConfig,
    rewards: list[Reward],
    with_features: bool,
) -> RowOutputs:
    """Generate and score the row chunk by chunk; `seconds` counts generation only."""
    kept = RowOutputs(scores={r.name: [] for r in rewards})
    for start in range(0, len(prompts), cfg.batch_size):
        chunk = prompts[start : start + cfg.batch_size]
        seeds = sample_seeds(cfg.seed, start, len(chunk))
        began = time.perf_counter()
        images = generate_seeded(model, sampler, chunk, steps, guidance, seeds)
        kept.seconds += time.perf_counter() - began
        if with_features:
            feats = inception_features(images, batch_size=cfg.batch_size, device=model.device)
            kept.feats.append(feats)
        for reward in rewards:
            kept.scores[reward.name].append(reward.score(images, chunk))
        kept.grid.extend(images[: max(cfg.grid_images - len(kept.grid), 0)])
    return kept


def evaluate_row(
    model: LoadedModel,
    name: str,
    steps: int,
    guidance: float,
    prompts: list[str],
    cfg: EvalConfig,
    ref: Reference | None,
    rewards: list[Reward],
) -> dict[str, Any]:
    sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
    kept = generate_row(model, sampler, steps, guidance, prompts, cfg, rewards, ref is not None)
    row: dict[str, Any] = {"sampler": name, "steps": steps, "guidance": guidance}
    row.update(nfe=network_calls(steps, guidance), n_images=len(prompts))
    feats = np.concatenate(kept.feats) if kept.feats else None
    row.update(distances(feats, ref.features if ref else None, cfg.kid, cfg.seed))
    for reward_name, parts in kept.scores.items():
        row[reward_name] = float(np.mean(np.concatenate(parts)))
    row.update(seconds=kept.seconds, seconds_per_image=kept.seconds / len(prompts))
    if kept.grid:
        save_grid(np.stack(kept.grid), cfg.out_dir / "grids" / grid_name(name, steps, guidance))
    log.info("evaluated %s", row)
    return row


def grid_name(sampler: str, steps: int, guidance: float) -> str:
    return f"{sampler}_{steps:04d}_w{guidance:g}.png"


def run_evaluation(
    model: LoadedModel,
    cfg: EvalConfig,
    prompts: list[str],
    ref: Reference | None,
    rewards: list[Reward],
) -> Path:
    """Every (sampler, steps, guidance) row of the plan; returns OUT/metrics.json."""
    out = Path(cfg.out_dir)
    (out / "grids").mkdir(parents=True, exist_ok=True)
    rows = [
        evaluate_row(model, name, steps, w, prompts, cfg, ref, rewards)
        for name in cfg.samplers
        for steps in cfg.steps
        for w in cfg.guidance
    ]
    metrics = ("fid", "kid_mean", *[r.name for r in rewards], "seconds_per_image")
    shown = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    plot_metrics(rows, shown, out / "metrics.png")
    if len(cfg.guidance) > 1 and ref is not None and "clip_score" in rows[0]:
        plot_guidance_sweep(rows, out / "guidance.png")
    (out / "metrics.txt").write_text(format_table(rows) + "\n")
    result = {
        "checkpoint": str(model.ckpt),
        "config": cfg.model_dump(mode="json"),
        "reference": _reference_summary(ref),
        "results": rows,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return out / "metrics.json"


def _reference_summary(ref: Reference | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"shards": ref.shards, "images": len(ref.captions), "skipped": ref.skipped}
