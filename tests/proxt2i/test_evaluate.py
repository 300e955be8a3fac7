"""The evaluator: chunked seeded generation, held-out references, FID/KID/CLIP rows per
(sampler, steps, guidance), NFE with guidance, and the rewards it uses."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pipeline.cli import main
from proxt2i import REWARDS, SAMPLERS, api
from proxt2i.config import ConfigError, validate_as
from proxt2i.evaluate_config import EvalConfig, ReferenceConfig
from proxt2i.fake_network import AffineEpsNet
from proxt2i.fid import frechet_distance, inception_features, kernel_inception_distance
from proxt2i.generate import generate, generate_seeded, load_model, network_calls
from proxt2i.rewards import FaceDetectedConfig, FaceQualityConfig
from proxt2i.seeded_chain import sample_per_generator
from tests.proxt2i.conftest import CAPTIONS, cpu_config, one_thread, write_shard


def test_face_quality_reward_uses_the_pipeline_detector() -> None:
    from skimage import data

    images = np.stack([data.astronaut()[:400], data.coffee()[:, :512]])
    scores = FaceQualityConfig().build().score(images, ["a woman", "coffee"])
    # sharpness of Eileen Collins' face (dlib box, Laplacian variance); no face in the coffee cup
    assert scores[0] == pytest.approx(140.108, rel=1e-3)
    assert scores[1] == 0.0
    assert FaceDetectedConfig().build().score(images, ["a woman", "coffee"]).tolist() == [1.0, 0.0]


def test_fid_and_kid_of_a_set_with_itself_are_zero_and_grow_with_noise() -> None:
    from skimage import data

    base = np.stack([np.roll(data.astronaut()[::16, ::16], s, axis=1) for s in range(6)])
    noisy = np.clip(base + np.random.default_rng(0).normal(0, 60, base.shape), 0, 255)
    fa, fb = inception_features(base), inception_features(noisy.astype(np.uint8))
    assert fa.shape == (6, 2048)
    assert abs(frechet_distance(fa, fa)) < 1e-3
    assert frechet_distance(fa, fb) > 10.0
    same, _ = kernel_inception_distance(fa, fa)
    noised, _ = kernel_inception_distance(fa, fb)
    # X against itself: the unbiased estimator is (2/m)(mean off-diagonal k - mean diagonal k)
    k = (fa @ fa.T / 2048 + 1) ** 3
    off = (k.sum() - np.trace(k)) / 30
    assert same == pytest.approx(2 / 6 * (off - np.trace(k) / 6), rel=1e-9)
    assert abs(same) < 0.1 * noised


def test_per_sample_streams_reproduce_each_sampler_on_a_batch_of_one() -> None:
    net = AffineEpsNet(0.3, 0.5, 0.2)
    calls = []

    def eps(y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        calls.append(len(y))
        return net(y, t, lam, torch.zeros(len(y), 1, 4))

    noise = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    for name in SAMPLERS:
        sampler, n = SAMPLERS[name]().build(), 12 if name == "pda_backward" else 4  # type: ignore[attr-defined]
        calls.clear()
        batched = sample_per_generator(
            sampler, eps, noise, n, [torch.Generator().manual_seed(i) for i in range(3)]
        )
        assert calls == [3] * n  # one batched network call per step
        alone = [sampler.sample(eps, noise[i : i + 1], n, torch.Generator().manual_seed(i))
                 for i in range(3)]  # fmt: skip
        assert torch.equal(batched, torch.cat(alone)), name


class CountingNet(torch.nn.Module):
    """Counts network evaluations per image: rows seen divided by the batch."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, y: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        self.rows += len(y)
        return self.net(y, *rest)


def test_chunks_equal_one_batch_and_guided_steps_cost_two_calls(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint, "cpu")
    prompts = [CAPTIONS[i % 2] for i in range(4)]
    for name, w in (("pda_hybrid", 2.0), ("score_sde", 1.0)):
        sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
        whole = generate_seeded(model, sampler, prompts, 3, w, [7, 8, 9, 10])
        parts = [generate_seeded(model, sampler, prompts[:1], 3, w, [7]),
                 generate_seeded(model, sampler, prompts[1:], 3, w, [8, 9, 10])]  # fmt: skip
        # another batch size may take another BLAS kernel: at most one grey level apart
        assert np.abs(whole.astype(int) - np.concatenate(parts)).max() <= 1, name
        assert np.array_equal(parts[0], generate(model, sampler, prompts[:1], 3, w, 7)), name
        counting = CountingNet(model.nets[sampler.family])
        counted = dataclasses.replace(model, nets={sampler.family: counting})
        generate_seeded(counted, sampler, prompts, 3, w, [7, 8, 9, 10])
        assert counting.rows / len(prompts) == network_calls(3, w) == (3 if w == 1 else 6)


def write_broken(path: Path) -> None:
    """A held-out shard: 3 photos, then a truncated JPEG and a sample without a caption."""
    import webdataset as wds
    from skimage import data

    faces = [np.repeat((f * 255).astype(np.uint8)[..., None], 3, axis=2)
             for f in data.lfw_subset()[20:23]]  # fmt: skip
    write_shard(path.with_suffix(".ok.tar"), faces, 100)
    buf = io.BytesIO()
    Image.fromarray(faces[0]).save(buf, format="JPEG")
    with wds.TarWriter(str(path)) as sink:
        for sample in wds.WebDataset(str(path.with_suffix(".ok.tar")), shardshuffle=False):
            sink.write({k: v for k, v in sample.items() if not k.startswith("__url")})
        sink.write({"__key__": "bad0", "jpg": buf.getvalue()[:40], "txt": b"a face"})
        sink.write({"__key__": "bad1", "jpg": buf.getvalue()})


def eval_cfg(tmp: Path, heldout: Path, clip: tuple[Path, Path], **kw: object) -> EvalConfig:
    tree = {"out_dir": str(tmp), "samplers": ["pda_hybrid", "score_ode"], "steps": [3],
            "guidance": [1.0, 2.0], "samples": 2, "batch_size": 1, "face_reward": False,
            "reference": {"shards": str(heldout), "count": 4}, "kid": {"subsets": 10},
            "clip": {"model_name": "tiny-clip", "checkpoint": str(clip[0]),
                     "architecture_json": str(clip[1])}}  # fmt: skip
    return EvalConfig.model_validate({**tree, **kw})


def test_rows_per_sampler_steps_guidance_and_chunking_changes_nothing(
    tiny_checkpoint: Path, tmp_path: Path, tiny_open_clip: tuple[Path, Path]
) -> None:
    heldout = tmp_path / "heldout.tar"
    write_broken(heldout)
    out = api.evaluate(tiny_checkpoint, eval_cfg(tmp_path / "a", heldout, tiny_open_clip))
    result = json.loads(out.read_text())
    assert result["reference"] == {"shards": str(heldout), "images": 3,
        "skipped": {"reference:undecodable": 1, "reference:no_caption": 1}}  # fmt: skip
    rows = result["results"]
    assert [(r["sampler"], r["steps"], r["guidance"], r["nfe"]) for r in rows] == [
        ("pda_hybrid", 3, 1.0, 3), ("pda_hybrid", 3, 2.0, 6),
        ("score_ode", 3, 1.0, 3), ("score_ode", 3, 2.0, 6),
    ]  # fmt: skip
    for r in rows:
        assert set(r) == {"sampler", "steps", "guidance", "nfe", "n_images", "fid", "kid_mean",
                          "kid_std", "clip_score", "seconds", "seconds_per_image"}  # fmt: skip
        assert r["n_images"] == 2 and r["fid"] > 0 and r["kid_std"] > 0
        assert 0 <= r["clip_score"] <= 100 and r["seconds"] > 0
    table = (tmp_path / "a" / "metrics.txt").read_text().splitlines()
    assert table[0].split() == ["sampler", "steps", "w", "nfe", "images", "fid", "kid",
                                "kid_std", "clip", "seconds"]  # fmt: skip
    assert table[2].split()[:5] == ["pda_hybrid", "3", "2", "6", "2"]
    assert Image.open(tmp_path / "a" / "guidance.png").size[0] > 100
    grid = tmp_path / "a" / "grids" / "pda_hybrid_0003_w2.png"
    assert Image.open(grid).size == (2 * 16, 16)
    # one chunk of 2 instead of two of 1: the same noise per image, so the same images and
    # metrics up to float rounding (BLAS may pick another kernel for another batch size, so
    # a pixel may land one grey level apart on another CPU)
    one = eval_cfg(tmp_path / "b", heldout, tiny_open_clip, samplers=["pda_hybrid"],
                   guidance=[2.0], batch_size=8)  # fmt: skip
    again = json.loads(api.evaluate(tiny_checkpoint, one).read_text())["results"]
    chunked = np.asarray(Image.open(tmp_path / "b" / "grids" / "pda_hybrid_0003_w2.png"))
    assert np.abs(np.asarray(Image.open(grid)).astype(int) - chunked).max() <= 1
    for key in ("fid", "kid_mean", "kid_std", "clip_score"):
        assert again[0][key] == pytest.approx(rows[1][key], rel=1e-3), key


def test_evaluation_shards_that_training_read_are_refused(
    tiny_checkpoint: Path, shards: str, tmp_path: Path, tiny_open_clip: tuple[Path, Path]
) -> None:
    root = Path(shards).parent
    for given, first in [
        (shards, f"{root / '00000.tar'} and 1 more"),
        (f"{root}/../{root.name}/{{00001..00002}}.tar", str(root / "00001.tar")),
    ]:
        cfg = eval_cfg(tmp_path, Path(given), tiny_open_clip)
        with pytest.raises(ConfigError) as caught:
            api.evaluate(tiny_checkpoint, cfg)
        assert str(caught.value) == (
            f"evaluation shards {given} overlap the training shards of {tiny_checkpoint} "
            f"(data.shards = {shards}): {first}; give held-out shards"
        )
    missing = tmp_path / "heldout" / "00007.tar"
    with pytest.raises(ConfigError) as caught:
        api.evaluate(tiny_checkpoint, eval_cfg(tmp_path, missing, tiny_open_clip))
    assert (
        str(caught.value) == f"reference shard not found: {missing} (reference.shards = {missing})"
    )
    assert not (tmp_path / "grids").exists()


def test_a_prompts_file_evaluation_and_its_refusals(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def cfg(prompts: str, samplers: list[str], **kw: object) -> EvalConfig:
        tree = {"out_dir": str(tmp_path / "e"), "prompts": str(tmp_path / prompts), "steps": [2],
                "samplers": samplers, **kw}  # fmt: skip
        return validate_as(EvalConfig, tree, "evaluate")

    with pytest.raises(ConfigError) as caught:
        api.evaluate(tiny_checkpoint, cfg("none.txt", ["pda_hybrid"]))
    assert str(caught.value) == (
        f"prompts file not found: {tmp_path / 'none.txt'} (one prompt per line)"
    )
    (tmp_path / "p.txt").write_text("a face\n\na portrait\n")
    with pytest.raises(ConfigError) as caught:
        cfg("p.txt", ["ddim"])
    assert str(caught.value) == (
        "config error in evaluate: samplers: unknown sampler 'ddim'; choose from "
        "['pda_backward', 'pda_hybrid', 'score_ode', 'score_sde']"
    )
    out = api.evaluate(
        tiny_checkpoint, cfg("p.txt", ["score_ode"], face_reward=False, images_per_prompt=2)
    )
    (row,) = json.loads(out.read_text())["results"]
    assert (row["n_images"], row["nfe"], row["fid"], row["kid_mean"]) == (4, 2, None, None)


def test_cli_evaluates_a_checkpoint_on_held_out_demo_shards(
    reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = reference_run / "shards"
    tree = cpu_config(str(demo / "00001.tar"), tmp_path / "train", steps=1)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(tree))
    with one_thread():
        ckpt = api.train(tmp_path / "t.yaml", [])
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(
        {"out_dir": str(tmp_path / "eval"), "samplers": ["pda_hybrid"], "steps": [5],
         "reference": {"shards": str(demo / "00000.tar")}, "kid": {"subsets": 5}}))  # fmt: skip
    args = ["evaluate", str(ckpt), "--config", str(tmp_path / "e.yaml"), "--guidance", "1,3",
            "--batch-size", "2", "--samples", "2", "--set", "face_reward=false"]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(tmp_path / "eval" / "metrics.json")
    rows = [ln.split()[:5] for ln in lines[1:3]]  # sampler, steps, w, nfe, images
    assert rows == [["pda_hybrid", "5", "1", "5", "2"], ["pda_hybrid", "5", "3", "10", "2"]]
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["reference"]["images"] == 3  # the demo's first tar holds 3 samples
    assert all(r["fid"] > 0 for r in result["results"])
    overlap = ["evaluate", str(ckpt), "--config", str(tmp_path / "e.yaml"),
               "--reference", str(demo / "{00000..00001}.tar")]  # fmt: skip
    assert main(overlap) == 2
    assert capsys.readouterr().err.strip() == (
        f"laionface evaluate: evaluation shards {demo}/{{00000..00001}}.tar overlap the training "
        f"shards of {ckpt} (data.shards = {demo}/00001.tar): {demo}/00001.tar; give held-out shards"
    )


def test_flags_alone_or_over_a_config_file(tmp_path: Path) -> None:
    from pipeline.cli import build_parser
    from proxt2i.cli import eval_config

    def parse(*argv: str) -> EvalConfig:
        return eval_config(build_parser().parse_args(["evaluate", "ck", *argv]))

    flags = parse("--prompts", "p.txt", "--steps", "5,10", "--guidance", "4", "--out", "o",
                  "--reference", "s/{0..1}.tar", "--n-reference", "8")  # fmt: skip
    assert (flags.prompts, flags.steps, flags.guidance, flags.out_dir, flags.batch_size) == (
        Path("p.txt"), (5, 10), (4.0,), Path("o"), 64)  # fmt: skip
    assert flags.reference == ReferenceConfig(shards="s/{0..1}.tar", count=8)
    assert parse("--prompts", "p.txt", "--out", "o").reference is None  # a count alone: none
    (tmp_path / "e.yaml").write_text(
        "out_dir: o\nsteps: [20]\nguidance: [1, 3]\nreference: {shards: h.tar, count: 50}\n"
        "batch_size: 16\n"
    )
    cfg = parse("--config", str(tmp_path / "e.yaml"), "--steps", "5", "--set", "kid.subsets=7")
    assert (cfg.steps, cfg.guidance, cfg.batch_size, cfg.kid.subsets, cfg.seed) == (
        (5,), (1.0, 3.0), 16, 7, 0)  # fmt: skip
    assert cfg.reference == ReferenceConfig(shards="h.tar", count=50)


def test_bad_evaluation_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "e.yaml").write_text("out_dir: x\nkid: {subset: 5}\n")
    assert main(["evaluate", "ck", "--config", str(tmp_path / "e.yaml")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"laionface evaluate: config error in {tmp_path / 'e.yaml'}: kid.subset: unknown key"
    )


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
