"""ProxT2I: text-to-image proximal diffusion (Fang et al., "Beyond Scores: Proximal Diffusion
Models", NeurIPS 2025, made text-conditional) trained and evaluated on the final shards.

Registries (registry key -> pydantic config model) for every extension point of the package.
"""

from __future__ import annotations

from pydantic import BaseModel

from proxt2i.objectives.eps_mse import EpsMseConfig
from proxt2i.objectives.prox_matching import ProxMatchingConfig
from proxt2i.reward_aesthetic import AestheticConfig
from proxt2i.rewards import ClipScoreConfig, FaceDetectedConfig, FaceQualityConfig
from proxt2i.samplers.pda_backward import PdaBackwardConfig
from proxt2i.samplers.pda_hybrid import PdaHybridConfig
from proxt2i.samplers.score_ode import ScoreOdeConfig
from proxt2i.samplers.score_sde import ScoreSdeConfig
from proxt2i.text import HfTextConfig, MiniLmConfig, OpenClipTextConfig

SAMPLERS: dict[str, type[BaseModel]] = {
    "pda_hybrid": PdaHybridConfig,
    "pda_backward": PdaBackwardConfig,
    "score_sde": ScoreSdeConfig,
    "score_ode": ScoreOdeConfig,
}
OBJECTIVES: dict[str, type[BaseModel]] = {
    "prox_matching": ProxMatchingConfig,
    "eps_mse": EpsMseConfig,
}
TEXT_ENCODERS: dict[str, type[BaseModel]] = {
    "minilm": MiniLmConfig,
    "open_clip": OpenClipTextConfig,
    "hf_text": HfTextConfig,
}

REWARDS: dict[str, type[BaseModel]] = {
    "face_quality": FaceQualityConfig,
    "face_detected": FaceDetectedConfig,
    "clip_score": ClipScoreConfig,
    "aesthetic": AestheticConfig,
}
