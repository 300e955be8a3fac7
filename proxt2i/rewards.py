"""Prompt-image rewards, for the evaluator and for reward fine-tuning (GRPO).

`face_quality` uses the pipeline's own face detector and sharpness score (package `filters`,
imported lazily): the reward of an image is the sharpness of its most confident face, 0 when no
face is found. `face_detected` is 1 when that detector finds a face, else 0 (its mean is the
detection rate), so detection and sharpness are reported separately: sharpness alone is a
Laplacian variance, which added noise raises. `clip_score` is 100 * max(cos(image, text), 0)
with an open_clip model from a local checkpoint (the torchmetrics convention for CLIPScore,
Hessel et al. 2021). `aesthetic` lives in its own file (proxt2i/reward_aesthetic.py).

`REWARDS` maps a config `type` to its pydantic config model; `RewardConfig`, the union a
fine-tuning config's `reward` validates against, is built from it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from manifests.registry import Registered
from proxt2i.reward_aesthetic import AestheticConfig


class Reward(Protocol):
    name: str

    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        """uint8 (B, H, W, 3) RGB images and their prompts -> float64 (B,) rewards."""
        ...


class FaceQualityReward:
    name = "face_quality"

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        from filters.face_quality import face_sharpness

        out = np.zeros(len(images), dtype=np.float64)
        for i, image in enumerate(images):
            faces = self.detector.detect(np.ascontiguousarray(image))
            if faces:
                best = max(faces, key=lambda f: f.confidence)
                sharpness = float(face_sharpness(image, best.box))
                out[i] = sharpness if np.isfinite(sharpness) else 0.0  # NaN: empty crop
        return out


class FaceDetectedReward:
    name = "face_detected"

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        found = [bool(self.detector.detect(np.ascontiguousarray(im))) for im in images]
        return np.asarray(found, dtype=np.float64)


class ClipScoreReward:
    name = "clip_score"

    def __init__(self, model_name: str, checkpoint: Path, architecture_json: Path | None) -> None:
        from filters.clip_model import load_open_clip

        arch = str(architecture_json) if architecture_json else None
        self.model, self.preprocess, self.tokenizer = load_open_clip(
            model_name, str(checkpoint), arch
        )

    @torch.no_grad()
    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        from PIL import Image

        pixels = torch.stack([self.preprocess(Image.fromarray(im)) for im in images])
        img = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
        txt = torch.nn.functional.normalize(
            self.model.encode_text(self.tokenizer(prompts)).float(), dim=-1
        )
        cos = (img * txt).sum(-1).clamp_min(0)
        return (100.0 * cos).double().numpy()


class FaceQualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["face_quality"] = "face_quality"
    detector: Literal["dlib"] = "dlib"  # key into filters.DETECTORS

    def build(self) -> FaceQualityReward:
        return FaceQualityReward(_detector(self.detector))


class FaceDetectedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["face_detected"] = "face_detected"
    detector: Literal["dlib"] = "dlib"  # key into filters.DETECTORS

    def build(self) -> FaceDetectedReward:
        return FaceDetectedReward(_detector(self.detector))


class ClipScoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["clip_score"] = "clip_score"
    model_name: str
    checkpoint: Path
    architecture_json: Path | None = None

    def build(self) -> ClipScoreReward:
        return ClipScoreReward(self.model_name, self.checkpoint, self.architecture_json)


@functools.lru_cache(maxsize=2)
def _detector(detector_key: str) -> Any:
    """One detector per process, shared by the face rewards."""
    import importlib

    detectors = importlib.import_module("filters").DETECTORS
    return detectors[detector_key]().build()


REWARDS: dict[str, type[BaseModel]] = {
    "face_quality": FaceQualityConfig,
    "face_detected": FaceDetectedConfig,
    "clip_score": ClipScoreConfig,
    "aesthetic": AestheticConfig,
}


class RewardSettings(Protocol):
    """What every member of ``REWARDS`` offers: the static type of ``RewardConfig``."""

    def build(self) -> Reward: ...


RewardConfig = Annotated[RewardSettings, Registered(REWARDS)]
