"""Fingerprints: what produced a shard, so a rerun recomputes exactly what changed.

A stage's config section is split, field by field, into three roles (declared on the field
with ``json_schema_extra``):

- produce (the default): changes what the stage computes, e.g. a detector or a model path;
- ``DECISION``: a threshold applied by a pure ``decide`` to stored scores; changing one
  re-decides from the manifests without running a model again;
- ``OPERATIONAL``: changes how fast, never what (batch sizes, thread counts, a GPU flag).

Every ``Path`` in the produce part also contributes its identity (size and modification
time of the file, or of every file under the directory), so replacing a model's weights under
the same path counts as a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

DECISION: dict[str, Any] = {"fingerprint": "decision"}
OPERATIONAL: dict[str, Any] = {"fingerprint": "operational"}

# A model directory holds a few dozen files; past this many, the identity lists the count only
# (a mis-pointed path at a huge tree must not make planning slow).
MAX_IDENTITY_FILES = 2_000


@dataclass(frozen=True)
class ConfigParts:
    """A config section split by role (see the module docstring); JSON-ready values."""

    produce: dict[str, Any]
    decide: dict[str, Any]


def split_config(model: BaseModel) -> ConfigParts:
    """The produce and decision parts of ``model``, recursing into nested sections."""
    produce: dict[str, Any] = {}
    decide: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        extra = info.json_schema_extra
        role = extra.get("fingerprint") if isinstance(extra, dict) else None
        value = getattr(model, name)
        if role == "operational":
            continue
        if role == "decision":
            decide[name] = _jsonable(value)
            continue
        if isinstance(value, BaseModel):
            inner = split_config(value)
            produce[name] = inner.produce
            if inner.decide:
                decide[name] = inner.decide
            continue
        produce[name] = _jsonable(value)
    return ConfigParts(produce, decide)


def _jsonable(value: object) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return {"path": str(value), "identity": path_identity(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def path_identity(path: Path) -> Any:
    """Size and mtime of a file, or of each file under a directory; None when absent."""
    path = path.expanduser()
    if path.is_file():
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    if not path.is_dir():
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if len(files) > MAX_IDENTITY_FILES:
        return {"files": len(files)}
    return {str(p.relative_to(path)): path_identity(p) for p in files}


def digest(material: object) -> str:
    """A short stable hash of JSON-ready ``material`` (16 hex digits of sha256)."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
