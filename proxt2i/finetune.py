"""`laionface finetune CKPT CONFIG`: GRPO (grpo.py) on the PDA chain a checkpoint was trained for.

Per iteration: a minibatch of training prompts (each prompt once per pass, reshuffled per
pass), group_size guided rollouts each at the checkpoint's discretisation and N, one GRPO
update, an EMA update, one log row in OUT/log.jsonl. Every eval_every iterations (and after the
last) the EMA network samples the held-out prompts with the evaluation sampler at the same N
and guidance, with a fixed seed, and their mean reward is logged as heldout_reward. The random
draws of iteration i come from a generator seeded by (seed, i), so a resumed run continues
exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxt2i import SAMPLERS
from proxt2i.api import read_prompts
from proxt2i.checkpoint import latest_checkpoint
from proxt2i.config import ConfigError
from proxt2i.finetune_config import FinetuneConfig
from proxt2i.finetune_run import FinetuneRun, append_log, save_run, start_run, truncate_log
from proxt2i.generate import LoadedModel, generate, guided_eps, load_model, to_uint8
from proxt2i.grpo import GrpoConfig, Policy, grpo_iteration
from proxt2i.model import EpsUNet
from proxt2i.pda_chain import PdaChain
from proxt2i.record import check_sampling, read_record
from proxt2i.rewards import Reward
from proxt2i.text_context import TextContext


def finetune_sampler(ckpt: Path, grpo: GrpoConfig) -> str:
    """The PDA sampler the checkpoint's prox network was trained for, once N and guidance pass
    the item-1 guards (record.py); ConfigError otherwise."""
    record = read_record(ckpt)
    net = record.network("prox")
    if net is None:
        raise ConfigError(
            f"checkpoint {ckpt} was trained for {record.describe()}; GRPO fine-tunes a "
            "proximal chain (pda_hybrid or pda_backward): retrain with a prox_matching objective"
        )
    check_sampling(ckpt, record, net.discretization, grpo.steps, grpo.guidance)
    return net.discretization


def prompt_sets(cfg: FinetuneConfig) -> tuple[list[str], list[str]]:
    """(training, held-out) prompts; a held-out prompt seen in training is refused."""
    train, heldout = read_prompts(cfg.prompts), read_prompts(cfg.heldout_prompts)
    seen = sorted(set(train) & set(heldout))
    if seen:
        raise ConfigError(
            f"{len(seen)} held-out prompts are also training prompts (first: {seen[0]!r}); "
            "the reported reward must come from prompts GRPO never trains on"
        )
    return train, heldout


def prompt_batch(prompts: list[str], iteration: int, size: int, seed: int) -> list[str]:
    """Prompts [i * size, (i + 1) * size) of the endless sequence of seeded permutations."""
    out = []
    for j in range(iteration * size, (iteration + 1) * size):
        epoch, pos = divmod(j, len(prompts))
        perm = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed + epoch))
        out.append(prompts[int(perm[pos])])
    return out


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    # distinct streams per (seed, iteration); the odd multiplier keeps seeds from colliding
    return torch.Generator().manual_seed(seed * 1_000_003 + iteration)


def bind(net: EpsUNet, ctx: TextContext, null: TextContext, w: float) -> Policy:
    """The guided eps of the chosen samples, with evaluation's CFG (generate.guided_eps)."""
    return lambda idx: guided_eps(net, ctx[idx], null[idx], w)


def image_reward(
    model: LoadedModel, reward: Reward, prompts: list[str]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """x_0 in model space -> rewards, through the decoder and the uint8 image reward."""

    def score(x0: torch.Tensor) -> torch.Tensor:
        images = to_uint8(model.space.decode(x0))
        return torch.as_tensor(reward.score(images, prompts), dtype=torch.float64)

    return score


def heldout_reward(
    model: LoadedModel,
    run: FinetuneRun,
    sampler: str,
    prompts: list[str],
    reward: Reward,
    cfg: FinetuneConfig,
) -> float:
    """Mean reward of the EMA network's samples (what `sample` will produce) on held-out prompts."""
    ema_net: EpsUNet = run.ema.module  # type: ignore[assignment]  # AveragedModel wraps an EpsUNet
    ema_model = dataclasses.replace(model, nets={**model.nets, "prox": ema_net})
    built = SAMPLERS[sampler]().build()  # type: ignore[attr-defined]
    images = generate(ema_model, built, prompts, cfg.grpo.steps, cfg.grpo.guidance, cfg.seed)
    return float(np.mean(reward.score(images, prompts)))


def one_iteration(
    model: LoadedModel,
    run: FinetuneRun,
    chain: PdaChain,
    prompts: list[str],
    reward: Reward,
    cfg: FinetuneConfig,
) -> dict[str, Any]:
    """One GRPO update on the iteration's prompt minibatch; returns its log row."""
    g = cfg.grpo
    batch = prompt_batch(prompts, run.iteration, g.prompts_per_iteration, cfg.seed)
    expanded = [p for p in batch for _ in range(g.group_size)]
    ctx = model.encoder.encode(expanded).to(model.device)
    null = model.encoder.encode([""] * len(expanded)).to(model.device)
    gen = iteration_generator(cfg.seed, run.iteration)
    shape = (len(expanded), model.args.channels, model.args.sample_size, model.args.sample_size)
    noise = torch.randn(shape, generator=gen).to(model.device)
    stats = grpo_iteration(
        bind(run.net, ctx, null, g.guidance),
        bind(run.reference, ctx, null, g.guidance),
        chain,
        noise,
        image_reward(model, reward, expanded),
        run.net,
        run.optimizer,
        g,
        gen,
        cfg.optim.grad_clip,
    )
    run.ema.update_parameters(run.net)
    return {"iteration": run.iteration, **dataclasses.asdict(stats)}


def run_finetune(ckpt: Path, cfg: FinetuneConfig) -> Path:
    """Fine-tune (or resume) to cfg.iterations; returns the last checkpoint directory."""
    ckpt = Path(ckpt)
    sampler = finetune_sampler(ckpt, cfg.grpo)
    prompts, heldout = prompt_sets(cfg)
    model = load_model(ckpt, "cuda" if torch.cuda.is_available() else "cpu")
    run = start_run(model, cfg, ckpt)
    if run.iteration >= cfg.iterations:  # done already: the log stays as it is
        done = latest_checkpoint(cfg.out_dir)
        assert done is not None  # the run resumed from it
        return done
    reward: Reward = cfg.reward.build()
    chain = PdaChain.build(sampler, cfg.grpo.steps, cfg.grpo.last_step_std)
    truncate_log(cfg.out_dir, run.iteration)
    last = None
    while run.iteration < cfg.iterations:
        held = None  # of the network entering the iteration, like its kl
        if run.iteration % cfg.eval_every == 0:
            held = heldout_reward(model, run, sampler, heldout, reward, cfg)
        row = one_iteration(model, run, chain, prompts, reward, cfg) | {"heldout_reward": held}
        run.iteration += 1
        append_log(cfg.out_dir, row)
        if run.iteration % cfg.save_every == 0 or run.iteration == cfg.iterations:
            last = save_run(model, run, cfg, ckpt)
    final = heldout_reward(model, run, sampler, heldout, reward, cfg)
    append_log(cfg.out_dir, {"iteration": run.iteration, "heldout_reward": final})
    assert last is not None  # the last iteration always saves
    return last
