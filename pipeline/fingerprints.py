"""Expected fingerprints of every (stage, shard), and what a rerun must do about each.

A shard's score fingerprint hashes its stage's produce material (the config section without
its thresholds and speed-only settings, the identities of model paths, the package and schema
versions) with the fingerprint of its input: the upstream shard's for a shard-wise stage, all
upstream shards' for a barrier stage. Its fingerprint adds the stage's thresholds. So a change
anywhere reaches exactly the shards below it, make-like, and a threshold change alone reaches
this stage as a re-decision (``Action.REDECIDE``) and everything below it as a recompute.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pydantic import BaseModel

from manifests.fingerprint import ConfigParts, digest, split_config
from manifests.io import DoneMarker
from manifests.schema import SCHEMA_VERSION
from pipeline.config import short_repr
from stages.base import InputReader, Stage


def package_version() -> str:
    try:
        return metadata.version("laion-face-t2i")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


@dataclass(frozen=True)
class StageMaterial:
    """What a stage's config contributes to its fingerprints."""

    stage: str
    parts: ConfigParts

    @classmethod
    def of(cls, stage: Stage) -> StageMaterial:
        config: BaseModel = stage.config
        parts = split_config(config)
        produce = {**parts.produce, "_version": package_version(), "_schema": SCHEMA_VERSION}
        if isinstance(stage, InputReader):
            produce["_input"] = stage.input_identity()
        return cls(stage.name, ConfigParts(produce, parts.decide))

    @property
    def digest(self) -> str:
        """The digest of the whole section (recorded in the run record)."""
        return digest([self.stage, self.parts.produce, self.parts.decide])

    def shard(self, upstream: str | None) -> ShardFingerprint:
        """The fingerprints of a shard whose input has fingerprint ``upstream``."""
        score = digest([self.stage, self.parts.produce, upstream])
        full = digest([score, self.parts.decide]) if self.parts.decide else score
        return ShardFingerprint(full, score if self.parts.decide else None)


@dataclass(frozen=True)
class ShardFingerprint:
    """The fingerprint a shard's done marker must carry to be up to date."""

    full: str
    score: str | None


def barrier_input(upstream: dict[int, str]) -> str:
    """One fingerprint for all of a barrier stage's input shards."""
    return digest(sorted(upstream.items()))


class Action(enum.Enum):
    UP_TO_DATE = "up to date"
    REDECIDE = "re-decide"
    RUN = "run"


def action_for(marker: DoneMarker | None, expected: ShardFingerprint, redecides: bool) -> Action:
    """What a rerun does with one shard, given its done marker."""
    if marker is None:
        return Action.RUN
    if marker.fingerprint == expected.full:
        return Action.UP_TO_DATE
    if redecides and expected.score is not None and marker.score_fingerprint == expected.score:
        return Action.REDECIDE
    return Action.RUN


def why(marker: DoneMarker | None, action: Action) -> str:
    """A short reason for ``action`` (the details of a config change come from ``changes``)."""
    if action is Action.UP_TO_DATE:
        return "up to date"
    if marker is None:
        return "not done"
    if marker.fingerprint is None:
        return "done before fingerprints were recorded"
    if action is Action.REDECIDE:
        return "thresholds changed"
    return "what produced it changed"


def changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config sections, ``key: old -> new``."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {short_repr(a)} -> {short_repr(b)}")
    return out
