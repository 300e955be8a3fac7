"""Contract over every registered filter: a field marked DECISION is read by ``decide`` only.

A rerun that changes only DECISION fields re-decides from stored scores without running a
model (``manifests.fingerprint``), so such a field must not change any score column, and must
change some verdict (else the marker is dead). A new filter is covered by being registered in
FILTERS; its DECISION fields need a row in ``batch`` that some value of theirs flips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import annotated_types
import numpy as np
import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from filters import FILTERS, Batch, FaceCountConfig, score_batch
from filters.detectors import FakeDetectorConfig, FakeFaceConfig
from filters.tags import decide_tags
from manifests import schema as S
from manifests.fingerprint import DECISION, OPERATIONAL, split_config
from stages.filter import filter_stage_config
from tests.filters.chains import FAKE_DETECTOR, build_chain, offline_configs, scripted_images
from tests.filters.conftest import encode

# One more scripted height: a face whose detector pose has pitch, so max_abs_pitch_deg bites.
PITCHED_H = 305
DETECTOR = FakeDetectorConfig(
    faces=FAKE_DETECTOR.faces,
    by_height=(*FAKE_DETECTOR.by_height, (PITCHED_H, (FakeFaceConfig(pose=(0.0, 30.0, 0.0)),))),
)
# Far past any score the test batch holds, for fields without bounds.
FAR = 1e9


def decision_fields(model: type[BaseModel]) -> list[str]:
    return [n for n, f in model.model_fields.items() if f.json_schema_extra == DECISION]


def candidates(info: FieldInfo) -> list[float]:
    """Extreme values a threshold may take: its bounds, or +-FAR without them (a bool: 0, 1)."""
    if info.annotation is bool:
        return [0.0, 1.0]
    low, high = -FAR, FAR
    for bound in info.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = float(bound.ge)  # type: ignore[arg-type]
        elif isinstance(bound, annotated_types.Gt):
            low = float(bound.gt) + 1  # type: ignore[arg-type]
        elif isinstance(bound, annotated_types.Le):
            high = float(bound.le)  # type: ignore[arg-type]
    return [low, high]


def with_values(config: BaseModel, values: dict[str, Any]) -> BaseModel | None:
    """``config`` with ``values``, validated; None when they are not valid for it."""
    try:
        return type(config).model_validate({**config.model_dump(), **values})
    except ValidationError:
        return None


def changed(config: BaseModel) -> BaseModel:
    """``config`` with every DECISION field set to a different valid value."""
    model = type(config)
    values: dict[str, Any] = {}
    for name in decision_fields(model):
        current = getattr(config, name)
        for value in candidates(model.model_fields[name]):
            typed = int(value) if isinstance(current, int) else value
            if typed != current and with_values(config, {**values, name: typed}) is not None:
                values[name] = typed
                break
        else:
            pytest.fail(f"no other valid value for {model.__name__}.{name}")
    out = with_values(config, values)
    assert out is not None
    return out


@pytest.fixture(scope="module")
def configs(clip_checkpoint: Path, heads: tuple[Path, Path]) -> dict[str, BaseModel]:
    """Offline configs of every filter; clip with both heads, so its head thresholds apply, and
    a similarity bound the random-weight CLIP passes, so they are not masked by it."""
    configs = offline_configs(clip_checkpoint)
    configs["face_count"] = FaceCountConfig(detector=DETECTOR)
    heads_on = {"aesthetic_head": heads[0], "watermark_head": heads[1], "min_similarity": -1.0}
    clip = with_values(configs["clip"], heads_on)
    assert clip is not None
    configs["clip"] = clip
    assert list(configs) == list(FILTERS)
    return configs


@pytest.fixture(scope="module")
def batch() -> Batch:
    rng = np.random.default_rng(2)
    pitched = rng.integers(0, 256, size=(PITCHED_H, 320, 3), dtype=np.uint8)
    blobs = [encode(image) for image in [*scripted_images(), pitched]] + [b"junk"]
    texts = ["a portrait photo of a person"] * (len(blobs) - 1) + [None]
    return Batch.from_bytes(blobs, {S.ALT_TEXT: texts})


@pytest.fixture(scope="module")
def scored(configs: dict[str, BaseModel], batch: Batch) -> dict[str, list[Any]]:
    """Every column of the default chain, every filter scoring every row."""
    return score_batch(build_chain(configs), batch, score_rejected=True)


def test_every_filter_marks_its_thresholds() -> None:
    assert {key: decision_fields(model) for key, model in FILTERS.items()} == {
        "image": ["min_side_px", "max_aspect_ratio"],
        "face_count": ["min_faces", "max_faces"],
        "face_confidence": ["min_confidence"],
        "face_size": ["min_px", "min_area_fraction"],
        "face_border": ["min_margin"],
        "face_pose": ["max_abs_yaw_deg", "max_abs_roll_deg", "max_abs_pitch_deg"],
        "face_sharpness": ["min_sharpness"],
        "face_exposure": ["min_brightness", "max_brightness", "min_contrast"],
        "nsfw": ["max_score"],
        "clip": ["min_similarity", "min_aesthetic", "max_watermark"],
        "hands": ["subset_min_confidence", "subset_min_size_px", "subset_inside_frame"],
        "face_mesh": ["min_eye_openness"],
        "body_pose": ["min_upper_body_visibility", "min_full_body_visibility"],
    }


def variants(config: BaseModel) -> list[BaseModel]:
    """``config`` with every DECISION field changed at once, then with each field at each of
    its extremes (a field that moves a score may do so only at one end, e.g. a confidence
    bound of 0 that every face passes anyway)."""
    out = [changed(config)]
    for name in decision_fields(type(config)):
        current = getattr(config, name)
        for value in candidates(type(config).model_fields[name]):
            other = with_values(config, {name: int(value) if isinstance(current, int) else value})
            if other is not None:
                out.append(other)
    return out


@pytest.mark.parametrize("key", list(FILTERS))
def test_decision_fields_do_not_change_scores(
    key: str, configs: dict[str, BaseModel], batch: Batch, scored: dict[str, list[Any]]
) -> None:
    default = configs[key]
    inputs = batch.with_columns(scored)
    expected = default.build().score(inputs)  # type: ignore[attr-defined]
    for other in variants(default):
        assert split_config(other).produce == split_config(default).produce
        assert other.build().score(inputs) == expected, other  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("key", "field"), [(k, f) for k, model in FILTERS.items() for f in decision_fields(model)]
)
def test_each_decision_field_changes_some_verdict(
    key: str, field: str, configs: dict[str, BaseModel], scored: dict[str, list[Any]]
) -> None:
    default = configs[key]
    keep, reasons = default.build().decide(scored)  # type: ignore[attr-defined]
    tags = decide_tags([default.build()], scored)  # type: ignore[attr-defined]
    flipped = []
    for value in candidates(type(default).model_fields[field]):
        typed = int(value) if isinstance(getattr(default, field), int) else value
        other = with_values(default, {field: typed})
        if other is None:
            continue
        other_keep, other_reasons = other.build().decide(scored)  # type: ignore[attr-defined]
        other_tags = decide_tags([other.build()], scored)  # type: ignore[attr-defined]
        if (
            not np.array_equal(other_keep, keep)
            or list(other_reasons) != list(reasons)
            or any(not np.array_equal(other_tags[c], tags[c]) for c in tags)
        ):  # a tag (e.g. hands_subset) is a verdict too
            flipped.append(typed)
    assert flipped, f"no value of {key}.{field} in {candidates(type(default).model_fields[field])}"


def test_filter_section_splits_by_role() -> None:
    section = filter_stage_config()()
    parts = split_config(section)
    assert parts.decide["face_size"] == {"min_px": 80.0, "min_area_fraction": 0.02}
    assert parts.decide["face_count"] == {"min_faces": 1, "max_faces": 3}
    assert parts.produce["face_count"] == {
        "type": "face_count",
        "detector": {"type": "mediapipe", "model": "full_range", "min_confidence": 0.5},
        "min_confidence": 0.6,
    }
    assert parts.produce["face_confidence"] == {"type": "face_confidence"}
    assert parts.produce["nsfw"] == {"type": "nsfw", "model_path": None}
    for name in ("batch_size", "gpu"):
        assert name not in parts.produce and name not in parts.decide
    assert parts.produce["score_rejected"] is False
    assert parts.produce["max_pixels"] == 89_478_485


def test_a_threshold_change_leaves_produce_alone_and_a_detector_change_does_not() -> None:
    model = filter_stage_config()
    base = split_config(model())
    threshold = split_config(model.model_validate({"face_size": {"min_px": 160}}))
    assert threshold.produce == base.produce
    assert threshold.decide["face_size"]["min_px"] == 160.0
    detector = split_config(
        model.model_validate({"face_count": {"detector": {"type": "dlib", "upsample": 1}}})
    )
    assert detector.produce["face_count"]["detector"]["upsample"] == 1
    assert detector.decide == base.decide
    operational = split_config(model.model_validate({"batch_size": 64, "gpu": True}))
    assert operational == base


def test_markers_are_the_fingerprint_module_s() -> None:
    """Every marked field uses one of the two shared dicts (a typo would read as produce)."""
    markers = [
        f.json_schema_extra
        for model in FILTERS.values()
        for f in model.model_fields.values()
        if f.json_schema_extra is not None
    ]
    assert markers and all(m in (DECISION, OPERATIONAL) for m in markers)
