"""`laionface train` and `laionface sample` on the shards the demo published (CLI end to end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main

CPU_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "proxt2i-cpu.yaml"


def test_train_three_steps_then_sample(
    reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tars = sorted((reference_run / "shards").glob("*.tar"))
    assert len(tars) == 2  # the demo publishes 4 samples in tars of 3
    shards = str(reference_run / "shards" / "{00000..00001}.tar")
    out = tmp_path / "train"
    args = ["train", str(CPU_CONFIG), "--set", f"data.shards={shards}", "--set", f"out_dir={out}",
            "--set", "steps=3", "--set", "save_every=3", "--set", "data.batch_size=2",
            "--set", "data.caption=mixed"]  # fmt: skip
    assert main(args) == 0
    checkpoint = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert checkpoint == out / "checkpoints" / "step_0000003" and checkpoint.is_dir()
    samples = tmp_path / "samples"
    assert main(["sample", str(checkpoint), "--prompt", "a smiling woman", "--steps", "5",
                 "--sampler", "pda_hybrid", "--guidance", "4", "--seed", "0",
                 "--out", str(samples)]) == 0  # fmt: skip
    pngs = sorted(p.name for p in samples.glob("*.png"))
    assert "grid.png" in pngs and len(pngs) >= 2
