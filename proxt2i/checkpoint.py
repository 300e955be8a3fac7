"""Checkpoints: weights + optimizer + EMA + step + resolved config, one directory per save.

OUT/checkpoints/step_XXXXXXX/
    <family>.pt     {"model", "ema", "ema_n", "optimizer"} for each trained network
    state.json      {"step", "families", "net_args", "conditioning", "trained_for"[, "finetune"]}:
                    net_args are the EpsUNet constructor args, conditioning the text encoder's
                    `output` (tokens or pooled: what the networks cross-attend to), trained_for
                    the TrainingRecord (record.py), finetune the GRPO run's state when the
                    checkpoint is a fine-tune
    config.yaml     the resolved TrainConfig

A checkpoint without "conditioning" was saved before token conditioning: its minilm or
open_clip networks were trained on the one pooled embedding, so it loads with `output: pooled`
and samples as it always did; an hf_text one attended to padded tokens without a mask, which no
encoder reproduces any more, so it is refused.
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

CONDITIONING_KEY = "conditioning"


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
    meta[CONDITIONING_KEY] = cfg.text_encoder.output
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
    """The saved config, with the text encoder the networks were trained with, and state.json."""
    ckpt = Path(ckpt)
    if not (ckpt / "state.json").is_file():
        raise ConfigError(f"not a checkpoint directory (no state.json): {ckpt}")
    cfg = validate_tree(yaml.safe_load((ckpt / "config.yaml").read_text()), str(ckpt))
    meta = json.loads((ckpt / "state.json").read_text())
    return with_conditioning(cfg, meta.get(CONDITIONING_KEY), ckpt), meta


def with_conditioning(cfg: TrainConfig, kind: str | None, ckpt: Path) -> TrainConfig:
    """`cfg` whose text encoder gives what the checkpoint's networks cross-attend to."""
    encoder = cfg.text_encoder
    if kind is None:  # saved before token conditioning (module doc)
        if encoder.type == "hf_text":
            raise ConfigError(
                f"checkpoint {ckpt} was trained on hf_text tokens without a padding mask "
                "(saved before masked token conditioning); retrain it"
            )
        kind = "pooled"
    if kind != encoder.output:
        encoder = encoder.model_copy(update={"output": kind})
        cfg = cfg.model_copy(update={"text_encoder": encoder})
    return cfg


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
