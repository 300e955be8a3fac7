"""The train / sample / evaluate subcommands as the top-level CLI will mount them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from proxt2i.cli import add_commands


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="laionface")
    add_commands(p.add_subparsers(dest="command", required=True))
    return p


def test_evaluate_parses_lists() -> None:
    args = parser().parse_args(
        [
            "evaluate",
            "ck",
            "--prompts",
            "p.txt",
            "--steps",
            "5,10,20",
            "--samplers",
            "pda_hybrid,score_ode",
            "--reference",
            "s/{0..1}.tar",
            "--out",
            "o",
        ]
    )
    assert args.steps == [5, 10, 20]
    assert args.samplers == ["pda_hybrid", "score_ode"]
    assert args.reference == "s/{0..1}.tar" and args.guidance == 1.0


def test_finetune_and_record_training_parse() -> None:
    args = parser().parse_args(["finetune", "ck", "ft.yaml", "--set", "grpo.steps=5"])
    assert (args.ckpt, args.config, args.set) == (Path("ck"), Path("ft.yaml"), ["grpo.steps=5"])
    assert parser().parse_args(["record-training", "ck"]).ckpt == Path("ck")


def test_bad_finetune_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    cfg = tmp_path / "ft.yaml"
    cfg.write_text("out_dir: x\niterations: 1\nprompts: p\nheldout_prompts: h\n"
                   "reward: {type: face_quality}\ngrpo: {stepz: 3}\n")  # fmt: skip
    assert main(["finetune", str(tmp_path / "ck"), str(cfg)]) == 2  # before the checkpoint
    assert capsys.readouterr().err.strip() == (
        f"laionface finetune: config error in {cfg}: grpo.stepz: unknown key"
    )


def test_bad_steps_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["evaluate", "ck", "--prompts", "p", "--steps", "5,x", "--out", "o"])
    assert "expected comma-separated integers, got '5,x'" in capsys.readouterr().err


def test_sample_handler_writes_images(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser().parse_args(
        [
            "sample",
            str(tiny_checkpoint),
            "--prompt",
            "a face",
            "--steps",
            "3",
            "--sampler",
            "pda_hybrid",
            "--guidance",
            "4",
            "--seed",
            "0",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "s" / "0000.png").is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "s")


def test_bad_config_is_one_line_and_exit_code_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("out_dir: x\nsteps: 1\ndata: {shards: a.tar}\nbackbone: {depth: 3}\n")
    from pipeline.cli import main

    assert main(["train", str(cfg)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"laionface train: config error in {cfg}: backbone.depth: unknown key"
    )
    assert captured.out == ""
