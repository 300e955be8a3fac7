"""The evaluator end to end on a tiny checkpoint, and the rewards it uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from proxt2i import REWARDS, api
from proxt2i.fid import frechet_distance, inception_features
from proxt2i.rewards import ClipScoreConfig, FaceDetectedConfig, FaceQualityConfig


def test_face_quality_reward_uses_the_pipeline_detector() -> None:
    from skimage import data

    images = np.stack([data.astronaut()[:400], data.coffee()[:, :512]])
    scores = FaceQualityConfig().build().score(images, ["a woman", "coffee"])
    # sharpness of Eileen Collins' face (dlib box, Laplacian variance); no face in the coffee cup
    assert scores[0] == pytest.approx(140.108, rel=1e-3)
    assert scores[1] == 0.0
    assert FaceDetectedConfig().build().score(images, ["a woman", "coffee"]).tolist() == [1.0, 0.0]


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise() -> None:
    from skimage import data

    base = np.stack([np.roll(data.astronaut()[::16, ::16], s, axis=1) for s in range(6)])
    noisy = np.clip(base + np.random.default_rng(0).normal(0, 60, base.shape), 0, 255)
    fa, fb = inception_features(base), inception_features(noisy.astype(np.uint8))
    assert fa.shape == (6, 2048)
    assert abs(frechet_distance(fa, fa)) < 1e-3
    assert frechet_distance(fa, fb) > 10.0


def test_evaluator_writes_json_plot_and_grids(
    tiny_checkpoint: Path, shards: str, tmp_path: Path, tiny_open_clip: tuple[Path, Path]
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a close-up photo of a face\n\na portrait of a person smiling\n")
    ckpt, arch = tiny_open_clip
    clip = ClipScoreConfig(model_name="tiny-clip", checkpoint=ckpt, architecture_json=arch)
    out = api.evaluate(
        tiny_checkpoint,
        prompts,
        [2, 3],
        ["pda_hybrid", "score_ode", "score_sde"],
        tmp_path / "eval",
        reference=shards,
        guidance=2.0,
        clip=clip,
        n_reference=8,
    )
    result = json.loads(out.read_text())
    rows = result["results"]
    assert [(r["sampler"], r["steps"]) for r in rows] == [
        (s, n) for s in ("pda_hybrid", "score_ode", "score_sde") for n in (2, 3)
    ]
    for r in rows:
        assert r["n_images"] == 2
        assert r["fid"] > 0
        assert 0 <= r["clip_score"] <= 100
        assert r["face_quality"] == 0.0  # 16-px samples of a 3-step model hold no face
        assert r["face_detected"] == 0.0
        assert r["seconds_per_image"] > 0
    assert Image.open(tmp_path / "eval" / "metrics.png").size[0] > 100
    grid = Image.open(tmp_path / "eval" / "grids" / "pda_hybrid_0003.png")
    assert grid.size == (2 * 16, 16)


def test_evaluator_rejects_bad_inputs_before_sampling(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="prompts file not found"):
        api.evaluate(tiny_checkpoint, tmp_path / "none.txt", [2], ["pda_hybrid"], tmp_path)
    (tmp_path / "p.txt").write_text("a face\n")
    with pytest.raises(ValueError, match="unknown sampler 'ddim'"):
        api.evaluate(tiny_checkpoint, tmp_path / "p.txt", [2], ["ddim"], tmp_path)


def test_reward_registry() -> None:
    assert sorted(REWARDS) == ["aesthetic", "clip_score", "face_detected", "face_quality"]


@pytest.mark.parametrize(("n", "d"), [(6, 20), (50, 20)])
def test_frechet_distance_matches_the_matrix_square_root_formula(n: int, d: int) -> None:
    import scipy.linalg

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n + 3, d)) * 1.3 + 0.2
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(scipy.linalg.sqrtm(sa @ sb))
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa + sb - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
