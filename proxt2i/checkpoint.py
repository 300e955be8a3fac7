"""Checkpoints: weights + optimizer + EMA + step + resolved config, one directory per save.

OUT/checkpoints/step_XXXXXXX/
    <family>.pt     {"model", "ema", "ema_n", "optimizer"} for each trained network
    state.json      {"step", "families", "net_args", "trained_for"[, "finetune"]}: net_args are
                    the EpsUNet constructor args, trained_for the TrainingRecord (record.py),
                    finetune the GRPO run's state when the checkpoint is a fine-tune
    config.yaml     the resolved TrainConfig
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from proxt2i.config import ConfigError, TrainConfig, dump_config, validate_tree
from proxt2i.model import EpsUNet
from proxt2i.record import RECORD_KEY, TrainingRecord, record_from_config


@dataclass(frozen=True)
class NetArgs:
    """Constructor arguments of EpsUNet besides the backbone config."""

    channels: int
    sample_size: int
    context_dim: int


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"step_{step:07d}"


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    root = Path(out_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())
    return done[-1] if done else None


def save_checkpoint(
    cfg: TrainConfig,
    step: int,
    args: NetArgs,
    states: Mapping[str, dict[str, Any]],
    record: TrainingRecord | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write every file to a temp dir, then rename: a checkpoint with state.json is complete.

    `record` defaults to the one the config describes (a training run); a fine-tune passes its
    source's. `extra` adds keys to state.json.
    """
    final = checkpoint_dir(cfg.out_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for family, state in states.items():
        torch.save(state, tmp / f"{family}.pt")
    (tmp / "config.yaml").write_text(dump_config(cfg))
    meta: dict[str, Any] = {"step": step, "families": sorted(states), "net_args": args.__dict__}
    meta[RECORD_KEY] = (record or record_from_config(cfg)).to_json()
    meta.update(extra or {})
    (tmp / "state.json").write_text(json.dumps(meta, indent=2))
    if final.exists():
        for f in final.iterdir():
            f.unlink()
        final.rmdir()
    os.replace(tmp, final)
    return final


def read_checkpoint_meta(ckpt: Path) -> tuple[TrainConfig, dict[str, Any]]:
    ckpt = Path(ckpt)
    if not (ckpt / "state.json").is_file():
        raise ConfigError(f"not a checkpoint directory (no state.json): {ckpt}")
    cfg = validate_tree(yaml.safe_load((ckpt / "config.yaml").read_text()), str(ckpt))
    return cfg, json.loads((ckpt / "state.json").read_text())


def load_family_state(ckpt: Path, family: str) -> dict[str, Any]:
    path = Path(ckpt) / f"{family}.pt"
    if not path.is_file():
        raise ConfigError(f"{ckpt} has no {family} network; train it with its objective")
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def load_ema_net(ckpt: Path, family: str, device: torch.device) -> EpsUNet:
    """The EMA weights of one network, rebuilt from the saved constructor arguments."""
    cfg, meta = read_checkpoint_meta(ckpt)
    args = NetArgs(**meta["net_args"])
    net = cfg.backbone.build(args.channels, args.sample_size, args.context_dim)
    net.load_state_dict(load_family_state(ckpt, family)["ema"])
    return net.to(device).eval()
