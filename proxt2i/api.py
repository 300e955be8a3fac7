"""Library entry points behind `laionface train | sample | evaluate | finetune`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from proxt2i import SAMPLERS
from proxt2i.checkpoint import read_checkpoint_meta
from proxt2i.config import ConfigError, load_config
from proxt2i.evaluate import (
    check_held_out,
    check_shards_exist,
    eval_prompts,
    read_reference,
    run_evaluation,
)
from proxt2i.evaluate_config import EvalConfig
from proxt2i.generate import generate, load_model
from proxt2i.record import check_plan
from proxt2i.report import save_grid
from proxt2i.rewards import FaceDetectedConfig, FaceQualityConfig, Reward
from proxt2i.samplers.base import Sampler
from proxt2i.train import run_training


def _device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    sampler: Sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
    return sampler


def train(config_path: Path, overrides: list[str]) -> Path:
    """Train (or resume) the run described by the YAML file; returns the last checkpoint dir."""
    return run_training(load_config(Path(config_path), overrides))


@dataclass(frozen=True)
class SampleRequest:
    """What `laionface sample` asks of a checkpoint: `images_per_prompt` images per prompt at
    `steps` steps of `sampler` with guidance weight `guidance`; `device` None picks cuda when
    available."""

    ckpt: Path
    prompts: tuple[str, ...]
    out: Path
    steps: int = 10
    sampler: str = "pda_hybrid"
    guidance: float = 1.0
    seed: int = 0
    images_per_prompt: int = 1
    device: str | None = None


def sample(request: SampleRequest) -> Path:
    """Write OUT/<index>.png per image and OUT/grid.png; returns OUT.

    Refused (ConfigError) before any weights load: no prompt, an unknown sampler, or a
    (sampler, steps, guidance) the checkpoint was not trained for."""
    r = request
    if not r.prompts:
        raise ConfigError("give at least one --prompt")
    ckpt, sampler = Path(r.ckpt), _sampler(r.sampler)
    check_plan(ckpt, [sampler.name], [r.steps], r.guidance)
    model = load_model(ckpt, _device(r.device))
    batch = [p for p in r.prompts for _ in range(r.images_per_prompt)]
    images = generate(model, sampler, batch, r.steps, r.guidance, r.seed)
    out = Path(r.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(out / f"{i:04d}.png")
    save_grid(images, out / "grid.png")
    return out


def finetune(ckpt: Path, config_path: Path, overrides: list[str]) -> Path:
    """GRPO fine-tune (or resume) per the YAML file; returns the last checkpoint dir."""
    from proxt2i.finetune import run_finetune
    from proxt2i.finetune_config import load_finetune_config

    return run_finetune(Path(ckpt), load_finetune_config(Path(config_path), overrides))


def read_prompts(path: Path) -> list[str]:
    if not Path(path).is_file():
        raise ConfigError(f"prompts file not found: {path} (one prompt per line)")
    prompts = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not prompts:
        raise ConfigError(f"prompts file {path} has no prompts")
    return prompts


def evaluate(ckpt: Path, cfg: EvalConfig) -> Path:
    """Evaluate every (sampler, steps, guidance) row of `cfg`; returns OUT/metrics.json.

    Before any weights load: every row is checked against the checkpoint's training record,
    the reference shards against its training shards (held out, or refused), and the prompts
    file is read.
    """
    ckpt = Path(ckpt)
    for w in cfg.guidance:
        check_plan(ckpt, list(cfg.samplers), list(cfg.steps), w)
    train_cfg, _ = read_checkpoint_meta(ckpt)
    if cfg.reference is not None:
        check_held_out(ckpt, train_cfg.data.shards, cfg.reference.shards)
        check_shards_exist(cfg.reference.shards)
    file_prompts = read_prompts(cfg.prompts) if cfg.prompts is not None else None
    if file_prompts is None and cfg.reference is None:
        raise ConfigError(
            "evaluation needs prompts: set reference.shards (--reference: held-out shards, whose "
            "captions are the prompts) or prompts (--prompts FILE)"
        )
    model = load_model(ckpt, _device(cfg.device))
    ref = None
    if cfg.reference is not None:
        ref = read_reference(
            cfg.reference.shards,
            model.cfg.data.resolution,
            cfg.reference.count,
            cfg.batch_size,
            model.device,
        )
    return run_evaluation(model, cfg, eval_prompts(cfg, ref, file_prompts), ref, _rewards(cfg))


def _rewards(cfg: EvalConfig) -> list[Reward]:
    rewards: list[Reward] = []
    if cfg.face_reward:  # detection rate and sharpness, reported separately
        rewards += [FaceDetectedConfig().build(), FaceQualityConfig().build()]
    if cfg.clip is not None:
        rewards.append(cfg.clip.build())
    return rewards
