"""The accelerator a worker process uses, in the terms each model runtime takes.

A GPU worker is pinned to its device by ``CUDA_VISIBLE_DEVICES`` (one id, set by the cluster
before the process starts: ``pipeline.pools``), so inside it that device is always CUDA
ordinal 0, whatever its physical id; a CPU worker sees none (the empty string). Every backend
asks here instead of assuming GPU 0 of the node: torch (CLIP, VLMs), ONNX Runtime (open_nsfw)
and insightface (whose ``ctx_id`` -1 means CPU).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class WorkerDevice:
    """What this process may use: ``visible`` is its ``CUDA_VISIBLE_DEVICES`` (None: unset)."""

    visible: str | None

    @classmethod
    def current(cls) -> WorkerDevice:
        """This process's device."""
        return cls(os.environ.get("CUDA_VISIBLE_DEVICES"))

    @property
    def physical_id(self) -> str | None:
        """The node's id of the device behind ordinal 0, when the worker is pinned."""
        ids = [d for d in (self.visible or "").split(",") if d.strip()]
        return ids[0] if len(ids) == 1 else None

    def torch_device(self, requested: str) -> str:
        """``auto`` -> the worker's GPU if it has one, else cpu; ``cuda`` -> ``cuda:0``."""
        if requested == "auto":
            return "cuda:0" if self.visible != "" and _torch_cuda() else "cpu"
        if requested == "cuda":
            return "cuda:0"
        return requested

    def onnx_providers(self, preferred: Sequence[str], available: Sequence[str]) -> list[str]:
        """``preferred`` minus what is not installed, minus CUDA on a worker without a GPU."""
        usable = set(available)
        if self.visible == "":
            usable.discard(CUDA_PROVIDER)
        return [p for p in preferred if p in usable] or [CPU_PROVIDER]

    def insightface_ctx_id(self, providers: Sequence[str]) -> int:
        """insightface's ``prepare(ctx_id)``: 0 (the pinned GPU) with CUDA, -1 for CPU."""
        return 0 if CUDA_PROVIDER in providers else -1


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
