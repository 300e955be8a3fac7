"""The objective contract: one training loss for one network family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from proxt2i.samplers.base import Family

# (y, t, lam) -> eps with the text context already bound.
EpsNet = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Objective(Protocol):
    """A loss on a batch of clean data x0; `step` drives loss schedules (warm-up, annealing)."""

    name: str
    family: Family

    def loss(self, net: EpsNet, x0: torch.Tensor, step: int) -> torch.Tensor: ...

    def phase(self, step: int) -> tuple[str, int]:
        """(learning-rate phase name, the step that phase began at): a key of
        `optim.phases` (proxt2i/lr_schedule.py)."""
        ...


def per_sample(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the batch axis."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def broadcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) so it scales a batch of images."""
    return v.view([v.shape[0]] + [1] * (like.ndim - 1))
