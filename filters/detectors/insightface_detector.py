"""InsightFace detection (SCRFD / RetinaFace packs such as buffalo_l) from a local model root.

The production backend on GPU: boxes, 5 keypoints and detection score from the pack's detector,
plus head pose (``landmark_3d_68``) and age/gender (``genderage``) when the pack has them.
Nothing is downloaded: a missing pack is a ``MissingModelError`` naming the expected directory.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.detectors.base import Face, MissingModelError, as_landmarks


class InsightFaceDetectorConfig(BaseModel):
    """InsightFace backend settings; the pack lives at ``<model_root>/models/<pack>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["insightface"] = "insightface"
    model_root: Path = Field(
        default=Path("~/.insightface"),
        description="InsightFace's own default root, never downloaded to",
    )
    pack: str = Field(
        default="buffalo_l", description="buffalo_l: SCRFD-10GF, the most accurate pack"
    )
    providers: tuple[str, ...] = Field(
        default=("CUDAExecutionProvider", "CPUExecutionProvider"),
        description="ONNX Runtime providers in preference order; unavailable ones are dropped",
    )
    det_size: int = Field(
        default=640, gt=0, description="SCRFD input side; 640 is InsightFace's default"
    )
    det_thresh: float = Field(
        default=0.5, ge=0, le=1, description="InsightFace's default detection threshold"
    )
    modules: tuple[str, ...] = Field(
        default=("detection", "landmark_3d_68", "genderage"),
        description="pack models to run: detection is required; landmark_3d_68 adds head pose, "
        "genderage adds age and gender; recognition (embeddings) is not needed here",
    )

    def pack_dir(self) -> Path:
        """Where the pack must be: InsightFace's ``<root>/models/<name>`` layout."""
        return self.model_root.expanduser() / "models" / self.pack

    def build(self) -> InsightFaceDetector:
        return InsightFaceDetector(self)


@functools.lru_cache(maxsize=2)
def _load(config: InsightFaceDetectorConfig) -> Any:
    """Build and prepare ``FaceAnalysis`` once per process and config."""
    import onnxruntime
    from insightface.app import FaceAnalysis

    available = set(onnxruntime.get_available_providers())
    providers = [p for p in config.providers if p in available] or ["CPUExecutionProvider"]
    # Passing the pack directory itself (not a name) keeps FaceAnalysis off its download path.
    app = FaceAnalysis(
        name=str(config.pack_dir()), allowed_modules=list(config.modules), providers=providers
    )
    app.prepare(ctx_id=0, det_thresh=config.det_thresh, det_size=(config.det_size,) * 2)
    return app


class InsightFaceDetector:
    """``FaceDetector`` over ``insightface.app.FaceAnalysis``."""

    def __init__(self, config: InsightFaceDetectorConfig) -> None:
        pack_dir = config.pack_dir()
        if not any(pack_dir.glob("*.onnx")):
            raise MissingModelError(
                f"InsightFace pack {config.pack!r} not found: expected its .onnx files in "
                f"{pack_dir} (set model_root; nothing is downloaded)"
            )
        self.config = config

    def detect(self, image: np.ndarray) -> list[Face]:
        app = _load(self.config)
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # InsightFace expects OpenCV's BGR
        return [_to_face(found) for found in app.get(bgr)]


def _to_face(found: Any) -> Face:
    x0, y0, x1, y1 = (float(v) for v in found.bbox[:4])
    pose = None
    if found.pose is not None:
        pitch, yaw, roll = (float(v) for v in found.pose)  # InsightFace order: pitch, yaw, roll
        pose = (yaw, pitch, roll)
    age = float(found.age) if found.age is not None else None
    return Face(
        box=(x0, y0, x1, y1),
        confidence=float(found.det_score),
        landmarks=as_landmarks(np.asarray(found.kps, dtype=np.float64)),
        pose=pose,
        age=age,
        gender=found.sex,
    )
