"""AdamW with an EMA copy of the weights: what training (train.py) and GRPO fine-tuning
(finetune_run.py) both build, update, save and resume.

A network's checkpoint state is {"model", "ema", "ema_n", "optimizer"} (checkpoint.py saves one
per family); sampling reads the EMA weights.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class AdamWSettings(Protocol):
    """The optimizer keys shared by `optim` of the training and the fine-tuning configs."""

    @property
    def lr(self) -> float: ...

    @property
    def betas(self) -> tuple[float, float]: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def ema_decay(self) -> float: ...


def adamw_with_ema(
    net: nn.Module, settings: AdamWSettings
) -> tuple[torch.optim.Optimizer, AveragedModel]:
    """(AdamW over `net`'s parameters, an EMA copy of `net` with decay `ema_decay`).

    The EMA copy is taken before any wrapping (torch.compile, accelerate), so it holds plain
    weights that load into a plain network.
    """
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay))
    optimizer = torch.optim.AdamW(
        net.parameters(),
        lr=settings.lr,
        betas=settings.betas,
        weight_decay=settings.weight_decay,
    )
    return optimizer, ema


def training_state(
    net: nn.Module, ema: AveragedModel, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """What a checkpoint keeps of one network under training; `net` unwrapped."""
    return {
        "model": net.state_dict(),
        "ema": ema.module.state_dict(),
        "ema_n": int(ema.n_averaged),
        "optimizer": optimizer.state_dict(),
    }


def load_training_state(
    state: dict[str, Any], net: nn.Module, ema: AveragedModel, optimizer: torch.optim.Optimizer
) -> None:
    """Restore what `training_state` saved, in place, so a resumed run continues exactly."""
    net.load_state_dict(state["model"])
    ema.module.load_state_dict(state["ema"])
    ema.n_averaged.fill_(state["ema_n"])
    optimizer.load_state_dict(state["optimizer"])
