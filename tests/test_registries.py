"""Contract tests over every registry outside ``FILTERS``: the config union is the registry.

Each registry key validates, through the union configs use, to exactly its registered model;
an unknown ``type`` is one pydantic error that names every registered key, in registry order.
A new backend is covered by adding its registry line and its minimal settings to ``MINIMAL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from captioners import CAPTIONERS, CaptionerConfig
from filters.detectors import DETECTORS, DetectorConfig
from filters.hand_detectors import HAND_DETECTORS, HandDetectorConfig
from manifests.model_paths import SKIP_MODEL_PATHS
from manifests.registry import registry_key
from pipeline.config import ConfigError, load_config
from proxt2i import config as proxt2i_config
from proxt2i.objectives import OBJECTIVES, ObjectiveConfig
from proxt2i.objectives.step_weights import STEP_WEIGHTS, StepWeights
from proxt2i.rewards import REWARDS, RewardConfig
from proxt2i.samplers import SAMPLERS
from proxt2i.text import TEXT_ENCODERS, TextEncoderConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEMO, TRAIN = CONFIGS / "demo.yaml", CONFIGS / "proxt2i-cpu.yaml"
CLIP = {"model_name": "ViT-B-32", "checkpoint": "clip.pt"}
# registry name -> (registry, its config union, the fewest settings of each key). Model paths
# are not checked (SKIP_MODEL_PATHS): this is about the union, not about files on disk.
MINIMAL: dict[str, tuple[dict[str, type[BaseModel]], Any, dict[str, dict[str, Any]]]] = {
    "detectors": (
        DETECTORS,
        DetectorConfig,
        {"dlib": {}, "insightface": {"model_root": "packs"}, "fake": {}, "mediapipe": {}},
    ),
    "hand_detectors": (
        HAND_DETECTORS,
        HandDetectorConfig,
        {"mediapipe": {}, "onnx": {"model_path": "hands.onnx"}, "fake": {}},
    ),
    "captioners": (
        CAPTIONERS,
        CaptionerConfig,
        {
            "attributes": {},
            "hf_vlm": {"model_path": "vlm"},
            "openai_api": {"model": "m", "base_url": "http://127.0.0.1:9/v1"},
            "scripted": {},
        },
    ),
    "objectives": (OBJECTIVES, ObjectiveConfig, {"prox_matching": {}, "eps_mse": {}}),
    "step_weights": (STEP_WEIGHTS, StepWeights, {"log10": {}, "root_p": {}}),
    "text_encoders": (
        TEXT_ENCODERS,
        TextEncoderConfig,
        {"minilm": {}, "open_clip": CLIP, "hf_text": {"path": "t5"}},
    ),
    "rewards": (
        REWARDS,
        RewardConfig,
        {
            "face_quality": {},
            "face_detected": {},
            "clip_score": CLIP,
            "aesthetic": {**CLIP, "head": "head.pt"},
        },
    ),
}
KEYS = [(name, key) for name, (registry, _, _) in MINIMAL.items() for key in registry]


def _tags(*keys: str) -> str:
    """pydantic's message for ``type: nope`` in a union over ``keys``."""
    return "Input tag 'nope' found using 'type' does not match any of the expected tags: " + (
        ", ".join(repr(key) for key in keys)
    )


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_every_key_has_minimal_settings(name: str) -> None:
    registry, _, minimal = MINIMAL[name]
    assert list(minimal) == list(registry)


@pytest.mark.parametrize(("name", "key"), KEYS)
def test_each_key_validates_through_the_union_to_its_model(name: str, key: str) -> None:
    registry, union, minimal = MINIMAL[name]
    config = TypeAdapter(union).validate_python(
        {"type": key, **minimal[key]}, context=SKIP_MODEL_PATHS
    )
    assert type(config) is registry[key]
    assert config.type == key


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_an_unknown_type_is_one_error_naming_every_key(name: str) -> None:
    registry, union, _ = MINIMAL[name]
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(union).validate_python({"type": "nope"})
    (error,) = caught.value.errors()
    assert error["type"] == "union_tag_invalid"
    assert error["msg"] == _tags(*registry)


@pytest.mark.parametrize("key", list(SAMPLERS))
def test_each_sampler_key_is_its_models_type(key: str) -> None:
    # Samplers are named by key (evaluate: samplers: [...]), so they need no union.
    assert registry_key(SAMPLERS[key]) == key
    assert SAMPLERS[key]().build().name == key  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "caption.captioner.type=nope",
            f"config error in {DEMO}: caption.captioner: "
            + _tags("attributes", "hf_vlm", "openai_api", "scripted")
            + " (got {'type': 'nope'})",
        ),
        (
            "filter.face_count.detector.type=nope",
            f"config error in {DEMO}: filter.face_count.detector: "
            + _tags("dlib", "insightface", "fake", "mediapipe")
            + " (got {'type': 'nope'})",
        ),
    ],
)
def test_the_pipeline_config_names_the_allowed_keys(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO, [override])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("override", "where", "tags"),
    [
        ("text_encoder={type: nope}", "text_encoder", _tags("minilm", "open_clip", "hf_text")),
        ("objectives.0.type=nope", "objectives.0", _tags("prox_matching", "eps_mse")),
        (
            "objectives.0.step_weights={type: nope}",
            "objectives.0.step_weights",
            _tags("log10", "root_p"),
        ),
    ],
)
def test_the_training_config_names_the_allowed_keys(override: str, where: str, tags: str) -> None:
    with pytest.raises(proxt2i_config.ConfigError) as caught:
        proxt2i_config.load_config(TRAIN, [override])
    (line,) = str(caught.value).splitlines()  # the pipeline's one-line style, then the input
    assert line.startswith(f"config error in {TRAIN}: {where}: {tags} (got ")
