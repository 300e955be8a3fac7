"""What a run record holds about the software: package versions and the git revision."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from manifests.run_record import RunRecord
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


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(
    config: RunConfigBase, stages: Sequence[str], fingerprints: dict[str, str]
) -> RunRecord:
    """The run record of a new invocation (outcome ``running``) running ``stages``."""
    started = now_iso()
    return RunRecord(
        run_id=f"{started.replace(':', '').replace('-', '')[:15]}-{uuid.uuid4().hex[:6]}",
        started_at=started,
        config=config.model_dump(mode="json"),
        schema_version=SCHEMA_VERSION,
        packages=package_versions(),
        git_revision=git_revision(),
        stages=tuple(stages),
        fingerprints=fingerprints,
    )
