"""Face detector backends (``FaceDetector`` protocol) and their registry.

``DETECTORS`` maps a config ``type`` to its pydantic config model; ``DetectorConfig``, the
union a filter's ``detector`` field validates against, is built from it, so a backend is its
own file plus one line here. ``config.build()`` returns the detector. Models load lazily on
the first ``detect`` and once per process.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import BaseModel

from filters.detectors.base import LANDMARK_NAMES, Face, FaceDetector, MissingModelError
from filters.detectors.dlib_detector import DlibDetector, DlibDetectorConfig
from filters.detectors.fake import FakeDetector, FakeDetectorConfig, FakeFaceConfig
from filters.detectors.insightface_detector import InsightFaceDetector, InsightFaceDetectorConfig
from filters.detectors.mediapipe_detector import MediaPipeDetector, MediaPipeDetectorConfig
from manifests.registry import Registered

DETECTORS: dict[str, type[BaseModel]] = {
    "dlib": DlibDetectorConfig,
    "insightface": InsightFaceDetectorConfig,
    "fake": FakeDetectorConfig,
    "mediapipe": MediaPipeDetectorConfig,
}


class DetectorSettings(Protocol):
    """What every member of ``DETECTORS`` offers: the static type of ``DetectorConfig``."""

    def build(self) -> FaceDetector: ...

    def __hash__(self) -> int: ...  # frozen: one built detector per config and process


DetectorConfig = Annotated[DetectorSettings, Registered(DETECTORS)]

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
