"""Training objectives, one per file, and their registry.

``OBJECTIVES`` maps a config ``type`` to its pydantic config model; ``ObjectiveConfig``, the
union the training config's ``objectives`` validate against, is built from it, so an objective
is its own file plus one line here. ``config.build()`` returns the ``Objective``.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import BaseModel

from manifests.registry import Registered
from proxt2i.objectives.base import Objective
from proxt2i.objectives.eps_mse import EpsMseConfig
from proxt2i.objectives.prox_matching import ProxMatchingConfig

OBJECTIVES: dict[str, type[BaseModel]] = {
    "prox_matching": ProxMatchingConfig,
    "eps_mse": EpsMseConfig,
}


class ObjectiveSettings(Protocol):
    """What every member of ``OBJECTIVES`` offers: the static type of ``ObjectiveConfig``."""

    @property
    def type(self) -> str: ...

    def build(self) -> Objective: ...


ObjectiveConfig = Annotated[ObjectiveSettings, Registered(OBJECTIVES)]

__all__ = ["OBJECTIVES", "ObjectiveConfig"]
