"""How often the proximal-matching draw picks each step count N of `step_counts`.

ProxDM (src/prox_diff/utils/img_exp/t_lamb_sampling.py, lines 31-39) draws N from its step
candidates with weights `log` (log10 N) or `root_p` (N^(1/p)); its CIFAR-10 and latent
CelebA-HQ runs use root_p with p = 3 (configs/cifar10/prox_hybrid.py line 16,
configs/celeba_hq_vae/prox_hybrid.py line 19), which favours the long grids more than log10.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from manifests.registry import Registered

# log10(1) = 0 would never draw N = 1; a floor keeps every listed grid in the draw.
LOG10_FLOOR = 1e-3


class Log10Weights(BaseModel):
    """w(N) = log10 N (ProxDM's `log` weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["log10"] = "log10"

    def weights(self, counts: torch.Tensor) -> torch.Tensor:
        return torch.log10(counts.double()).clamp_min(LOG10_FLOOR)


class RootPWeights(BaseModel):
    """w(N) = N^(1/p) (ProxDM's `root_p` weights; p = 3 in its CIFAR-10 and latent runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["root_p"] = "root_p"
    p: float = Field(default=3.0, gt=0)

    def weights(self, counts: torch.Tensor) -> torch.Tensor:
        return counts.double() ** (1.0 / self.p)


STEP_WEIGHTS: dict[str, type[BaseModel]] = {
    "log10": Log10Weights,
    "root_p": RootPWeights,
}


class StepWeightsSettings(Protocol):
    """What every member of ``STEP_WEIGHTS`` offers: the static type of ``StepWeights``."""

    def weights(self, counts: torch.Tensor) -> torch.Tensor:
        """Unnormalised float64 draw weights, one per step count of ``counts``."""
        ...


StepWeights = Annotated[StepWeightsSettings, Registered(STEP_WEIGHTS)]
