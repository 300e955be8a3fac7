"""Filter chains for the tests: every registered filter, run offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from filters import FILTERS, FaceCountConfig, HandsConfig
from filters.detectors import FakeDetectorConfig, FakeFaceConfig
from filters.hand_detectors import FakeHandConfig, FakeHandDetectorConfig
from filters.protocol import Filter
from tests.filters.conftest import TINY_CLIP

# Image heights script the fake detector (FakeDetectorConfig.by_height).
ONE_FACE_H, NO_FACE_H, CROWD_H, CUT_OFF_H, TILTED_H = 300, 301, 302, 303, 304

FAKE_DETECTOR = FakeDetectorConfig(
    faces=(FakeFaceConfig(),),
    by_height=(
        (NO_FACE_H, ()),
        (CROWD_H, tuple(FakeFaceConfig(box=(0.1 * i, 0.1, 0.1 * i + 0.08, 0.2)) for i in range(5))),
        (CUT_OFF_H, (FakeFaceConfig(box=(-0.1, 0.3, 0.4, 0.7)),)),
        (TILTED_H, (FakeFaceConfig(pose=(60.0, 0.0, 0.0)),)),
    ),
)


# One hand per image (90 px on a 300 px image: in the hands subset), none on NO_FACE_H, one
# reaching past the left border on CUT_OFF_H (not fully inside the frame).
FAKE_HANDS = FakeHandDetectorConfig(
    by_height=(
        (NO_FACE_H, ()),
        (CUT_OFF_H, (FakeHandConfig(box=(-0.05, 0.6, 0.25, 0.9)),)),
    ),
)


def offline_configs(clip_checkpoint: Path | None) -> dict[str, BaseModel]:
    """A config per registry key: defaults, the fake detector, and a local CLIP checkpoint."""
    configs: dict[str, BaseModel] = {key: model() for key, model in FILTERS.items()}
    configs["face_count"] = FaceCountConfig(detector=FAKE_DETECTOR)
    configs["hands"] = HandsConfig(detector=FAKE_HANDS)
    if clip_checkpoint is not None:
        configs["clip"] = FILTERS["clip"](
            model_name=TINY_CLIP, checkpoint=clip_checkpoint, batch_size=2
        )
    else:
        del configs["clip"]
    return configs


def build_chain(configs: dict[str, BaseModel]) -> list[Filter]:
    return [config.build() for config in configs.values()]  # type: ignore[attr-defined]


def scripted_images() -> list[np.ndarray]:
    """Textured images, one per scripted height, plus a tiny one and a very wide one."""
    rng = np.random.default_rng(1)
    heights = [ONE_FACE_H, NO_FACE_H, CROWD_H, CUT_OFF_H, TILTED_H]
    images = [rng.integers(0, 256, size=(h, 320, 3), dtype=np.uint8) for h in heights]
    images.append(rng.integers(0, 256, size=(100, 100, 3), dtype=np.uint8))
    images.append(rng.integers(0, 256, size=(300, 1000, 3), dtype=np.uint8))
    return images
