"""Text-to-image generation from a checkpoint with classifier-free guidance.

Guidance is applied to eps for both families: eps = eps_u + w (eps_c - eps_u). For the proximal
network this is our reading of "proximal CFG" (ProxT2I): the guided prox is
y - sqrt(lambda) eps_guided, i.e. the same affine mix of the conditional and unconditional
proximal outputs. w = 1 is the conditional model alone (one network call per step).
Every generation is checked against the checkpoint's training record first (record.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from proxt2i.checkpoint import NetArgs, load_ema_net, read_checkpoint_meta
from proxt2i.config import TrainConfig
from proxt2i.model import EpsUNet
from proxt2i.record import TrainingRecord, check_sampling, read_record
from proxt2i.samplers.base import EpsFn, Sampler
from proxt2i.seeded_chain import sample_per_generator
from proxt2i.space import ModelSpace, build_space
from proxt2i.text import TextEncoder
from proxt2i.text_context import TextContext


@dataclass
class LoadedModel:
    """A checkpoint ready for sampling: EMA networks per family, text encoder, model space,
    and what the networks were trained for (`ckpt` names the checkpoint in refusals)."""

    cfg: TrainConfig
    nets: dict[str, EpsUNet]
    encoder: TextEncoder
    space: ModelSpace
    args: NetArgs
    device: torch.device
    ckpt: Path
    record: TrainingRecord


@functools.lru_cache(maxsize=2)
def load_model(ckpt: Path, device: str = "cpu") -> LoadedModel:
    """Refuses a checkpoint without a training record before loading any weights."""
    record = read_record(ckpt)
    cfg, meta = read_checkpoint_meta(ckpt)
    dev = torch.device(device)
    nets = {fam: load_ema_net(ckpt, fam, dev) for fam in meta["families"]}
    space = build_space(cfg.vae_path, cfg.data.resolution, dev)
    args = NetArgs(**meta["net_args"])
    return LoadedModel(cfg, nets, cfg.text_encoder.build(), space, args, dev, Path(ckpt), record)


def guided_eps(net: EpsUNet, ctx: TextContext, null: TextContext, w: float) -> EpsFn:
    """Bind text and guidance: eps_u + w (eps_c - eps_u), batched in one forward pass
    (`null` is the encoding of "", the unconditional context caption dropout trains)."""

    both_ctx = TextContext.cat([ctx, null])

    def eps_fn(y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if w == 1.0:
            return net(y, t, lam, ctx)
        both = net(torch.cat([y, y]), torch.cat([t, t]), torch.cat([lam, lam]), both_ctx)
        eps_c, eps_u = both.chunk(2)
        return eps_u + w * (eps_c - eps_u)

    return eps_fn


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] (B, 3, H, W) -> uint8 (B, H, W, 3)."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate(
    model: LoadedModel,
    sampler: Sampler,
    prompts: list[str],
    steps: int,
    guidance: float,
    seed: int,
) -> np.ndarray:
    """One image per prompt, uint8 (B, H, W, 3); deterministic given the seed.

    Raises ConfigError when the checkpoint was not trained for (sampler, steps, guidance).
    """
    check_sampling(model.ckpt, model.record, sampler.name, steps, guidance)
    net = model.nets[sampler.family]
    gen = torch.Generator().manual_seed(seed)
    shape = (len(prompts), model.args.channels, model.args.sample_size, model.args.sample_size)
    noise = torch.randn(shape, generator=gen).to(model.device)
    ctx = model.encoder.encode(prompts).to(model.device)
    null = model.encoder.encode([""] * len(prompts)).to(model.device)
    x0 = sampler.sample(guided_eps(net, ctx, null, guidance), noise, steps, gen)
    return to_uint8(model.space.decode(x0))


def network_calls(steps: int, guidance: float) -> int:
    """Network evaluations per image (NFE): `guided_eps` runs the conditional and the
    unconditional branch at every step unless w = 1, so a guided step costs 2."""
    return steps * (1 if guidance == 1.0 else 2)


@torch.no_grad()
def generate_seeded(
    model: LoadedModel,
    sampler: Sampler,
    prompts: list[str],
    steps: int,
    guidance: float,
    seeds: list[int],
) -> np.ndarray:
    """Image i from prompts[i] and its own generator seeded by seeds[i] (initial noise first,
    then the step noise), so a chunk's images do not depend on what else is in the chunk;
    with one prompt this is `generate` with that seed. uint8 (B, H, W, 3)."""
    check_sampling(model.ckpt, model.record, sampler.name, steps, guidance)
    net = model.nets[sampler.family]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    shape = (1, model.args.channels, model.args.sample_size, model.args.sample_size)
    noise = torch.cat([torch.randn(shape, generator=g) for g in gens]).to(model.device)
    ctx = model.encoder.encode(prompts).to(model.device)
    null = model.encoder.encode([""] * len(prompts)).to(model.device)
    x0 = sample_per_generator(sampler, guided_eps(net, ctx, null, guidance), noise, steps, gens)
    return to_uint8(model.space.decode(x0))
