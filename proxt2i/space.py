"""Where diffusion happens: pixels for small resolutions, a VAE latent space for real runs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch


class ModelSpace(Protocol):
    channels: int
    sample_size: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], (B, 3, R, R) -> model-space tensors."""
        ...

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space tensors -> images in [-1, 1] (not clamped)."""
        ...


class PixelSpace:
    channels = 3

    def __init__(self, resolution: int) -> None:
        self.sample_size = resolution

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x


class VaeSpace:
    """diffusers AutoencoderKL from a local directory (e.g. sd-vae-ft-ema), frozen."""

    def __init__(self, path: Path, resolution: int, device: torch.device) -> None:
        from diffusers import AutoencoderKL

        if not Path(path).is_dir():
            raise ValueError(f"vae_path is not a directory: {path} (give a diffusers VAE folder)")
        self.vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.vae.requires_grad_(False)
        self.channels = int(self.vae.config.latent_channels)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.sample_size = resolution // factor
        # Stable Diffusion convention: latents are multiplied by the VAE's scaling factor so
        # their variance is near 1, matching the VP SDE's unit-variance prior.
        self.scale = float(self.vae.config.scaling_factor)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(images).latent_dist.sample() * self.scale

    @torch.no_grad()
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(x / self.scale).sample


def build_space(vae_path: Path | None, resolution: int, device: torch.device) -> ModelSpace:
    if vae_path is None:
        return PixelSpace(resolution)
    return VaeSpace(vae_path, resolution, device)
