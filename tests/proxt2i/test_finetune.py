"""`laionface finetune CKPT CONFIG` on a tiny checkpoint with a cheap registered reward: the
aesthetic head (random weights) on a random-weight open_clip model, both local files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from pipeline.cli import main
from proxt2i import api
from proxt2i.api import SampleRequest
from proxt2i.checkpoint import load_family_state
from proxt2i.config import ConfigError
from proxt2i.finetune_run import read_log

FIELDS = {
    "iteration",
    "reward_mean",
    "reward_std",
    "kl",
    "clip_fraction",
    "loss",
    "heldout_reward",
}


@pytest.fixture(scope="module")
def reward(tiny_open_clip: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The `aesthetic` reward config: tiny CLIP plus a seeded random linear head."""
    ckpt, arch = tiny_open_clip
    head = tmp_path_factory.mktemp("head") / "head.pt"
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(16, 1).state_dict(), head)
    return {
        "type": "aesthetic",
        "model_name": "tiny-clip",
        "checkpoint": str(ckpt),
        "architecture_json": str(arch),
        "head": str(head),
    }


def write_config(root: Path, reward: dict, **grpo: Any) -> Path:
    """A 2-iteration run: 4 training prompts, 2 per iteration, groups of 2, 2 minibatches."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.txt").write_text("a face\na smiling woman\nan old man\na child laughing\n")
    (root / "heldout.txt").write_text("a portrait\n")
    tree = {
        "out_dir": str(root / "ft"),
        "iterations": 2,
        "save_every": 1,
        "eval_every": 5,
        "prompts": str(root / "train.txt"),
        "heldout_prompts": str(root / "heldout.txt"),
        "reward": reward,
        "grpo": {"steps": 2, "guidance": 2.0, "group_size": 2, "prompts_per_iteration": 2}
        | {"minibatches": 2, "kl_coef": 0.1}
        | grpo,
        "optim": {"lr": 1e-3},
    }
    (root / "ft.yaml").write_text(yaml.safe_dump(tree))
    return root / "ft.yaml"


@pytest.fixture(scope="module")
def finetuned(
    tiny_checkpoint: Path, reward: dict, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """(run root, stdout) of `laionface finetune` run straight through."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("finetune")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["finetune", str(tiny_checkpoint), str(write_config(root, reward))]) == 0
    return root, out.getvalue()


def test_finetune_command_logs_every_iteration(finetuned: tuple[Path, str]) -> None:
    root, stdout = finetuned
    assert stdout.strip() == str(root / "ft" / "checkpoints" / "step_0000005")  # 3 + 2
    rows = read_log(root / "ft")
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert all(set(r) == FIELDS for r in rows[:2])
    assert set(rows[2]) == {"iteration", "heldout_reward"}  # the final network's
    assert [r["heldout_reward"] is None for r in rows] == [False, True, False]
    assert rows[0]["kl"] == 0.0  # the policy that rolled out is the reference
    assert rows[1]["kl"] > 0  # after one update
    assert all(r["reward_std"] > 0 for r in rows[:2])
    assert all(0 <= r["clip_fraction"] <= 1 for r in rows[:2])


def test_the_fine_tune_is_a_checkpoint_sample_reads(
    finetuned: tuple[Path, str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = Path(finetuned[1].strip())
    meta = json.loads((out / "state.json").read_text())
    source = json.loads((tiny_checkpoint / "state.json").read_text())
    assert meta["trained_for"] == source["trained_for"]
    assert (meta["finetune"]["iteration"], meta["finetune"]["source"]) == (
        2,
        str(tiny_checkpoint.resolve()),
    )
    assert state_equal(load_family_state(tiny_checkpoint, "score"), load_family_state(out, "score"))
    before, after = load_family_state(tiny_checkpoint, "prox"), load_family_state(out, "prox")
    assert not state_equal(before["ema"], after["ema"])
    assert after["ema_n"] == 2 and after["optimizer"]["state"][0]["step"] == 4  # 2 x 2 minibatches
    sample = api.sample(
        SampleRequest(out, ("a face",), tmp_path / "s", steps=2, sampler="pda_hybrid", guidance=2.0)
    )
    assert (sample / "0000.png").is_file()


def state_equal(a: Any, b: Any) -> bool:
    """Exact equality of nested state dicts (tensors compared bitwise)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_resume_continues_with_identical_state(
    finetuned: tuple[Path, str], tiny_checkpoint: Path, reward: dict, tmp_path: Path
) -> None:
    straight = Path(finetuned[1].strip())
    cfg = write_config(tmp_path, reward)
    first = api.finetune(tiny_checkpoint, cfg, ["iterations=1"])
    assert first.name == "step_0000004"
    resumed = api.finetune(tiny_checkpoint, cfg, [])
    assert resumed.name == straight.name == "step_0000005"
    assert state_equal(load_family_state(straight, "prox"), load_family_state(resumed, "prox"))
    assert read_log(tmp_path / "ft") == read_log(finetuned[0] / "ft")
    assert api.finetune(tiny_checkpoint, cfg, []) == resumed  # done: nothing runs
    assert read_log(tmp_path / "ft") == read_log(finetuned[0] / "ft")


def refusal(ckpt: Path, cfg: Path, overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as caught:
        api.finetune(ckpt, cfg, overrides)
    return str(caught.value)


def test_finetune_refuses_what_the_checkpoint_was_not_trained_for(
    tiny_checkpoint: Path, backward_checkpoint: Path, reward: dict, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path, reward)
    assert refusal(tiny_checkpoint, cfg, ["grpo.steps=4"]) == (
        f"checkpoint {tiny_checkpoint} was trained for pda_hybrid with N in {{2, 3, 5}} and "
        "score_sde/score_ode with N <= 1000; asked pda_hybrid with N=4; use N in {2, 3, 5} or "
        "add 4 to the prox_matching step_counts and retrain"
    )
    assert refusal(backward_checkpoint, cfg, ["grpo.steps=10"]) == (
        f"checkpoint {backward_checkpoint} was trained without caption dropout "
        "(data.caption_dropout = 0), so it has no unconditional branch for guidance 2; use "
        "guidance 1 or retrain with data.caption_dropout > 0"
    )
    untracked = tmp_path / "old"
    shutil.copytree(tiny_checkpoint, untracked)
    meta = json.loads((untracked / "state.json").read_text())
    del meta["trained_for"]
    (untracked / "state.json").write_text(json.dumps(meta))
    assert refusal(untracked, cfg, []) == (
        f"checkpoint {untracked} has no training record (saved before checkpoints recorded what "
        f"they were trained for); add it from its config.yaml with "
        f"`laionface record-training {untracked}`, or retrain"
    )
    (tmp_path / "heldout.txt").write_text("a face\n")
    assert refusal(tiny_checkpoint, cfg, []) == (
        "1 held-out prompts are also training prompts (first: 'a face'); the reported reward "
        "must come from prompts GRPO never trains on"
    )
    assert not (tmp_path / "ft").exists()  # nothing ran


def test_a_backward_network_is_fine_tuned_on_its_own_chain(
    backward_checkpoint: Path, reward: dict, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path, reward, steps=10, guidance=1.0)
    out = api.finetune(backward_checkpoint, cfg, ["iterations=1"])
    rows = read_log(tmp_path / "ft")
    assert [r["iteration"] for r in rows] == [0, 1] and rows[0]["kl"] == 0.0
    assert (
        api.sample(
            SampleRequest(out, ("a face",), tmp_path / "s", steps=10, sampler="pda_backward")
        )
        / "0000.png"
    ).is_file()
