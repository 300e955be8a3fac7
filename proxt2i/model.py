"""The eps-network shared by the proximal and the score model: a conditional diffusers U-Net.

The network sees (y, t, lambda, text context). t is embedded as the U-Net timestep (t * 1000),
lambda through the U-Net's class-embedding slot ("timestep" type: a sinusoidal embedding of a
scalar, here log lambda rescaled), and the text through cross-attention to its tokens, with the
context's mask as diffusers' `encoder_attention_mask` (padded keys get a -10000 bias, so their
softmax weight is exactly 0 in float32 and a caption means the same at any padding).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from proxt2i.schedule import log_lambda_feature
from proxt2i.text_context import TextContext


class BackboneConfig(BaseModel):
    """Constructor arguments of the U-Net; saved with every checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    block_out_channels: tuple[int, ...] = (16, 32)
    layers_per_block: int = Field(default=1, ge=1)
    # diffusers' UNet2DConditionModel uses attention_head_dim as the number of heads when
    # num_attention_heads is unset (a documented quirk kept for SD compatibility).
    attention_head_dim: int = Field(default=8, ge=1)
    cross_attention_dim: int = Field(default=32, ge=1)
    norm_num_groups: int = Field(default=8, ge=1)
    cross_attention_levels: tuple[bool, ...] = (False, True)

    def build(self, channels: int, sample_size: int, context_dim: int) -> EpsUNet:
        return EpsUNet(self, channels, sample_size, context_dim)


def _block_types(levels: tuple[bool, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(levels))
    return down, up


class EpsUNet(nn.Module):
    """eps_theta(y, t, lambda, context) on images or latents of shape (B, C, H, W)."""

    def __init__(self, cfg: BackboneConfig, channels: int, sample_size: int, context_dim: int):
        super().__init__()
        from diffusers import UNet2DConditionModel

        if len(cfg.cross_attention_levels) != len(cfg.block_out_channels):
            raise ValueError("cross_attention_levels needs one entry per block_out_channels entry")
        down, up = _block_types(cfg.cross_attention_levels)
        self.unet: Any = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            down_block_types=down,
            up_block_types=up,
            cross_attention_dim=cfg.cross_attention_dim,
            encoder_hid_dim=context_dim,
            attention_head_dim=cfg.attention_head_dim,
            norm_num_groups=cfg.norm_num_groups,
            class_embed_type="timestep",
        )

    def forward(
        self,
        y: torch.Tensor,
        t: torch.Tensor,
        lam: torch.Tensor,
        context: TextContext | torch.Tensor,
    ) -> torch.Tensor:
        """`context` is a TextContext, or bare (B, L, D) tokens that are all real."""
        tokens, mask = (
            (context.tokens, context.mask) if isinstance(context, TextContext) else (context, None)
        )
        out = self.unet(
            y,
            t * 1000.0,  # DDPM-style timestep scale, so the sinusoidal embedding resolves t
            encoder_hidden_states=tokens,
            encoder_attention_mask=mask,
            class_labels=log_lambda_feature(lam),
        )
        return out.sample
