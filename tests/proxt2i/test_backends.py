"""Text-encoder and VAE plumbing with tiny random-weight models built from configs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from filters.clip_model import load_open_clip
from filters.detectors.base import MissingModelError
from proxt2i import TEXT_ENCODERS, api
from proxt2i.api import SampleRequest
from proxt2i.checkpoint import read_checkpoint_meta
from proxt2i.text import HfTextConfig, MiniLmConfig, OpenClipTextConfig, embedded_minilm_path
from tests.proxt2i.conftest import cpu_config


def test_registry_keys() -> None:
    assert sorted(TEXT_ENCODERS) == ["hf_text", "minilm", "open_clip"]


def test_embedded_minilm_pooled_is_deterministic_and_384_wide() -> None:
    enc = MiniLmConfig(output="pooled").build()
    a = enc.encode(["a portrait of a woman", ""]).tokens
    assert a.shape == (2, 1, 384) and enc.dim == 384
    assert torch.equal(a, enc.encode(["a portrait of a woman", ""]).tokens)
    assert float(a[0].norm()) == pytest.approx(1.0, abs=1e-5)  # normalized sentence embedding


def test_open_clip_text_tower_from_a_local_file(tiny_open_clip: tuple[Path, Path]) -> None:
    ckpt, arch = tiny_open_clip
    enc = OpenClipTextConfig(
        model_name="tiny-clip", checkpoint=ckpt, architecture_json=arch
    ).build()
    assert enc.dim == 32  # token features: the tower's width (test_text_tokens.py)
    assert enc.encode(["a face", "two faces", "x"]).tokens.shape == (3, 4, 32)


def test_open_clip_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    cfg = OpenClipTextConfig(model_name="tiny-clip", checkpoint=tmp_path / "none.pt")
    with pytest.raises(MissingModelError) as caught:
        cfg.build()
    assert str(caught.value) == (
        f"open_clip checkpoint not found: {tmp_path / 'none.pt'} (give a local .pt/.bin file)"
    )


def test_an_architecture_json_is_added_through_open_clips_public_registry(
    tiny_open_clip: tuple[Path, Path], tmp_path: Path
) -> None:
    import open_clip

    ckpt, arch = tiny_open_clip
    mine = tmp_path / "tiny-clip-copy.json"
    shutil.copy(arch, mine)
    model, _, tokenizer = load_open_clip("tiny-clip-copy", ckpt, mine)
    assert "tiny-clip-copy" in open_clip.list_models()
    assert int(model.token_embedding.embedding_dim) == 32
    assert tuple(tokenizer(["a face"]).shape) == (1, 77)
    # a file named otherwise is registered under the configured name (from a named copy)
    other, _, _ = load_open_clip("tiny-clip-other", ckpt, mine)
    assert "tiny-clip-other" in open_clip.list_models()
    assert int(other.token_embedding.embedding_dim) == 32
    (tmp_path / "not-a-config.json").write_text('{"embed_dim": 16}')
    with pytest.raises(ValueError) as caught:
        load_open_clip("not-a-config", ckpt, tmp_path / "not-a-config.json")
    assert str(caught.value) == (
        f"{tmp_path / 'not-a-config.json'} is not an open_clip model config (it needs "
        "embed_dim, vision_cfg, text_cfg)"
    )


def test_hf_clip_text_tower_from_a_local_dir(tmp_path: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    # a tiny random CLIP text tower; the tokenizer files are borrowed from the embedded MiniLM
    model = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=30522,
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
        )
    )
    model.save_pretrained(tmp_path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(embedded_minilm_path() / name, tmp_path / name)
    enc = HfTextConfig(path=tmp_path, max_length=16).build()
    out = enc.encode(["a face", "a much longer caption about a smiling face"])
    assert out.tokens.shape == (2, 16, 24) and enc.dim == 24
    assert out.mask.sum(dim=1).tolist() == [4, 11]  # [CLS] ... [SEP] (caption: 2 pieces)


def test_latent_space_training_with_a_tiny_vae(shards: str, tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
    )
    vae.save_pretrained(tmp_path / "vae")
    tree = cpu_config(shards, tmp_path / "out", steps=1)
    tree["objectives"] = tree["objectives"][:1]
    tree["vae_path"] = str(tmp_path / "vae")
    tree["data"]["resolution"] = 32
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tree))
    ckpt = api.train(tmp_path / "c.yaml", [])
    _, meta = read_checkpoint_meta(ckpt)
    assert meta["net_args"] == {"channels": 4, "sample_size": 16, "context_dim": 384}
    out = api.sample(
        SampleRequest(ckpt, ("a face",), tmp_path / "s", steps=2, sampler="pda_hybrid")
    )
    from PIL import Image

    assert Image.open(out / "0000.png").size == (32, 32)  # decoded back to pixels


def test_missing_vae_dir_is_a_clear_error(shards: str, tmp_path: Path) -> None:
    tree = cpu_config(shards, tmp_path / "out", steps=1)
    tree["vae_path"] = str(tmp_path / "no-vae")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(ValueError, match="vae_path is not a directory"):
        api.train(tmp_path / "c.yaml", [])
