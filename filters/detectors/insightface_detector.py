"""InsightFace detection (SCRFD / RetinaFace packs such as buffalo_l) from a local model root.

The production backend on GPU: boxes, 5 keypoints and detection score from the pack's detector,
plus head pose (``landmark_3d_68``) and age/gender (``genderage``) when the pack has them.
Nothing is downloaded: a missing or incomplete pack is a config error naming the expected
directory, and a one-line ``MissingModelError`` when the detector is built if the pack has gone
since, or holds no model that insightface takes for a face detector.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from filters.detectors.base import Face, MissingModelError, as_landmarks
from manifests.device import WorkerDevice
from manifests.fingerprint import OPERATIONAL
from manifests.model_paths import checks_model_paths

# The detector file of each released pack (InsightFace model zoo, python-package/README and
# the packs' zips): SCRFD-10GF, -2.5GF and -500MF; antelopev2 ships SCRFD-10GF under its own
# name. FaceAnalysis itself recognizes the detector by its outputs, not its name, so a pack not
# listed here only needs some .onnx file (or a manifest.json, InsightFace's V2 package format).
PACK_DETECTORS: dict[str, str] = {
    "buffalo_l": "det_10g.onnx",
    "buffalo_m": "det_2.5g.onnx",
    "buffalo_s": "det_500m.onnx",
    "buffalo_sc": "det_500m.onnx",
    "antelopev2": "scrfd_10g_bnkps.onnx",
}
# Optional modules' files in those packs (buffalo_sc has neither).
MODULE_FILES: dict[str, str] = {"landmark_3d_68": "1k3d68.onnx", "genderage": "genderage.onnx"}
# InsightFace's V2 model-package manifest (insightface.model_zoo.package_manifest).
PACK_MANIFEST = "manifest.json"
# insightface routes a model with at least this many outputs to SCRFD, its detector
# (insightface.model_zoo.model_zoo.ModelRouter.get_model: 6/9 outputs for 3 strides, 10/15 for 5).
DETECTOR_MIN_OUTPUTS = 5

logger = logging.getLogger(__name__)


def pack_problem(pack_dir: Path, pack: str) -> str | None:
    """What is missing for ``pack`` at ``pack_dir``, or None when it looks complete."""
    if not pack_dir.is_dir():
        return f"{pack_dir} does not exist"
    detector = PACK_DETECTORS.get(pack)
    if detector is not None:
        if not (pack_dir / detector).is_file():
            return f"pack {pack!r} has no {detector} (its face detector) in {pack_dir}"
        return None
    if not any(pack_dir.glob("*.onnx")) and not (pack_dir / PACK_MANIFEST).is_file():
        return f"{pack_dir} holds no .onnx model (nor an InsightFace {PACK_MANIFEST})"
    return None


class InsightFaceDetectorConfig(BaseModel):
    """InsightFace backend settings; the pack lives at ``<model_root>/models/<pack>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["insightface"] = "insightface"
    pack: str = Field(
        default="buffalo_l", description="buffalo_l: SCRFD-10GF, the most accurate pack"
    )
    # Declared after ``pack``, so its validator can check the pack's files.
    model_root: Path = Field(
        default=Path("~/.insightface"),
        validate_default=True,
        description="InsightFace's own default root, never downloaded to; the pack must be at "
        "<model_root>/models/<pack>",
    )
    providers: tuple[str, ...] = Field(
        default=("CUDAExecutionProvider", "CPUExecutionProvider"),
        json_schema_extra=OPERATIONAL,
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
        validate_default=True,
        description="pack models to run: detection is required; landmark_3d_68 adds head pose, "
        "genderage adds age and gender; recognition (embeddings) is not needed here",
    )

    @field_validator("model_root")
    @classmethod
    def _pack_is_there(cls, root: Path, info: ValidationInfo) -> Path:
        pack = info.data.get("pack")
        if pack is not None and checks_model_paths(info):
            problem = pack_problem(root.expanduser() / "models" / pack, pack)
            if problem:
                raise ValueError(
                    f"{problem}; set model_root to the directory holding "
                    f"models/{pack} (nothing is downloaded)"
                )
        return root

    @field_validator("modules")
    @classmethod
    def _modules_are_in_the_pack(
        cls, modules: tuple[str, ...], info: ValidationInfo
    ) -> tuple[str, ...]:
        if "detection" not in modules:
            raise ValueError(f"{list(modules)} lacks detection, which every run needs")
        root, pack = info.data.get("model_root"), info.data.get("pack")
        if root is None or pack not in PACK_DETECTORS or not checks_model_paths(info):
            return modules
        pack_dir = root.expanduser() / "models" / pack
        for module in modules:
            name = MODULE_FILES.get(module)
            if name is not None and not (pack_dir / name).is_file():
                raise ValueError(
                    f"{module} needs {name}, which pack {pack!r} does not have in {pack_dir}: "
                    "drop it from modules or add the file"
                )
        return modules

    def pack_dir(self) -> Path:
        """Where the pack must be: InsightFace's ``<root>/models/<name>`` layout."""
        return self.model_root.expanduser() / "models" / self.pack

    def build(self) -> InsightFaceDetector:
        return InsightFaceDetector(self)


def _is_detector(path: Path) -> bool:
    """Whether insightface would take ``path`` for its face detector (by its outputs)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError):
        return False  # unreadable: insightface could not use it either
    return len(model.graph.output) >= DETECTOR_MIN_OUTPUTS


def detector_problem(pack_dir: Path, pack: str) -> str | None:
    """Why ``FaceAnalysis`` would find no face detector in ``pack_dir``, or None.

    Without one, insightface fails on a bare ``assert "detection" in self.models``. A V2
    package names its detector in its manifest, which insightface checks with a message.
    """
    if (pack_dir / PACK_MANIFEST).is_file():
        return None
    models = sorted(pack_dir.glob("*.onnx"))
    if not models:
        return f"no .onnx files in {pack_dir}"
    # The pack's named detector first: one small file is read in the usual case.
    named = pack_dir / PACK_DETECTORS.get(pack, "")
    if any(_is_detector(path) for path in sorted(models, key=lambda path: path != named)):
        return None
    names = ", ".join(path.name for path in models)
    return (
        f"none of its models ({names}) in {pack_dir} is a face detector (an SCRFD or "
        f"RetinaFace .onnx with {DETECTOR_MIN_OUTPUTS} or more outputs)"
    )


@functools.lru_cache(maxsize=2)
def _load(config: InsightFaceDetectorConfig) -> Any:
    """Build and prepare ``FaceAnalysis`` once per process and config."""
    import onnxruntime
    from insightface.app import FaceAnalysis

    device = WorkerDevice.current()
    providers = device.onnx_providers(config.providers, onnxruntime.get_available_providers())
    # Passing the pack directory itself (not a name) keeps FaceAnalysis off its download path.
    app = FaceAnalysis(
        name=str(config.pack_dir()), allowed_modules=list(config.modules), providers=providers
    )
    ctx_id = device.insightface_ctx_id(providers)
    det_size = (config.det_size,) * 2
    app.prepare(ctx_id=ctx_id, det_thresh=config.det_thresh, det_size=det_size)
    logger.info(
        "InsightFace %s: modules %s, providers %s, ctx_id %d, det_size %s, det_thresh %s",
        config.pack_dir(),
        sorted(app.models),
        providers,
        ctx_id,
        det_size,
        config.det_thresh,
    )
    return app


class InsightFaceDetector:
    """``FaceDetector`` over ``insightface.app.FaceAnalysis``."""

    def __init__(self, config: InsightFaceDetectorConfig) -> None:
        problem = detector_problem(config.pack_dir(), config.pack)
        if problem is not None:
            raise MissingModelError(
                f"InsightFace pack {config.pack!r} has no face detector: {problem}; set "
                "model_root (and pack) to a pack with one (nothing is downloaded)"
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
