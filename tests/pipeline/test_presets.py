"""Every preset in configs/ validates once its placeholder paths exist.

Presets spell each path the user must provide as a relative path under ``data/`` or
``models/``. The test creates each one under tmp, as the validators expect it (an InsightFace
pack directory with its .onnx files, a VLM directory with config.json, plain files otherwise),
and points the preset at it with ``--set``-style overrides. Files are placeholders: nothing
loads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import ConfigError, load_config
from proxt2i.config import load_config as load_train_config
from stages import STAGES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUN_PRESETS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("proxt2i-"))
TRAIN_PRESETS = sorted(CONFIGS.glob("proxt2i-*.yaml"))
PLACEHOLDER_ROOTS = ("data/", "models/")
# What a directory placeholder must hold, by its key (filters/detectors/insightface_detector.py:
# <model_root>/models/<pack>/ with the detector and the module files; captioners/hf_vlm.py).
PACK_FILES = ("det_10g.onnx", "1k3d68.onnx", "genderage.onnx")


def placeholders(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every value that is, or lists, placeholder paths."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from placeholders(value, f"{prefix}{key}.")
    elif is_placeholder(node) or (
        isinstance(node, list) and node and all(map(is_placeholder, node))
    ):
        yield prefix[:-1], node


def is_placeholder(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PLACEHOLDER_ROOTS)


def fake(key: str, path: Path, data: dict[str, Any]) -> Path:
    """Create the placeholder ``path`` for ``key`` as its validator expects it."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "model_root":
        pack = yaml_get(data, key.rsplit(".", 1)[0]).get("pack", "buffalo_l")
        for name in PACK_FILES:
            make_file(path / "models" / pack / name)
    elif leaf == "model_path" and yaml_get(data, key.rsplit(".", 1)[0]).get("type") == "hf_vlm":
        make_file(path / "config.json", "{}")
    else:
        make_file(path)
    return path


def make_file(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def yaml_get(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    node: Any = data
    for part in dotted.split("."):
        node = node[part]
    return dict(node)


def fake_overrides(preset: Path, root: Path) -> list[str]:
    """``key=value`` overrides pointing every placeholder of ``preset`` under ``root``."""
    data = yaml.safe_load(preset.read_text(encoding="utf-8"))
    overrides = []
    for key, value in placeholders(data):
        paths = value if isinstance(value, list) else [value]
        # A glob placeholder becomes one matching file.
        made = [str(fake(key, root / p.replace("*", "part-00000"), data)) for p in paths]
        overrides.append(f"{key}={made if isinstance(value, list) else made[0]}")
    return overrides


def test_presets_are_found() -> None:
    """A new preset is validated by being added to configs/; these must stay."""
    assert {"demo.yaml", "laion-face-15m.yaml", "laion-face-cpu.yaml"} <= {
        p.name for p in RUN_PRESETS
    }
    assert {"proxt2i-cpu.yaml", "proxt2i-gpu.yaml"} <= {p.name for p in TRAIN_PRESETS}


@pytest.mark.parametrize("preset", RUN_PRESETS, ids=lambda p: p.name)
def test_run_preset_validates_with_its_placeholders_in_place(preset: Path, tmp_path: Path) -> None:
    config = load_config(preset, fake_overrides(preset, tmp_path))
    assert config.stages == list(STAGES)


@pytest.mark.parametrize("preset", TRAIN_PRESETS, ids=lambda p: p.name)
def test_train_preset_validates(preset: Path) -> None:
    load_train_config(preset)


def test_full_presets_name_their_placeholders() -> None:
    data = yaml.safe_load((CONFIGS / "laion-face-15m.yaml").read_text(encoding="utf-8"))
    assert dict(placeholders(data)) == {
        "candidates.input": ["data/laion400m-meta/*.parquet"],
        "candidates.include": ["data/laion_face_ids.pth"],
        "filter.face_count.detector.model_root": "models/insightface",
        "filter.clip.checkpoint": (
            "models/clip/vit_large_patch14_clip_224.openai/open_clip_pytorch_model.bin"
        ),
        "filter.clip.aesthetic_head": "models/clip/sac+logos+ava1-l14-linearMSE.pth",
        "filter.clip.watermark_head": "models/clip/watermark-l14-head.pth",
    }
    cpu = yaml.safe_load((CONFIGS / "laion-face-cpu.yaml").read_text(encoding="utf-8"))
    assert dict(placeholders(cpu)) == {
        "candidates.input": ["data/laion400m-meta/*.parquet"],
        "candidates.include": ["data/laion_face_ids.pth"],
    }


def test_15m_preset_runs_the_production_choices(tmp_path: Path) -> None:
    preset = CONFIGS / "laion-face-15m.yaml"
    config = load_config(preset, fake_overrides(preset, tmp_path))
    section: Any = config
    assert section.filter.chain == [
        "image", "face_count", "face_confidence", "face_size", "face_border", "face_pose",
        "face_sharpness", "face_exposure", "nsfw", "clip", "hands", "face_mesh", "body_pose",
    ]  # fmt: skip
    assert section.filter.gpu is True
    detector = section.filter.face_count.detector
    assert (detector.type, detector.pack_dir()) == (
        "insightface",
        tmp_path / "models/insightface/models/buffalo_l",
    )
    assert (section.filter.clip.model_name, section.filter.clip.device) == (
        "ViT-L-14-quickgelu",
        "cuda",
    )
    assert section.caption.captioner.type == "openai_api"
    assert section.shard.dataset_name == "LAION-Face-T2I-15M"


def test_15m_preset_with_an_hf_vlm_captioner(tmp_path: Path) -> None:
    preset = CONFIGS / "laion-face-15m.yaml"
    overrides = fake_overrides(preset, tmp_path)
    vlm = tmp_path / "models" / "Qwen2.5-VL-7B-Instruct"
    captioner = f"caption.captioner={{type: hf_vlm, model_path: {vlm}, batch_size: 16}}"
    with pytest.raises(ConfigError) as caught:
        load_config(preset, [*overrides, captioner])
    assert str(caught.value) == (
        f"config error in {preset}: caption.captioner.model_path: model directory {vlm} has no "
        "config.json; models are never downloaded, place the checkpoint (save_pretrained / "
        "huggingface-cli download) there"
    )
    make_file(vlm / "config.json", "{}")
    config: Any = load_config(preset, [*overrides, captioner, "caption.gpu=true"])
    assert (config.caption.captioner.model_path, config.caption.gpu) == (vlm, True)


def test_15m_preset_refuses_a_missing_insightface_pack(tmp_path: Path) -> None:
    preset = CONFIGS / "laion-face-15m.yaml"
    absent = tmp_path / "absent"
    overrides = [
        *fake_overrides(preset, tmp_path),
        f"filter.face_count.detector.model_root={absent}",
    ]
    with pytest.raises(ConfigError) as caught:
        load_config(preset, overrides)
    assert str(caught.value) == (
        f"config error in {preset}: filter.face_count.detector.model_root: "
        f"{absent}/models/buffalo_l does not exist; set model_root to the directory holding "
        "models/buffalo_l (nothing is downloaded)"
    )
