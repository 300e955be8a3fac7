"""Library entry points behind `laionface train | sample | evaluate | finetune`."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from proxt2i import SAMPLERS
from proxt2i.config import ConfigError, load_config
from proxt2i.evaluate import EvalPlan, reference_images, run_evaluation
from proxt2i.generate import generate, load_model
from proxt2i.record import check_plan
from proxt2i.report import save_grid
from proxt2i.rewards import ClipScoreConfig, FaceDetectedConfig, FaceQualityConfig, Reward
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


def sample(
    ckpt: Path,
    prompts: list[str],
    steps: int,
    sampler: str,
    guidance: float,
    seed: int,
    out: Path,
    images_per_prompt: int = 1,
    device: str | None = None,
) -> Path:
    """Write OUT/<index>.png per image and OUT/grid.png; returns OUT."""
    if not prompts:
        raise ConfigError("give at least one --prompt")
    check_plan(Path(ckpt), [_sampler(sampler).name], [steps], guidance)
    model = load_model(Path(ckpt), _device(device))
    batch = [p for p in prompts for _ in range(images_per_prompt)]
    images = generate(model, _sampler(sampler), batch, steps, guidance, seed)
    out = Path(out)
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


def evaluate(
    ckpt: Path,
    prompts_file: Path,
    steps: list[int],
    samplers: list[str],
    out: Path,
    reference: str | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    clip: ClipScoreConfig | None = None,
    face_reward: bool = True,
    n_reference: int = 1000,
    images_per_prompt: int = 1,
    device: str | None = None,
) -> Path:
    """Evaluate every (sampler, steps); returns the path of OUT/metrics.json.

    Every combination is checked against the checkpoint's training record before any sampling.
    """
    for name in samplers:
        _sampler(name)
    check_plan(Path(ckpt), samplers, steps, guidance)
    model = load_model(Path(ckpt), _device(device))
    prompts = [p for p in read_prompts(prompts_file) for _ in range(images_per_prompt)]
    ref = reference_images(reference, model.cfg.data.resolution, n_reference) if reference else None
    rewards: list[Reward] = []
    if face_reward:  # detection rate and sharpness, reported separately
        rewards += [FaceDetectedConfig().build(), FaceQualityConfig().build()]
    if clip is not None:
        rewards.append(clip.build())
    plan = EvalPlan(tuple(samplers), tuple(steps), tuple(prompts), guidance, seed)
    return run_evaluation(model, plan, ref, rewards, Path(out))
