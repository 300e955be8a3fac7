"""A checkpoint knows what it was trained for; sample and evaluate refuse anything else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from proxt2i import api
from proxt2i.api import SampleRequest
from proxt2i.config import ConfigError
from proxt2i.evaluate_config import EvalConfig
from proxt2i.record import read_record

BOTH = "pda_hybrid with N in {2, 3, 5} and score_sde/score_ode with N <= 1000"


def refusal(ckpt: Path, sampler: str, steps: int, guidance: float, out: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        api.sample(
            SampleRequest(ckpt, ("a face",), out, steps=steps, sampler=sampler, guidance=guidance)
        )
    assert not out.exists()  # refused before any image
    return str(caught.value)


def test_the_record_is_saved_with_every_checkpoint(tiny_checkpoint: Path) -> None:
    meta = json.loads((tiny_checkpoint / "state.json").read_text())
    assert meta["trained_for"] == {
        "caption_dropout": 0.1,
        "networks": {
            "prox": {
                "objective": "prox_matching",
                "discretization": "pda_hybrid",
                "step_counts": [2, 3, 5],
                "t_min": None,
            },
            "score": {
                "objective": "eps_mse",
                "discretization": "score",
                "step_counts": None,
                "t_min": 0.001,
            },
        },
    }
    assert read_record(tiny_checkpoint).describe() == BOTH


def test_wrong_discretisation_unseen_n_and_out_of_range_score_grid(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    head = f"checkpoint {tiny_checkpoint} was trained for {BOTH}; asked"
    assert refusal(tiny_checkpoint, "pda_backward", 5, 1.0, tmp_path / "a") == (
        f"{head} pda_backward with N=5; use --sampler pda_hybrid or retrain with "
        "prox_matching discretization: backward"
    )
    assert refusal(tiny_checkpoint, "pda_hybrid", 7, 1.0, tmp_path / "b") == (
        f"{head} pda_hybrid with N=7; use N in {{2, 3, 5}} or add 7 to the prox_matching "
        "step_counts and retrain"
    )
    assert refusal(tiny_checkpoint, "score_ode", 2000, 1.0, tmp_path / "c") == (
        f"{head} score_ode with N=2000; use N <= 1000 or retrain with a smaller eps_mse t_min"
    )


def test_backward_network_without_dropout(backward_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = backward_checkpoint
    head = f"checkpoint {ckpt} was trained for pda_backward with N in {{10}}; asked"
    assert refusal(ckpt, "pda_hybrid", 10, 1.0, tmp_path / "a") == (
        f"{head} pda_hybrid with N=10; use --sampler pda_backward or retrain with "
        "prox_matching discretization: hybrid"
    )
    assert refusal(ckpt, "score_sde", 10, 1.0, tmp_path / "b") == (
        f"{head} score_sde with N=10; use --sampler pda_backward or retrain with an eps_mse "
        "objective"
    )
    assert refusal(ckpt, "pda_backward", 10, 4.0, tmp_path / "c") == (
        f"checkpoint {ckpt} was trained without caption dropout (data.caption_dropout = 0), so "
        "it has no unconditional branch for guidance 4; use guidance 1 or retrain with "
        "data.caption_dropout > 0"
    )
    out = api.sample(
        SampleRequest(ckpt, ("a face",), tmp_path / "ok", steps=10, sampler="pda_backward")
    )
    assert (out / "0000.png").is_file()  # what it was trained for runs


def test_evaluate_refuses_the_plan_before_sampling(
    backward_checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "p.txt").write_text("a face\n")
    with pytest.raises(ConfigError) as caught:
        cfg = EvalConfig(out_dir=tmp_path / "e", prompts=tmp_path / "p.txt", steps=(10, 20),
                         samplers=("pda_backward",))  # fmt: skip
        api.evaluate(backward_checkpoint, cfg)
    assert str(caught.value) == (
        f"checkpoint {backward_checkpoint} was trained for pda_backward with N in {{10}}; asked "
        "pda_backward with N=20; use N in {10} or add 20 to the prox_matching step_counts and "
        "retrain"
    )
    assert not (tmp_path / "e").exists()


def test_an_untracked_checkpoint_is_refused_until_recorded(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old"
    shutil.copytree(tiny_checkpoint, old)
    meta = json.loads((old / "state.json").read_text())
    del meta["trained_for"]  # as saved before records existed
    (old / "state.json").write_text(json.dumps(meta))
    args = ["sample", str(old), "--prompt", "a face", "--steps", "3", "--out", str(tmp_path / "s")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"laionface sample: checkpoint {old} has no training record (saved before checkpoints "
        f"recorded what they were trained for); add it from its config.yaml with "
        f"`laionface record-training {old}`, or retrain"
    )
    assert main(["record-training", str(old)]) == 0
    assert capsys.readouterr().out.strip() == f"{old}: trained for {BOTH}"
    assert read_record(old) == read_record(tiny_checkpoint)
    assert main(args) == 0
    assert (tmp_path / "s" / "0000.png").is_file()
