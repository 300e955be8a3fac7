"""Token-level text conditioning: encoders give tokens + mask, the U-Net's cross-attention
ignores padding, the unconditional context is one sequence everywhere, and checkpoints say
which conditioning they were trained on (older pooled ones still sample)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from proxt2i import api
from proxt2i.api import SampleRequest
from proxt2i.checkpoint import read_checkpoint_meta
from proxt2i.config import ConfigError
from proxt2i.generate import load_model
from proxt2i.model import BackboneConfig, EpsUNet
from proxt2i.text import MiniLmConfig, OpenClipTextConfig
from proxt2i.text_context import TextContext
from tests.proxt2i.conftest import cpu_config

PROMPT = "a portrait of a woman"  # [CLS] a portrait of a woman [SEP]: 7 MiniLM tokens


def tiny_net(context_dim: int) -> EpsUNet:
    torch.manual_seed(0)
    backbone = BackboneConfig(block_out_channels=(8, 8), norm_num_groups=4, cross_attention_dim=8)
    return backbone.build(channels=3, sample_size=8, context_dim=context_dim).eval()


def net_inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(batch, 3, 8, 8, generator=gen)
    return y, torch.full((batch,), 0.3), torch.full((batch,), 0.05)


def test_minilm_gives_its_token_embeddings_and_mask() -> None:
    enc = MiniLmConfig().build()
    ctx = enc.encode([PROMPT, ""])
    assert enc.dim == 384 and ctx.tokens.shape == (2, 7, 384)
    assert ctx.mask.sum(dim=1).tolist() == [7, 2]  # "" is [CLS] [SEP]
    again = enc.encode([PROMPT, ""])
    assert torch.equal(ctx.tokens, again.tokens) and torch.equal(ctx.mask, again.mask)
    alone = enc.encode([""])
    assert alone.tokens.shape == (1, 2, 384)
    assert torch.allclose(ctx.tokens[1, :2], alone.tokens[0], atol=1e-5)


def test_the_mask_hides_padding_and_real_tokens_count() -> None:
    net = tiny_net(context_dim=4)
    y, t, lam = net_inputs(2)
    tokens = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    with torch.no_grad():
        base = net(y, t, lam, TextContext(tokens, mask))
        padded = tokens.clone()
        padded[0, 3:] = 100.0  # only row 0's padding changes
        same = net(y, t, lam, TextContext(padded, mask))
        real = tokens.clone()
        real[0, 1] += 1.0  # a real token of row 0
        moved = net(y, t, lam, TextContext(real, mask))
    assert torch.equal(base, same)  # the padding gets exactly zero attention weight
    assert float((moved[0] - base[0]).abs().max()) > 1e-3
    assert torch.equal(moved[1], base[1])


def test_the_unconditional_context_is_the_same_in_a_batch_and_alone() -> None:
    """Training drops a caption to "" inside a padded batch; sampling encodes [""] alone."""
    enc = MiniLmConfig().build()
    net = tiny_net(context_dim=384)
    y, t, lam = net_inputs(1)
    with torch.no_grad():
        in_batch = net(y.repeat(2, 1, 1, 1), t.repeat(2), lam.repeat(2), enc.encode([PROMPT, ""]))
        alone = net(y, t, lam, enc.encode([""]))
    assert torch.allclose(in_batch[1:], alone, atol=1e-5)


def test_text_context_cat_index_and_refusals() -> None:
    a = TextContext(torch.ones(1, 3, 2), torch.tensor([[True, True, False]]))
    b = TextContext.unmasked(torch.full((2, 1, 2), 2.0))
    both = TextContext.cat([a, b])
    assert both.tokens.shape == (3, 3, 2) and len(both) == 3
    assert both.mask.tolist() == [[True, True, False], [True, False, False], [True, False, False]]
    assert both.tokens[1:, 1:].abs().sum() == 0
    assert torch.equal(both[torch.tensor([2, 0])].mask, both.mask[[2, 0]])
    assert both[1].tokens.shape == (1, 3, 2)
    with pytest.raises(ValueError, match="every text context row needs at least one real token"):
        TextContext(torch.ones(1, 2, 2), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask \(1, 3\) must be tokens' \(B, L\) \(1, 2, 2\)"):
        TextContext(torch.ones(1, 2, 2), torch.ones(1, 3, dtype=torch.bool))


def test_open_clip_tokens_end_at_the_end_of_text_token(tiny_open_clip: tuple[Path, Path]) -> None:
    ckpt, arch = tiny_open_clip
    enc = OpenClipTextConfig(
        model_name="tiny-clip", checkpoint=ckpt, architecture_json=arch
    ).build()
    ctx = enc.encode(["a face", "two faces", "x"])
    assert enc.dim == 32  # the tower's width (text_cfg.width), not the 16-d projection
    assert ctx.tokens.shape == (3, 4, 32)  # <start> a face <end>: cut to the longest row
    assert ctx.mask.sum(dim=1).tolist() == [4, 4, 3]
    # causal attention: the start token's features are the same in every row
    assert torch.allclose(ctx.tokens[0, 0], ctx.tokens[2, 0], atol=1e-6)
    pooled = OpenClipTextConfig(
        model_name="tiny-clip", checkpoint=ckpt, architecture_json=arch, output="pooled"
    ).build()
    assert pooled.encode(["a face"]).tokens.shape == (1, 1, 16)


def test_checkpoints_record_token_conditioning(tiny_checkpoint: Path) -> None:
    meta = json.loads((tiny_checkpoint / "state.json").read_text())
    assert meta["conditioning"] == "tokens"
    assert load_model(tiny_checkpoint).encoder.encode(["a face"]).tokens.shape == (1, 4, 384)


@pytest.fixture(scope="module")
def pooled_checkpoint(shards: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One step of a prox network on the single pooled MiniLM token."""
    root = tmp_path_factory.mktemp("pooled")
    tree = cpu_config(shards, root / "out", steps=1)
    tree["objectives"] = tree["objectives"][:1]
    tree["text_encoder"]["output"] = "pooled"
    (root / "c.yaml").write_text(yaml.safe_dump(tree))
    return api.train(root / "c.yaml", [])


def as_saved_before_tokens(ckpt: Path, old: Path, encoder: dict | None = None) -> Path:
    """A copy of ckpt as checkpoints were saved before they recorded their conditioning."""
    shutil.copytree(ckpt, old)
    meta = json.loads((old / "state.json").read_text())
    del meta["conditioning"]
    (old / "state.json").write_text(json.dumps(meta))
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    cfg["text_encoder"] = encoder or {"type": "minilm", "path": None}
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    return old


def test_an_old_pooled_checkpoint_still_samples(pooled_checkpoint: Path, tmp_path: Path) -> None:
    old = as_saved_before_tokens(pooled_checkpoint, tmp_path / "old")
    cfg, _ = read_checkpoint_meta(old)
    assert cfg.text_encoder.output == "pooled"
    images = []
    for name, ckpt in (("new", pooled_checkpoint), ("old", old)):
        out = api.sample(
            SampleRequest(
                ckpt, ("a face",), tmp_path / name, steps=2, sampler="pda_hybrid", guidance=4.0
            )
        )
        images.append(np.asarray(Image.open(out / "0000.png")))
    assert np.array_equal(images[0], images[1])


def test_an_old_unmasked_hf_text_checkpoint_is_refused(
    pooled_checkpoint: Path, tmp_path: Path
) -> None:
    old = as_saved_before_tokens(
        pooled_checkpoint, tmp_path / "old", {"type": "hf_text", "path": str(tmp_path / "t5")}
    )
    with pytest.raises(ConfigError) as caught:
        read_checkpoint_meta(old)
    assert str(caught.value) == (
        f"checkpoint {old} was trained on hf_text tokens without a padding mask (saved before "
        "masked token conditioning); retrain it"
    )
