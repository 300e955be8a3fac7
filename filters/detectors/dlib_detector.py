"""dlib face detection: HOG (default) or CNN (mmod) boxes, landmarks from the 68-point model.

Weights ship in the ``face-recognition-models`` wheel. Its ``__init__`` imports
``pkg_resources``, which current setuptools no longer ships, so the ``models/`` directory is
located with ``importlib.util.find_spec`` without importing the package.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from filters.detection_copy import detection_copy
from filters.detectors.base import Face, MissingModelError, as_landmarks
from manifests.model_paths import checks_model_paths

# iBUG 300-W 68-point markup (Sagonas et al., 2013): eyes 36-41 and 42-47 (image left, right),
# nose tip 30, mouth corners 48 and 54.
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54

_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
_CNN_FILE = "mmod_human_face_detector.dat"


def model_files(model: str) -> list[str]:
    """The .dat files ``model`` (hog or cnn) loads."""
    return [_PREDICTOR_FILE] + ([_CNN_FILE] if model == "cnn" else [])


def default_models_dir() -> Path:
    """``face_recognition_models/models``, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(
            "dlib weights not found: install the 'face-recognition-models' package "
            "or set models_dir"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class DlibDetectorConfig(BaseModel):
    """dlib backend settings; an embedded detector (CPU, weights in a wheel), upright frontal
    faces only (docs/filters.md measures it against the default, MediaPipe)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["dlib"] = "dlib"
    model: Literal["hog", "cnn"] = Field(
        default="hog",
        description="hog: ~30 ms per 512 px image on one core; cnn (mmod) tolerates more pose "
        "but takes ~2 s per 512 px image on CPU (use a CUDA dlib build)",
    )
    upsample: int = Field(
        default=0,
        ge=0,
        description="0: the 80 px HOG window already matches face_size's 80 px minimum, and each "
        "upsampling costs ~4x time (measured 30 -> 130 ms at 512 px)",
    )
    adjust_threshold: float = Field(
        default=0.0,
        description="hog: added to the SVM threshold, 0 is dlib's default (confidence 0.5); "
        "cnn: minimum mmod score",
    )
    max_side_px: int = Field(
        default=1024,
        gt=0,
        description="larger images are shrunk before detection (HOG time grows with pixels); "
        "boxes are mapped back to the original size",
    )
    models_dir: Path | None = Field(
        default=None,
        description="directory holding the .dat files; default: face-recognition-models",
    )

    @field_validator("models_dir")
    @classmethod
    def _models_are_there(cls, models_dir: Path | None, info: ValidationInfo) -> Path | None:
        if models_dir is None or not checks_model_paths(info):
            return models_dir
        missing = [
            n for n in model_files(info.data.get("model", "hog")) if not (models_dir / n).is_file()
        ]
        if missing:
            raise ValueError(
                f"{models_dir} lacks {', '.join(missing)}: set models_dir to a directory holding "
                "them (face-recognition-models ships them), or leave it unset"
            )
        return models_dir

    def build(self) -> DlibDetector:
        return DlibDetector(self)


def margin_to_confidence(margin: float) -> float:
    """Map dlib's SVM margin to [0, 1] with the logistic function.

    Monotone, not calibrated: it puts dlib's decision threshold (margin 0) at 0.5, the same
    place as InsightFace's default ``det_thresh``, so confidence thresholds share one scale.
    """
    return 1.0 / (1.0 + math.exp(-margin))


@dataclass(frozen=True)
class _DlibModels:
    detector: Any
    predictor: Any
    cnn: bool


@functools.lru_cache(maxsize=4)
def _load(model: str, models_dir: Path | None) -> _DlibModels:
    """Load the detector and shape predictor once per process (thresholds do not matter)."""
    import dlib

    models_dir = models_dir or default_models_dir()
    for name in model_files(model):
        if not (models_dir / name).is_file():
            raise MissingModelError(f"dlib model {name} not found in {models_dir}")
    predictor = dlib.shape_predictor(str(models_dir / _PREDICTOR_FILE))
    if model == "cnn":
        detector = dlib.cnn_face_detection_model_v1(str(models_dir / _CNN_FILE))
    else:
        detector = dlib.get_frontal_face_detector()
    return _DlibModels(detector, predictor, model == "cnn")


class DlibDetector:
    """``FaceDetector`` over dlib; models load lazily, once per process."""

    def __init__(self, config: DlibDetectorConfig) -> None:
        self.config = config

    def detect(self, image: np.ndarray) -> list[Face]:
        models = _load(self.config.model, self.config.models_dir)
        copy = detection_copy(image, self.config.max_side_px)
        pixels = np.ascontiguousarray(copy.rgb)  # dlib reads C-contiguous arrays only
        rects, margins = self._find(models, pixels)
        faces = [
            _to_face(models.predictor, pixels, r, m) for r, m in zip(rects, margins, strict=True)
        ]
        return copy.to_full(faces)

    def _find(self, models: _DlibModels, image: np.ndarray) -> tuple[list[Any], list[float]]:
        if models.cnn:
            found = models.detector(image, self.config.upsample)
            kept = [d for d in found if d.confidence >= self.config.adjust_threshold]
            return [d.rect for d in kept], [float(d.confidence) for d in kept]
        rects, scores, _ = models.detector.run(
            image, self.config.upsample, self.config.adjust_threshold
        )
        return list(rects), [float(s) for s in scores]


def _to_face(predictor: Any, image: np.ndarray, rect: Any, margin: float) -> Face:
    """A ``Face`` from one dlib rectangle: 68 landmarks reduced to the 5-point order."""
    shape = predictor(image, rect)
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    five = np.stack(
        [
            points[_LEFT_EYE].mean(axis=0),
            points[_RIGHT_EYE].mean(axis=0),
            points[_NOSE_TIP],
            points[_MOUTH_LEFT],
            points[_MOUTH_RIGHT],
        ]
    )
    # dlib rectangles are inclusive pixel ranges; +1 gives the usual half-open box.
    box = (float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1))
    return Face(box, margin_to_confidence(margin), as_landmarks(five))
