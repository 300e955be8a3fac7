"""Samplers, one algorithm per file, and their registry.

``SAMPLERS`` maps a sampler's name (as configs and the CLI spell it) to its pydantic config
model; a sampler is its own file plus one line here. ``SAMPLERS[name]().build()`` returns the
``Sampler``. Configs name samplers by key, so there is no config union.
"""

from __future__ import annotations

from pydantic import BaseModel

from proxt2i.samplers.pda_backward import PdaBackwardConfig
from proxt2i.samplers.pda_hybrid import PdaHybridConfig
from proxt2i.samplers.score_ode import ScoreOdeConfig
from proxt2i.samplers.score_sde import ScoreSdeConfig

SAMPLERS: dict[str, type[BaseModel]] = {
    "pda_hybrid": PdaHybridConfig,
    "pda_backward": PdaBackwardConfig,
    "score_sde": ScoreSdeConfig,
    "score_ode": ScoreOdeConfig,
}

__all__ = ["SAMPLERS"]
