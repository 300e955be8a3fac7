"""ProxT2I: text-to-image proximal diffusion (Fang et al., "Beyond Scores: Proximal Diffusion
Models", NeurIPS 2025, made text-conditional) trained and evaluated on the final shards.

Registries (registry key -> pydantic config model) for every extension point of the package,
each kept beside its extension point: objectives, samplers, text encoders, rewards.
"""

from __future__ import annotations

from proxt2i.objectives import OBJECTIVES
from proxt2i.rewards import REWARDS
from proxt2i.samplers import SAMPLERS
from proxt2i.text import TEXT_ENCODERS

__all__ = ["OBJECTIVES", "REWARDS", "SAMPLERS", "TEXT_ENCODERS"]
