"""Sampling in which every sample owns its random stream, so a set generated in chunks of any
size is, image for image, the set generated in one batch (the evaluator's chunking relies on it).

A sampler draws its step noise for the whole batch from one generator, so its draws depend on
the batch. Here each step runs twice per sample on a one-row slice: first with an eps-function
that only records its input (the generator's state is saved before and restored after), then,
once the recorded inputs of all samples went through the network in one batched call, with an
eps-function that returns that sample's answer. The network still runs once per step on the
whole chunk; the sampler's own step code, grid and last step are reused unchanged (tested equal
to `sampler.sample` on a batch of one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from proxt2i.samplers.base import EpsFn, GridSampler, Sampler, tweedie


class _OneCall:
    """The eps-function of one sample's step: records (y, t, lam), later replays an answer."""

    def __init__(self) -> None:
        self.inputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.answer: torch.Tensor | None = None

    def __call__(self, y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if self.answer is not None:
            return self.answer
        self.inputs.append((y, t, lam))
        return torch.zeros_like(y)


def _step_each(
    sampler: GridSampler,
    eps_fn: EpsFn,
    x: torch.Tensor,
    k: int,
    grid: tuple[torch.Tensor, torch.Tensor],
    generators: Sequence[torch.Generator],
) -> torch.Tensor:
    """x_{k-1} for every row of x, row i drawing its noise from generators[i]."""
    states = [g.get_state() for g in generators]
    calls = [_OneCall() for _ in generators]
    for i, call in enumerate(calls):
        sampler.step(call, x[i : i + 1], k, grid, generators[i])
        if len(call.inputs) != 1:  # a multi-call step would need one batched call per call
            raise TypeError(f"{sampler.name}: a step must call the network exactly once")
    y, t, lam = (torch.cat(parts) for parts in zip(*(c.inputs[0] for c in calls), strict=True))
    eps = eps_fn(y, t, lam)
    out = []
    for i, call in enumerate(calls):
        generators[i].set_state(states[i])
        call.answer = eps[i : i + 1]
        out.append(sampler.step(call, x[i : i + 1], k, grid, generators[i]))
    return torch.cat(out)


def sample_per_generator(
    sampler: Sampler,
    eps_fn: EpsFn,
    noise: torch.Tensor,
    steps: int,
    generators: Sequence[torch.Generator],
) -> torch.Tensor:
    """`sampler.sample` with row i of `noise` driven by generators[i]; N batched network calls.

    Mirrors GridSampler.sample: check the grid, step k = N..1 (prox) or N..2 then Tweedie at
    t_1 (score). A sampler that is not a GridSampler runs row by row (correct, unbatched).
    """
    if len(generators) != len(noise):
        raise ValueError(f"{len(generators)} generators for {len(noise)} samples")
    if not isinstance(sampler, GridSampler):
        rows = [
            sampler.sample(eps_fn, noise[i : i + 1], steps, g) for i, g in enumerate(generators)
        ]
        return torch.cat(rows)
    grid = sampler.schedule.grid(steps), sampler.schedule.gammas(steps)
    sampler.check(grid[1])
    last = 1 if sampler.family == "prox" else 2
    x = noise
    for k in range(steps, last - 1, -1):
        x = _step_each(sampler, eps_fn, x, k, grid, generators)
    if sampler.family == "prox":
        return x
    return tweedie(sampler.schedule, eps_fn, x, float(grid[0][1]))
