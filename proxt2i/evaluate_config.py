"""The evaluation config (`laionface evaluate CKPT --config EVAL.yaml`, or the same keys as
flags): one YAML file, validated at load, whose keys fail with their dotted path.

The checkpoint brings the networks, text encoder, model space and what they were trained for;
this file brings the plan (samplers x steps x guidance), the sample count and chunk size, the
held-out reference shards whose captions are the prompts, and the metrics' settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxt2i.config import read_tree, validate_as
from proxt2i.rewards import ClipScoreConfig


class ReferenceConfig(BaseModel):
    """Held-out shards: their images are FID/KID's reference, their captions the prompts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shards: str  # brace-expandable tar URLs, disjoint from the checkpoint's data.shards
    count: int = Field(default=1000, ge=2)  # reference images read, in shard order


class KidConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # torch-fidelity's and clean-fid's defaults (100 subsets of at most 1000 images)
    subsets: int = Field(default=100, ge=1)
    subset_size: int = Field(default=1000, ge=2)


class EvalConfig(BaseModel):
    """One evaluation: every (sampler, steps, guidance) row, each on `samples` images."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    out_dir: Path
    samplers: tuple[str, ...] = Field(
        default=("pda_hybrid", "score_ode", "score_sde"), min_length=1
    )
    steps: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(5, 10, 20, 50), min_length=1)
    # CFG weights w (eps_u + w (eps_c - eps_u)); several make a sweep
    guidance: tuple[Annotated[float, Field(ge=0)], ...] = Field(default=(1.0,), min_length=1)
    seed: int = 0  # sample i of every row draws from the stream seeded by (seed, i)
    # generated images per row; None: one per prompt (reference captions or the prompts file)
    samples: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=1)  # images per generation / Inception chunk
    reference: ReferenceConfig | None = None
    prompts: Path | None = None  # a prompts file (one per line) instead of reference captions
    images_per_prompt: int = Field(default=1, ge=1)  # with `prompts`
    kid: KidConfig = KidConfig()
    clip: ClipScoreConfig | None = None
    face_reward: bool = True  # face detection rate and face sharpness
    grid_images: int = Field(default=64, ge=0)  # the first images of a row go into its grid
    device: str | None = None  # default: cuda when available

    @field_validator("samplers")
    @classmethod
    def _known_samplers(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from proxt2i import SAMPLERS

        for name in names:
            if name not in SAMPLERS:
                raise ValueError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
        return names


def load_eval_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> EvalConfig:
    """Read, override (`--set kid.subsets=50`) and validate; problems are one-line ConfigErrors."""
    return validate_as(EvalConfig, read_tree(path, overrides), str(path))
