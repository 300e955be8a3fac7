"""The text context a network cross-attends to: token embeddings and which of them are real.

Batches of captions tokenise to different lengths, so each row is padded; `mask` is False on
the padding, and the U-Net's cross-attention gives padded keys no weight (proxt2i/model.py), so
a caption means the same to the network whatever it was padded to. That is what makes the
unconditional context consistent everywhere: training encodes a dropped caption as "" inside a
padded batch, sampling encodes [""] * B on its own, and the network sees one and the same
sequence (the encoder's tokens of "", e.g. MiniLM's [CLS] [SEP]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TextContext:
    """`tokens` (B, L, D) float; `mask` (B, L) bool, True on real tokens (at least one a row:
    attention over no key at all has no meaning)."""

    tokens: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.mask.shape != self.tokens.shape[:2]:
            raise ValueError(
                f"mask {tuple(self.mask.shape)} must be tokens' (B, L) {tuple(self.tokens.shape)}"
            )
        if len(self.mask) and not bool(self.mask.any(dim=1).all()):
            raise ValueError("every text context row needs at least one real token")

    @classmethod
    def unmasked(cls, tokens: torch.Tensor) -> TextContext:
        """Every token real (a pooled embedding is one such token)."""
        return cls(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device))

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, idx: torch.Tensor | slice | int) -> TextContext:
        """Rows `idx` (a LongTensor, a slice or one index kept as a batch of one)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return TextContext(self.tokens[idx], self.mask[idx])

    def to(self, device: torch.device | str) -> TextContext:
        return TextContext(self.tokens.to(device), self.mask.to(device))

    @staticmethod
    def cat(parts: Sequence[TextContext]) -> TextContext:
        """Rows of every part, in order, padded (masked) to the longest part's length."""
        length = max(p.tokens.shape[1] for p in parts)
        tokens = [_pad(p.tokens, length, 0.0) for p in parts]
        masks = [_pad(p.mask, length, False) for p in parts]
        return TextContext(torch.cat(tokens), torch.cat(masks))


def _pad(x: torch.Tensor, length: int, value: float | bool) -> torch.Tensor:
    """Pad axis 1 of x to `length` with `value`."""
    missing = length - x.shape[1]
    if missing == 0:
        return x
    fill = torch.full((x.shape[0], missing, *x.shape[2:]), value, dtype=x.dtype, device=x.device)
    return torch.cat([x, fill], dim=1)
