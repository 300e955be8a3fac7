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
from proxt2i.api import SampleRequest
from proxt2i.checkpoint import latest_checkpoint, load_ema_net, load_family_state
from proxt2i.config import ConfigError, TrainConfig, load_config
from proxt2i.data import webdataset_batches
from proxt2i.lr_schedule import PhasesConfig, learning_rate
from proxt2i.objectives.prox_matching import ProxMatchingConfig
from proxt2i.objectives.step_weights import RootPWeights
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
    # L1 for steps 0-1, proximal matching from step 2, warming up over 2 steps
    tree["objectives"][0]["l1_warmup_steps"] = 2
    tree["optim"]["phases"] = {"pm": {"lr": 1e-4, "warmup_steps": 2}}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tree))
    first = api.train(cfg_path, [])
    before = load_family_state(first, "prox")["model"]
    assert load_family_state(first, "prox")["optimizer"]["param_groups"][0]["lr"] == 3e-4
    second = api.train(cfg_path, ["steps=3"])
    assert [p.name for p in sorted((tmp_path / "out" / "checkpoints").iterdir())] == [
        "step_0000002",
        "step_0000003",
    ]
    state = load_family_state(second, "prox")
    assert state["optimizer"]["state"][0]["step"] == 3  # one more step, not three from scratch
    assert state["optimizer"]["param_groups"][0]["lr"] == 5e-5  # step 2: half-way up to 1e-4
    assert state["ema_n"] == 3
    assert any(not torch.equal(before[k], state["model"][k]) for k in before)
    assert api.train(cfg_path, ["steps=3"]) == second  # already done: nothing to train
    assert latest_checkpoint(tmp_path / "out") == second


def test_sampling_shapes_and_determinism(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def run(seed: int, out: str) -> list[np.ndarray]:
        request = SampleRequest(
            tiny_checkpoint,
            ("a face", "a smiling person"),
            tmp_path / out,
            steps=3,
            guidance=4.0,
            seed=seed,
            images_per_prompt=2,
        )
        d = api.sample(request)
        return [np.asarray(Image.open(d / f"{i:04d}.png")) for i in range(4)]

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    assert [im.shape for im in a] == [(16, 16, 3)] * 4
    assert (tmp_path / "a" / "grid.png").is_file()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_score_samplers_use_the_score_network(tiny_checkpoint: Path, tmp_path: Path) -> None:
    for name in ("score_ode", "score_sde"):
        out = api.sample(
            SampleRequest(tiny_checkpoint, ("a face",), tmp_path / name, steps=2, sampler=name)
        )
        assert np.asarray(Image.open(out / "0000.png")).shape == (16, 16, 3)


def test_unknown_sampler_and_missing_family_are_clear_errors(
    shards: str, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    with pytest.raises(ConfigError, match="unknown sampler 'euler'; choose from"):
        api.sample(SampleRequest(tiny_checkpoint, ("x",), tmp_path / "x", steps=2, sampler="euler"))
    tree = cpu_config(shards, tmp_path / "prox_only", steps=1)
    tree["objectives"] = tree["objectives"][:1]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(tree))
    ckpt = api.train(tmp_path / "p.yaml", [])
    with pytest.raises(ConfigError) as caught:
        api.sample(SampleRequest(ckpt, ("x",), tmp_path / "y", steps=2, sampler="score_ode"))
    assert str(caught.value) == (
        f"checkpoint {ckpt} was trained for pda_hybrid with N in {{2, 3, 5}}; asked score_ode "
        "with N=2; use --sampler pda_hybrid or retrain with an eps_mse objective"
    )


def test_config_errors_name_the_offending_key(tmp_path: Path) -> None:
    base = Path(__file__).parents[2] / "configs" / "proxt2i-cpu.yaml"
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key"):
        load_config(base, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")
    cfg = load_config(base, ["objectives.0.zeta_milestones=[1200, 1800]", "data.batch_size=3"])
    assert cfg.objectives[0].zeta_milestones == (1200, 1800)  # type: ignore[union-attr]
    assert cfg.data.batch_size == 3
    with pytest.raises(ConfigError, match=r"optim\.phases\.score: unknown key"):
        load_config(base, ["optim.phases.score={lr: 0.1}"])
    with pytest.raises(ConfigError) as caught:
        load_config(base, ["objectives.0.step_weights={type: root_p, p: 0}"])
    assert str(caught.value) == (
        f"config error in {base}: objectives.0.step_weights.p: Input should be greater than 0 "
        "(got 0)"
    )


def rates(cfg: TrainConfig, family: int, steps: tuple[int, ...]) -> list[float]:
    objective = cfg.objectives[family].build()
    o = cfg.optim
    return [learning_rate(objective, s, o.lr, o.warmup_steps, o.phases) for s in steps]


def test_the_gpu_preset_is_the_latent_proxdm_run() -> None:
    cfg = load_config(Path(__file__).parents[2] / "configs" / "proxt2i-gpu.yaml")
    prox, score = cfg.objectives
    assert isinstance(prox, ProxMatchingConfig) and score.type == "eps_mse"
    assert (prox.zeta_init, prox.zeta_decay, prox.zeta_milestones) == (2.0, 0.5, (900_000,))
    assert prox.step_weights == RootPWeights(p=3) and prox.l1_warmup_steps == 300_000
    assert cfg.steps == 1_500_000 and cfg.text_encoder.output == "tokens"
    # L1 at 1e-4, proximal matching at 2e-5; the score baseline warms up to 2e-5 over 5000
    assert rates(cfg, 0, (0, 299_999, 300_000, 1_499_999)) == [1e-4, 1e-4, 2e-5, 2e-5]
    assert rates(cfg, 1, (0, 2_499, 4_999, 1_000_000)) == [2e-5 / 5000, 1e-5, 2e-5, 2e-5]


def test_learning_rate_phases_and_warm_ups(tmp_path: Path) -> None:
    base = Path(__file__).parents[2] / "configs" / "proxt2i-cpu.yaml"
    sets = ["optim.lr=0.001", "optim.warmup_steps=10", "objectives.0.l1_warmup_steps=20"]
    cfg = load_config(base, sets)
    # the run's warm-up covers the L1 phase only; pm (1e-4) starts at 20 without one
    assert rates(cfg, 0, (0, 4, 9, 19, 20, 25)) == [1e-4, 5e-4, 1e-3, 1e-3, 1e-4, 1e-4]
    assert rates(cfg, 1, (0, 9, 20)) == [1e-4, 1e-3, 1e-3]
    cfg = load_config(base, [*sets, "optim.phases.pm={lr: 0.0004, warmup_steps: 4}"])
    assert rates(cfg, 0, (19, 20, 21, 23, 500)) == [1e-3, 1e-4, 2e-4, 4e-4, 4e-4]


def test_every_objective_phase_has_an_optim_setting() -> None:
    from proxt2i import OBJECTIVES

    names = {
        cfg().build().phase(step)[0]  # type: ignore[attr-defined]
        for cfg in OBJECTIVES.values()
        for step in (0, 10**9)
    }
    assert names == set(PhasesConfig.model_fields) == {"l1", "pm", "eps_mse"}
