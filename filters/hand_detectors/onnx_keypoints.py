"""Hands from a local whole-body keypoint ONNX model (e.g. an RTMW / DWPose export, on GPU).

The model's signature (what an export must provide):

- input 0: float32 ``[1, 3, S, S]``, RGB, ``(pixel / 255 - mean) / std`` per channel; the
  image is resized (aspect kept) so its longer side is ``S`` = ``input_size``, placed at the
  top-left corner and padded with zeros to ``S x S``.
- output 0: float32 ``[1, P, K, 3]``: for each of ``P`` people, ``K`` keypoints as
  ``(x, y, score)``, x and y in pixels of the ``S x S`` input, score in [0, 1]. With
  COCO-WholeBody's 133 keypoints (Jin et al. 2020: 17 body, 6 feet, 68 face, then 21 left-hand
  and 21 right-hand points), the hands start at 91 and 112, the defaults below.

A hand's confidence is the mean score of its 21 keypoints. Nothing is downloaded: a missing
model is a config error, and a ``MissingModelError`` if it has gone by build time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from filters.detectors.base import MissingModelError
from filters.hand_detectors.base import HAND_POINTS, Hand, Handedness, as_hand_points
from manifests.device import WorkerDevice
from manifests.fingerprint import OPERATIONAL
from manifests.model_paths import checks_model_paths


class OnnxHandDetectorConfig(BaseModel):
    """A local whole-body keypoint model; see the module docstring for its signature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["onnx"] = "onnx"
    model_path: Path = Field(description="the .onnx file (nothing is downloaded)")
    input_size: int = Field(
        default=640, gt=0, description="S, the square input side; 640 as RTMO's and SCRFD's"
    )
    # ImageNet statistics (torchvision), what RTMPose/DWPose exports normalize with.
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    left_hand_offset: int = Field(default=91, ge=0, description="first left-hand keypoint")
    right_hand_offset: int = Field(default=112, ge=0, description="first right-hand keypoint")
    min_confidence: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="mean keypoint score a hand needs; 0.3 is the keypoint threshold "
        "DWPose and MMPose's demos draw with",
    )
    providers: tuple[str, ...] = Field(
        default=("CUDAExecutionProvider", "CPUExecutionProvider"),
        json_schema_extra=OPERATIONAL,
        description="ONNX Runtime providers in preference order; unavailable ones are dropped",
    )

    @field_validator("model_path")
    @classmethod
    def _model_is_there(cls, path: Path, info: ValidationInfo) -> Path:
        if checks_model_paths(info) and not path.expanduser().is_file():
            raise ValueError(
                f"{path} is not a file: set model_path to a local whole-body keypoint .onnx"
            )
        return path

    def build(self) -> OnnxHandDetector:
        return OnnxHandDetector(self)


@functools.lru_cache(maxsize=2)
def _load(config: OnnxHandDetectorConfig) -> Any:
    """The ONNX Runtime session, once per process and config, on this worker's device."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    providers = WorkerDevice.current().onnx_providers(config.providers, available)
    return onnxruntime.InferenceSession(str(config.model_path.expanduser()), providers=providers)


class OnnxHandDetector:
    """``HandDetector`` over a whole-body keypoint ONNX model."""

    def __init__(self, config: OnnxHandDetectorConfig) -> None:
        if not config.model_path.expanduser().is_file():
            raise MissingModelError(f"hand keypoint model not found at {config.model_path}")
        self.config = config

    def detect(self, image: np.ndarray) -> list[Hand]:
        session = _load(self.config)
        tensor, scale = self._input(image)
        (keypoints,) = session.run([session.get_outputs()[0].name], {_input_name(session): tensor})
        return self._hands(np.asarray(keypoints, dtype=np.float64), scale)

    def _input(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The letterboxed, normalized NCHW tensor and the input-px per image-px scale."""
        from PIL import Image

        size = self.config.input_size
        height, width = image.shape[:2]
        scale = size / max(height, width)
        shape = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = np.asarray(Image.fromarray(image).resize(shape, Image.Resampling.BILINEAR))
        normalized = (resized / 255.0 - np.array(self.config.mean)) / np.array(self.config.std)
        canvas = np.zeros((size, size, 3), dtype=np.float32)
        canvas[: shape[1], : shape[0]] = normalized
        return canvas.transpose(2, 0, 1)[None], scale

    def _hands(self, keypoints: np.ndarray, scale: float) -> list[Hand]:
        if keypoints.ndim != 4 or keypoints.shape[0] != 1 or keypoints.shape[3] != 3:
            raise ValueError(f"expected keypoints [1, P, K, 3], the model gave {keypoints.shape}")
        sides: tuple[tuple[int, Handedness], ...] = (
            (self.config.left_hand_offset, "left"),
            (self.config.right_hand_offset, "right"),
        )
        hands = []
        for person in keypoints[0]:
            for offset, side in sides:
                points = person[offset : offset + HAND_POINTS]
                if len(points) < HAND_POINTS:
                    raise ValueError(f"{len(person)} keypoints per person: no hand at {offset}")
                confidence = float(points[:, 2].mean())
                if confidence >= self.config.min_confidence:
                    hands.append(Hand(as_hand_points(points[:, :2] / scale), confidence, side))
        return hands


def _input_name(session: Any) -> str:
    return str(session.get_inputs()[0].name)
