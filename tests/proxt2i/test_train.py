"""CPU training on small real shards: smoke run, checkpoint round trip, resume, sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from proxt2i import api
from proxt2i.checkpoint import latest_checkpoint, load_ema_net, load_family_state
from proxt2i.config import ConfigError, load_config
from proxt2i.data import webdataset_batches
from tests.proxt2i.conftest import cpu_config


def test_stream_yields_resized_batches_in_range(shards: str) -> None:
    images, captions = next(webdataset_batches(shards, 16, 4, shuffle_buffer=8))
    assert images.shape == (4, 3, 16, 16)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    assert set(captions) <= {"a close-up photo of a face", "a portrait of a person smiling"}


def test_three_step_training_writes_a_complete_checkpoint(tiny_checkpoint: Path) -> None:
    assert tiny_checkpoint.name == "step_0000003"
    meta = json.loads((tiny_checkpoint / "state.json").read_text())
    assert meta["step"] == 3
    assert meta["families"] == ["prox", "score"]
    assert meta["net_args"] == {"channels": 3, "sample_size": 16, "context_dim": 384}
    state = load_family_state(tiny_checkpoint, "prox")
    assert set(state) == {"model", "ema", "ema_n", "optimizer"}
    assert state["ema_n"] == 3
    assert state["optimizer"]["state"][0]["step"] == 3  # AdamW took three steps
    saved = yaml.safe_load((tiny_checkpoint / "config.yaml").read_text())
    assert saved["steps"] == 3 and saved["objectives"][1]["type"] == "eps_mse"


def test_checkpoint_round_trip_restores_ema_weights(tiny_checkpoint: Path) -> None:
    net = load_ema_net(tiny_checkpoint, "prox", torch.device("cpu"))
    saved = load_family_state(tiny_checkpoint, "prox")["ema"]
    for name, value in net.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_resume_continues_from_the_latest_checkpoint(shards: str, tmp_path: Path) -> None:
    tree = cpu_config(shards, tmp_path / "out", steps=2)
    tree["objectives"] = tree["objectives"][:1]
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tree))
    first = api.train(cfg_path, [])
    before = load_family_state(first, "prox")["model"]
    second = api.train(cfg_path, ["steps=3"])
    assert [p.name for p in sorted((tmp_path / "out" / "checkpoints").iterdir())] == [
        "step_0000002",
        "step_0000003",
    ]
    state = load_family_state(second, "prox")
    assert state["optimizer"]["state"][0]["step"] == 3  # one more step, not three from scratch
    assert state["ema_n"] == 3
    assert any(not torch.equal(before[k], state["model"][k]) for k in before)
    assert api.train(cfg_path, ["steps=3"]) == second  # already done: nothing to train
    assert latest_checkpoint(tmp_path / "out") == second


def test_sampling_shapes_and_determinism(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def run(seed: int, out: str) -> list[np.ndarray]:
        d = api.sample(
            tiny_checkpoint,
            ["a face", "a smiling person"],
            3,
            "pda_hybrid",
            4.0,
            seed,
            tmp_path / out,
            images_per_prompt=2,
        )
        return [np.asarray(Image.open(d / f"{i:04d}.png")) for i in range(4)]

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    assert [im.shape for im in a] == [(16, 16, 3)] * 4
    assert (tmp_path / "a" / "grid.png").is_file()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_score_samplers_use_the_score_network(tiny_checkpoint: Path, tmp_path: Path) -> None:
    for name in ("score_ode", "score_sde"):
        out = api.sample(tiny_checkpoint, ["a face"], 2, name, 1.0, 0, tmp_path / name)
        assert np.asarray(Image.open(out / "0000.png")).shape == (16, 16, 3)


def test_unknown_sampler_and_missing_family_are_clear_errors(
    shards: str, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    with pytest.raises(ConfigError, match="unknown sampler 'euler'; choose from"):
        api.sample(tiny_checkpoint, ["x"], 2, "euler", 1.0, 0, tmp_path / "x")
    tree = cpu_config(shards, tmp_path / "prox_only", steps=1)
    tree["objectives"] = tree["objectives"][:1]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(tree))
    ckpt = api.train(tmp_path / "p.yaml", [])
    with pytest.raises(ConfigError) as caught:
        api.sample(ckpt, ["x"], 2, "score_ode", 1.0, 0, tmp_path / "y")
    assert str(caught.value) == (
        f"checkpoint {ckpt} was trained for pda_hybrid with N in {{2, 3, 5}}; asked score_ode "
        "with N=2; use --sampler pda_hybrid or retrain with an eps_mse objective"
    )


def test_config_errors_name_the_offending_key(tmp_path: Path) -> None:
    base = Path(__file__).parents[2] / "configs" / "proxt2i-cpu.yaml"
    with pytest.raises(ConfigError, match=r"optim\.lrr: Extra inputs are not permitted"):
        load_config(base, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    cfg = load_config(base, ["objectives.0.zeta_milestones=[5, 9]", "data.batch_size=3"])
    assert cfg.objectives[0].zeta_milestones == (5, 9)  # type: ignore[union-attr]
    assert cfg.data.batch_size == 3
    load_config(Path(__file__).parents[2] / "configs" / "proxt2i-gpu.yaml")
