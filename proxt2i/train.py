"""The training loop: every objective in the config trains its own copy of the backbone on the
same batches (so prox vs score comparisons share data and budget), each at the learning rate of
its own phase (lr_schedule.py). Multi-GPU through accelerate: `accelerate launch -m ...` runs
the same loop data-parallel; on CPU it is a plain loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from proxt2i.checkpoint import NetArgs, latest_checkpoint, load_family_state, save_checkpoint
from proxt2i.config import TrainConfig
from proxt2i.data import webdataset_batches
from proxt2i.ema_adamw import adamw_with_ema, load_training_state, training_state
from proxt2i.lr_schedule import learning_rate, set_learning_rate
from proxt2i.objectives.base import Objective
from proxt2i.space import ModelSpace, build_space
from proxt2i.text import TextEncoder
from proxt2i.text_context import TextContext

log = logging.getLogger(__name__)


@dataclass
class Track:
    """One network under training: objective, (prepared) net, optimizer, EMA copy."""

    objective: Objective
    net: nn.Module
    optimizer: torch.optim.Optimizer
    ema: AveragedModel


def make_accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator

    on_gpu = torch.cuda.is_available()
    return Accelerator(cpu=not on_gpu, mixed_precision=cfg.mixed_precision if on_gpu else "no")


def build_tracks(cfg: TrainConfig, args: NetArgs, accelerator: Any) -> list[Track]:
    tracks = []
    for obj_cfg in cfg.objectives:
        net = cfg.backbone.build(args.channels, args.sample_size, args.context_dim)
        opt, ema = adamw_with_ema(net, cfg.optim)
        if cfg.compile and torch.cuda.is_available():
            net = torch.compile(net)  # type: ignore[assignment]
        net, opt = accelerator.prepare(net, opt)
        tracks.append(Track(obj_cfg.build(), net, opt, ema.to(accelerator.device)))
    return tracks


def track_state(track: Track, accelerator: Any) -> dict[str, Any]:
    return training_state(accelerator.unwrap_model(track.net), track.ema, track.optimizer)


def resume(cfg: TrainConfig, tracks: list[Track], accelerator: Any) -> int:
    """Load the latest checkpoint under out_dir, if any; returns the step to start from."""
    ckpt = latest_checkpoint(cfg.out_dir)
    if ckpt is None:
        return 0
    for track in tracks:
        state = load_family_state(ckpt, track.objective.family)
        net = accelerator.unwrap_model(track.net)
        load_training_state(state, net, track.ema, track.optimizer)
    step = int(ckpt.name.removeprefix("step_"))
    log.info("resuming from %s at step %d", ckpt, step)
    return step


def drop_captions(captions: list[str], p: float, gen: torch.Generator) -> list[str]:
    """Caption dropout for classifier-free guidance: the empty prompt is the unconditional one
    (sampling encodes "" the same way; the mask makes its padding irrelevant, text_context.py)."""
    keep = torch.rand(len(captions), generator=gen) >= p
    return [c if k else "" for c, k in zip(captions, keep.tolist(), strict=True)]


def train_step(
    accelerator: Any,
    track: Track,
    x0: torch.Tensor,
    ctx: TextContext,
    step: int,
    cfg: TrainConfig,
) -> float:
    """One update of one network at its phase's learning rate; returns the loss."""
    o = cfg.optim
    set_learning_rate(
        track.optimizer, learning_rate(track.objective, step, o.lr, o.warmup_steps, o.phases)
    )

    def eps_net(y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return track.net(y, t, lam, ctx)

    with accelerator.autocast():
        loss = track.objective.loss(eps_net, x0, step)
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(track.net.parameters(), cfg.optim.grad_clip)
    track.optimizer.step()
    track.optimizer.zero_grad(set_to_none=True)
    track.ema.update_parameters(accelerator.unwrap_model(track.net))
    return float(loss.detach())


def run_training(
    cfg: TrainConfig, batches: Iterator[tuple[torch.Tensor, list[str]]] | None = None
) -> Path:
    """Train to cfg.steps (resuming from out_dir) and return the last checkpoint directory."""
    accelerator = make_accelerator(cfg)
    torch.manual_seed(cfg.seed)
    encoder: TextEncoder = cfg.text_encoder.build()
    space: ModelSpace = build_space(cfg.vae_path, cfg.data.resolution, accelerator.device)
    args = NetArgs(space.channels, space.sample_size, encoder.dim)
    tracks = build_tracks(cfg, args, accelerator)
    start = resume(cfg, tracks, accelerator)
    batches = batches or webdataset_batches(
        cfg.data.shards,
        cfg.data.resolution,
        cfg.data.batch_size,
        cfg.data.shuffle_buffer,
        cfg.data.num_workers,
        cfg.data.caption,
        cfg.data.short_probability,
        cfg.data.hands_subset_ratio,
    )
    gen = torch.Generator().manual_seed(cfg.seed + start)
    for step in range(start, cfg.steps):
        images, captions = next(batches)
        x0 = space.encode(images.to(accelerator.device))
        ctx = encoder.encode(drop_captions(captions, cfg.data.caption_dropout, gen))
        ctx = ctx.to(accelerator.device)
        losses = {t.objective.name: train_step(accelerator, t, x0, ctx, step, cfg) for t in tracks}
        if step % cfg.log_every == 0:
            lrs = {t.objective.name: t.optimizer.param_groups[0]["lr"] for t in tracks}
            log.info("step %d loss %s lr %s", step, losses, lrs)
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            states: dict[str, Any] = {
                t.objective.family: track_state(t, accelerator) for t in tracks
            }
            if accelerator.is_main_process:
                save_checkpoint(cfg, step + 1, args, states)
            accelerator.wait_for_everyone()
    last = latest_checkpoint(cfg.out_dir)
    assert last is not None  # steps >= 1, so at least one save happened
    return last
