"""State of a GRPO run: the trained copy, its frozen reference, EMA, optimizer; save and resume.

A fine-tuned checkpoint has the layout of a trained one (checkpoint.py), so `sample` and
`evaluate` read it as they read any other: prox.pt holds the fine-tuned weights, their EMA and
the optimizer, the other networks are copied from the source, the training record is the
source's. state.json adds {"finetune": {"source", "iteration", "config"}}; re-running the
same command resumes from the latest such checkpoint under out_dir.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from proxt2i.checkpoint import (
    latest_checkpoint,
    load_family_state,
    read_checkpoint_meta,
    save_checkpoint,
)
from proxt2i.config import ConfigError
from proxt2i.ema_adamw import adamw_with_ema, load_training_state, training_state
from proxt2i.finetune_config import FinetuneConfig
from proxt2i.generate import LoadedModel
from proxt2i.model import EpsUNet

log = logging.getLogger(__name__)
LOG_NAME = "log.jsonl"


@dataclass
class FinetuneRun:
    """`iteration` is the number of GRPO iterations already done."""

    net: EpsUNet
    reference: EpsUNet
    ema: AveragedModel
    optimizer: torch.optim.Optimizer
    iteration: int


def start_run(model: LoadedModel, cfg: FinetuneConfig, source: Path) -> FinetuneRun:
    """A fresh copy of the source's EMA prox network, or the state saved under out_dir."""
    reference = model.nets["prox"].eval().requires_grad_(False)
    net = copy.deepcopy(reference).train().requires_grad_(True)
    opt, ema = adamw_with_ema(net, cfg.optim)
    run = FinetuneRun(net, reference, ema, opt, 0)
    latest = latest_checkpoint(cfg.out_dir)
    if latest is not None:
        _resume(run, latest, source)
    return run


def _resume(run: FinetuneRun, ckpt: Path, source: Path) -> None:
    meta = json.loads((ckpt / "state.json").read_text())
    done = meta.get("finetune")
    if done is None:
        raise ConfigError(f"{ckpt} is not a fine-tune; give finetune an out_dir of its own")
    if Path(done["source"]) != source.resolve():
        raise ConfigError(
            f"{ckpt} fine-tunes {done['source']}, not {source.resolve()}; use another out_dir"
        )
    load_training_state(load_family_state(ckpt, "prox"), run.net, run.ema, run.optimizer)
    run.iteration = int(done["iteration"])
    log.info("resuming the fine-tune in %s at iteration %d", ckpt, run.iteration)


def save_run(model: LoadedModel, run: FinetuneRun, cfg: FinetuneConfig, source: Path) -> Path:
    """Checkpoint step = the source's step + iterations done."""
    train_cfg, meta = read_checkpoint_meta(source)
    states: dict[str, Any] = {
        fam: load_family_state(source, fam) for fam in meta["families"] if fam != "prox"
    }
    states["prox"] = training_state(run.net, run.ema, run.optimizer)
    done = {
        "source": str(source.resolve()),
        "iteration": run.iteration,
        "config": cfg.model_dump(mode="json"),
    }
    out_cfg = train_cfg.model_copy(update={"out_dir": Path(cfg.out_dir)})
    step = int(meta["step"]) + run.iteration
    return save_checkpoint(out_cfg, step, model.args, states, model.record, {"finetune": done})


def truncate_log(out_dir: Path, start: int) -> None:
    """Drop rows of iterations >= start, written after the checkpoint a resume starts from."""
    path = Path(out_dir) / LOG_NAME
    if not path.is_file():
        return
    rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in rows if json.loads(ln)["iteration"] < start]
    path.write_text("".join(f"{ln}\n" for ln in kept))


def append_log(out_dir: Path, row: dict[str, Any]) -> None:
    path = Path(out_dir) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    log.info("grpo %s", row)


def read_log(out_dir: Path) -> list[dict[str, Any]]:
    """Every row of OUT/log.jsonl, in order."""
    path = Path(out_dir) / LOG_NAME
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
