"""What a checkpoint was trained for, and the guards that refuse anything else.

A proximal network is a learned prox_{lambda (-log p_t)} only at the (t, lambda) pairs it was
trained on: ProxDM draws them from the grids of a fixed set of step counts and one
discretisation (src/prox_diff/utils/img_exp/t_lamb_sampling.py, `discretization` and
`step_candidates`), so a hybrid-trained network has never seen the backward lambdas
gamma / (1 - gamma / 2), nor the grid of an unseen N. The score network is trained on
continuous t in [t_min, 1], so any grid whose first point 1/N is >= t_min is in range.
Classifier-free guidance needs the unconditional branch that caption dropout trains
(Ho & Salimans 2022). The record is written into state.json at every save, under
"trained_for"; checkpoints saved before it existed get it from their config.yaml through
`laionface record-training CKPT`, never silently.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxt2i.config import ConfigError, TrainConfig, validate_tree
from proxt2i.objectives.eps_mse import EpsMseConfig
from proxt2i.objectives.prox_matching import ProxMatchingConfig

RECORD_KEY = "trained_for"
PROX_SAMPLERS = {"hybrid": "pda_hybrid", "backward": "pda_backward"}
SCORE_SAMPLERS = ("score_sde", "score_ode")


@dataclass(frozen=True)
class NetworkRecord:
    """One network: its objective, the discretisation it serves and its step counts.

    `discretization` is pda_hybrid, pda_backward or score; `step_counts` are the training grids
    of a proximal network (None for score); `t_min` the smallest training time of a score one.
    """

    family: str
    objective: str
    discretization: str
    step_counts: tuple[int, ...] | None = None
    t_min: float | None = None

    @property
    def samplers(self) -> tuple[str, ...]:
        return SCORE_SAMPLERS if self.discretization == "score" else (self.discretization,)

    @property
    def max_steps(self) -> int | None:
        """Score networks: the largest N whose grid point t_1 = 1/N is still >= t_min."""
        return None if self.t_min is None else math.floor(1 / self.t_min + 1e-9)

    def allows(self, steps: int) -> bool:
        if self.step_counts is not None:
            return steps in self.step_counts
        return self.max_steps is None or steps <= self.max_steps

    def describe(self) -> str:
        if self.step_counts is not None:
            return f"{self.discretization} with N in {{{', '.join(map(str, self.step_counts))}}}"
        return f"{'/'.join(self.samplers)} with N <= {self.max_steps}"


@dataclass(frozen=True)
class TrainingRecord:
    """Every network of a checkpoint plus the caption dropout all of them trained with."""

    caption_dropout: float
    networks: tuple[NetworkRecord, ...]

    def network(self, family: str) -> NetworkRecord | None:
        return next((n for n in self.networks if n.family == family), None)

    def describe(self) -> str:
        return " and ".join(n.describe() for n in self.networks)

    def to_json(self) -> dict[str, Any]:
        nets = {
            n.family: {k: v for k, v in n.__dict__.items() if k != "family"} for n in self.networks
        }
        return {"caption_dropout": self.caption_dropout, "networks": nets}

    @classmethod
    def from_json(cls, tree: Mapping[str, Any]) -> TrainingRecord:
        nets = []
        for family, net in tree["networks"].items():
            counts = net.get("step_counts")
            nets.append(
                NetworkRecord(
                    family,
                    net["objective"],
                    net["discretization"],
                    tuple(counts) if counts is not None else None,
                    net.get("t_min"),
                )
            )
        return cls(float(tree["caption_dropout"]), tuple(nets))


def record_from_config(cfg: TrainConfig) -> TrainingRecord:
    """The record of a run: one entry per objective, as the training loop builds them."""
    nets = []
    for obj in cfg.objectives:
        if isinstance(obj, ProxMatchingConfig):
            disc = PROX_SAMPLERS[obj.discretization]
            nets.append(NetworkRecord("prox", obj.type, disc, tuple(sorted(obj.step_counts))))
        elif isinstance(obj, EpsMseConfig):
            nets.append(NetworkRecord("score", obj.type, "score", t_min=obj.t_min))
        else:  # a newly registered objective says here what its network is trained for
            raise TypeError(f"objective {obj.type!r} has no training record")
    return TrainingRecord(cfg.data.caption_dropout, tuple(nets))


def untracked_message(ckpt: Path) -> str:
    return (
        f"checkpoint {ckpt} has no training record (saved before checkpoints recorded what "
        f"they were trained for); add it from its config.yaml with "
        f"`laionface record-training {ckpt}`, or retrain"
    )


def read_record(ckpt: Path) -> TrainingRecord:
    """The record in CKPT/state.json; a checkpoint without one is refused (see module doc)."""
    state = Path(ckpt) / "state.json"
    if not state.is_file():
        raise ConfigError(f"not a checkpoint directory (no state.json): {ckpt}")
    meta = json.loads(state.read_text())
    if RECORD_KEY not in meta:
        raise ConfigError(untracked_message(Path(ckpt)))
    return TrainingRecord.from_json(meta[RECORD_KEY])


def add_record(ckpt: Path) -> TrainingRecord:
    """Write the record of an old checkpoint from the config.yaml saved beside it.

    That file is the resolved config the training loop read, so the record is exact unless the
    run was resumed with different objectives. state.json is replaced atomically.
    """
    import yaml

    state = Path(ckpt) / "state.json"
    if not state.is_file():
        raise ConfigError(f"not a checkpoint directory (no state.json): {ckpt}")
    meta = json.loads(state.read_text())
    if RECORD_KEY in meta:
        return TrainingRecord.from_json(meta[RECORD_KEY])
    cfg = validate_tree(yaml.safe_load((Path(ckpt) / "config.yaml").read_text()), str(ckpt))
    record = record_from_config(cfg)
    meta[RECORD_KEY] = record.to_json()
    tmp = state.with_name("state.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, state)
    return record


def _family_fix(record: TrainingRecord, sampler: str) -> str:
    """The fix when the sampler's network family is not in the checkpoint at all."""
    others = "/".join(s for n in record.networks for s in n.samplers)
    objective = "an eps_mse" if sampler in SCORE_SAMPLERS else "a prox_matching"
    return f"use --sampler {others} or retrain with {objective} objective"


def check_sampling(
    ckpt: Path, record: TrainingRecord, sampler: str, steps: int, guidance: float
) -> None:
    """Refuse (a one-line ConfigError) a sampler, N or guidance the networks never trained for."""
    family = "score" if sampler in SCORE_SAMPLERS else "prox"
    net = record.network(family)
    head = f"checkpoint {ckpt} was trained for {record.describe()}; asked {sampler} with N={steps}"
    if net is None:
        raise ConfigError(f"{head}; {_family_fix(record, sampler)}")
    if sampler not in net.samplers:
        other = "backward" if sampler == "pda_backward" else "hybrid"
        raise ConfigError(
            f"{head}; use --sampler {net.discretization} or retrain with prox_matching "
            f"discretization: {other}"
        )
    if not net.allows(steps):
        fix = (
            f"use N in {{{', '.join(map(str, net.step_counts))}}} or add {steps} to the "
            "prox_matching step_counts and retrain"
            if net.step_counts is not None
            else f"use N <= {net.max_steps} or retrain with a smaller eps_mse t_min"
        )
        raise ConfigError(f"{head}; {fix}")
    check_guidance(ckpt, record, guidance)


def check_plan(
    ckpt: Path, samplers: list[str], steps: list[int], guidance: float
) -> TrainingRecord:
    """Check every (sampler, N) of a plan from state.json alone, before any weights load."""
    record = read_record(ckpt)
    for sampler in samplers:
        for n in steps:
            check_sampling(ckpt, record, sampler, n, guidance)
    check_guidance(ckpt, record, guidance)
    return record


def check_guidance(ckpt: Path, record: TrainingRecord, guidance: float) -> None:
    """Guidance w != 1 mixes in eps(y, t, lambda, ""), which only caption dropout trains."""
    if guidance != 1.0 and record.caption_dropout == 0.0:
        raise ConfigError(
            f"checkpoint {ckpt} was trained without caption dropout (data.caption_dropout = 0), "
            f"so it has no unconditional branch for guidance {guidance:g}; use guidance 1 or "
            "retrain with data.caption_dropout > 0"
        )
