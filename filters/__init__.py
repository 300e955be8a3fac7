"""Image filters: score each sample (models allowed), then decide from the scores alone.

Recommended order (cheap and decisive first, so that with ``score_rejected: false`` the
expensive models only see survivors; ``face_count`` must precede every face filter because it
runs the detector once per image and writes the face columns they read):

1. ``image``            decode status, shorter side, aspect ratio (+ the perceptual hash)
2. ``face_count``       face detection (``DETECTORS``: dlib, insightface, mediapipe, fake);
                        1..3 faces
3. ``face_confidence``  detector confidence of the main (largest) face
4. ``face_size``        main face shorter side in px and share of the image
5. ``face_border``      main face not cut off by the image border
6. ``face_pose``        |yaw|, |roll| (and |pitch| when the detector estimates it)
7. ``face_sharpness``   variance of the Laplacian on the size-normalized face crop
8. ``face_exposure``    face crop too dark, blown out or flat
9. ``nsfw``             open_nsfw probability (ONNX Runtime)
10. ``clip``            image-text similarity, optional aesthetic and watermark heads
11. ``hands``           hand detection (``HAND_DETECTORS``: mediapipe, onnx, fake); never
                        drops, tags the hand-focused subset (``hands_subset``, ``filters.tags``)
12. ``face_mesh``       eye openness, mouth, smile, gaze, head pose of the main face (MediaPipe
                        mesh); keeps all unless ``min_eye_openness`` is set
13. ``body_pose``       upper/full body in frame and torso orientation (MediaPipe Pose); keeps
                        all unless a visibility minimum is set. Last: tags for captions only

``FILTERS`` maps each key to its pydantic config model; ``config.build()`` returns the filter.
The config union (``FilterConfig``) is built from it; ``RECOMMENDED_ORDER`` states the order
above. What a filter publishes, which config fields are report thresholds and what captioners
may read are declared on its config (``filters.declarations``); docs/filters.md, "Add a
filter", walks through a new one.

A stage decodes once (``Batch.from_bytes``), calls ``score_batch`` and stores the columns;
``decide_all`` turns stored columns into verdicts without any model (what ``refilter`` runs).
Reasons are spelled ``"<filter>:<why>"`` (``manifests.schema.reason``).

Optional declarations a filter may make, read with a default by ``filters.scoring``:
``expensive = True`` (it runs a model: ``face_count``, ``nsfw``, ``clip``, ``hands``,
``face_mesh``, ``body_pose``) puts it in the cascade of ``score_rejected: cheap``, which skips
it for rows an earlier filter rejected while the cheap filters score every row;
``score_chain`` lists what each row skipped (``not_scored``) and ``decide_all`` rejects a row
that reaches such a filter with ``"<filter>:not_scored"``. Detectors scan
``Batch.detection_copy`` (at most ``filter.detect_max_side`` px, results mapped back to
full-resolution pixels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel

from filters.batch import Batch
from filters.body_pose import BodyPoseConfig, BodyPoseFilter
from filters.clip_score import ClipFilter, ClipFilterConfig
from filters.decode import DecodeConfig, DecodedImage, decode_image
from filters.detectors import DETECTORS, DetectorConfig, Face, FaceDetector, MissingModelError
from filters.face_count import FaceCountConfig, FaceCountFilter
from filters.face_geometry import (
    FaceBorderConfig,
    FaceBorderFilter,
    FaceConfidenceConfig,
    FaceConfidenceFilter,
    FaceSizeConfig,
    FaceSizeFilter,
)
from filters.face_mesh import FaceMeshConfig, FaceMeshFilter
from filters.face_pose import FacePoseConfig, FacePoseFilter
from filters.face_quality import (
    FaceExposureConfig,
    FaceExposureFilter,
    FaceSharpnessConfig,
    FaceSharpnessFilter,
)
from filters.hand_detectors import HAND_DETECTORS, Hand, HandDetector
from filters.hands import HandsConfig, HandsFilter
from filters.image_filter import ImageFilter, ImageFilterConfig
from filters.nsfw import NsfwConfig, NsfwFilter
from filters.protocol import Filter, FilterSettings
from filters.scoring import ChainVerdicts, check_chain, decide_all, score_batch
from manifests.registry import Registered, RegistryError

FILTERS: dict[str, type[BaseModel]] = {
    "image": ImageFilterConfig,
    "face_count": FaceCountConfig,
    "face_confidence": FaceConfidenceConfig,
    "face_size": FaceSizeConfig,
    "face_border": FaceBorderConfig,
    "face_pose": FacePoseConfig,
    "face_sharpness": FaceSharpnessConfig,
    "face_exposure": FaceExposureConfig,
    "nsfw": NsfwConfig,
    "clip": ClipFilterConfig,
    "hands": HandsConfig,
    "face_mesh": FaceMeshConfig,
    "body_pose": BodyPoseConfig,
}

# The recommended chain, in order (the list above; the default chain is this less clip, which
# needs a local checkpoint). Stated here, not taken from FILTERS' order: a filter registered
# without a place here runs only where a config's chain names it.
RECOMMENDED_ORDER: tuple[str, ...] = (
    "image",
    "face_count",
    "face_confidence",
    "face_size",
    "face_border",
    "face_pose",
    "face_sharpness",
    "face_exposure",
    "nsfw",
    "clip",
    "hands",
    "face_mesh",
    "body_pose",
)


def check_order(order: Sequence[str], registry: Mapping[str, type[BaseModel]]) -> None:
    """Raise ``RegistryError`` unless ``order`` names registered filters, each once."""
    unknown = [f"{key!r} is not in FILTERS" for key in order if key not in registry]
    twice = [f"{key!r} is named twice" for key in dict.fromkeys(order) if order.count(key) > 1]
    if unknown or twice:
        raise RegistryError("RECOMMENDED_ORDER: " + "; ".join([*unknown, *twice]))


check_order(RECOMMENDED_ORDER, FILTERS)

# The discriminated union over FILTERS (``type`` picks the member), built from the registry.
FilterConfig = Annotated[FilterSettings, Registered(FILTERS)]

__all__ = [
    "DETECTORS",
    "FILTERS",
    "HAND_DETECTORS",
    "RECOMMENDED_ORDER",
    "Batch",
    "BodyPoseConfig",
    "BodyPoseFilter",
    "ChainVerdicts",
    "ClipFilter",
    "ClipFilterConfig",
    "DecodeConfig",
    "DecodedImage",
    "DetectorConfig",
    "Face",
    "FaceBorderConfig",
    "FaceBorderFilter",
    "FaceConfidenceConfig",
    "FaceConfidenceFilter",
    "FaceCountConfig",
    "FaceCountFilter",
    "FaceDetector",
    "FaceExposureConfig",
    "FaceExposureFilter",
    "FaceMeshConfig",
    "FaceMeshFilter",
    "FacePoseConfig",
    "FacePoseFilter",
    "FaceSharpnessConfig",
    "FaceSharpnessFilter",
    "FaceSizeConfig",
    "FaceSizeFilter",
    "Filter",
    "FilterConfig",
    "FilterSettings",
    "Hand",
    "HandDetector",
    "HandsConfig",
    "HandsFilter",
    "ImageFilter",
    "ImageFilterConfig",
    "MissingModelError",
    "NsfwConfig",
    "NsfwFilter",
    "check_chain",
    "check_order",
    "decide_all",
    "decode_image",
    "score_batch",
]
