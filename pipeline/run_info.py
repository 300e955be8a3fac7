"""``RUN/run.json``: the resolved config, schema version, package versions, git revision."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from manifests.io import write_text_atomic
from manifests.layout import RunLayout
from manifests.schema import SCHEMA_VERSION
from pipeline.config import RunConfigBase

# Packages whose versions decide what a run produces.
TRACKED_PACKAGES = (
    "laion-face-t2i",
    "img2dataset",
    "dask",
    "distributed",
    "pyarrow",
    "pandas",
    "webdataset",
    "pydantic",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "dlib-bin",
    "onnxruntime",
    "open_clip_torch",
    "insightface",
    "transformers",
    "torch",
    "imagehash",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(where: Path | None = None) -> str | None:
    """The source tree's commit (with '-dirty' if modified), or None outside a git checkout."""
    where = where or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev or None


def run_info(config: RunConfigBase) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config.model_dump(mode="json"),
        "packages": package_versions(),
        "git_revision": git_revision(),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_run_info(config: RunConfigBase) -> Path:
    layout = RunLayout(config.run_dir)
    write_text_atomic(json.dumps(run_info(config), indent=2, sort_keys=True), layout.run_json)
    return layout.run_json
