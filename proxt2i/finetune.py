"""Reward fine-tuning of a trained checkpoint's proximal network with GRPO (see grpo.py)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from proxt2i.checkpoint import load_family_state, read_checkpoint_meta, save_checkpoint
from proxt2i.generate import LoadedModel, load_model, to_uint8
from proxt2i.grpo import GrpoConfig, grpo_iteration
from proxt2i.rewards import Reward
from proxt2i.samplers.base import EpsFn

log = logging.getLogger(__name__)


def reward_on_samples(model: LoadedModel, reward: Reward, prompts: list[str], group: int) -> Any:
    """x0 (model space) -> rewards tensor, through the decoder and the uint8 image reward."""
    expanded = [p for p in prompts for _ in range(group)]

    def score(x0: torch.Tensor) -> torch.Tensor:
        images = to_uint8(model.space.decode(x0))
        return torch.as_tensor(reward.score(images, expanded), dtype=torch.float32)

    return score


def finetune_checkpoint(
    ckpt: Path,
    prompts: list[str],
    reward: Reward,
    cfg: GrpoConfig,
    iterations: int,
    lr: float,
    out_dir: Path,
    seed: int = 0,
) -> Path:
    """Fine-tune the prox EMA weights for `iterations` GRPO updates; saves under out_dir."""
    model = load_model(Path(ckpt), "cuda" if torch.cuda.is_available() else "cpu")
    net = copy.deepcopy(model.nets["prox"]).train().requires_grad_(True)  # cache stays intact
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    ctx = model.encoder.encode(prompts).to(model.device)

    def make_eps(c: torch.Tensor) -> EpsFn:
        return lambda y, t, lam: net(y, t, lam, c)

    score = reward_on_samples(model, reward, prompts, cfg.group_size)
    shape = (model.args.channels, model.args.sample_size, model.args.sample_size)
    gen = torch.Generator().manual_seed(seed)
    for it in range(iterations):
        mean_reward = grpo_iteration(make_eps, ctx, score, opt, cfg, shape, gen)
        log.info("grpo iteration %d mean %s %.4f", it, reward.name, mean_reward)
    train_cfg, meta = read_checkpoint_meta(Path(ckpt))
    states: dict[str, Any] = {
        fam: load_family_state(Path(ckpt), fam) for fam in meta["families"] if fam != "prox"
    }
    weights = net.state_dict()
    states["prox"] = {"model": weights, "ema": weights, "ema_n": 0, "optimizer": opt.state_dict()}
    new_cfg = train_cfg.model_copy(update={"out_dir": Path(out_dir)})
    return save_checkpoint(new_cfg, int(meta["step"]) + iterations, model.args, states)
