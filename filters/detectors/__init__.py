"""Face detector backends (``FaceDetector`` protocol) and their registry.

``DETECTORS`` maps a config ``type`` to its pydantic config model; ``config.build()`` returns
the detector. Models load lazily on the first ``detect`` and once per process.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from filters.detectors.base import LANDMARK_NAMES, Face, FaceDetector, MissingModelError
from filters.detectors.dlib_detector import DlibDetector, DlibDetectorConfig
from filters.detectors.fake import FakeDetector, FakeDetectorConfig, FakeFaceConfig
from filters.detectors.insightface_detector import InsightFaceDetector, InsightFaceDetectorConfig
from filters.detectors.mediapipe_detector import MediaPipeDetector, MediaPipeDetectorConfig

DETECTORS: dict[str, type[BaseModel]] = {
    "dlib": DlibDetectorConfig,
    "insightface": InsightFaceDetectorConfig,
    "fake": FakeDetectorConfig,
    "mediapipe": MediaPipeDetectorConfig,
}

# The discriminated union a filter config uses for its ``detector`` field (same set as DETECTORS).
DetectorConfig = Annotated[
    DlibDetectorConfig | InsightFaceDetectorConfig | FakeDetectorConfig | MediaPipeDetectorConfig,
    Field(discriminator="type"),
]

__all__ = [
    "DETECTORS",
    "LANDMARK_NAMES",
    "DetectorConfig",
    "DlibDetector",
    "DlibDetectorConfig",
    "Face",
    "FaceDetector",
    "FakeDetector",
    "FakeDetectorConfig",
    "FakeFaceConfig",
    "InsightFaceDetector",
    "InsightFaceDetectorConfig",
    "MediaPipeDetector",
    "MediaPipeDetectorConfig",
    "MissingModelError",
]
