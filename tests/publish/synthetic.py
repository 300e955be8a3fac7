"""A hand-built finished run (candidates .. caption) with real manifests and download tars.

Two input shards of six candidates each, rejected at every stage for a known reason, plus a
kept sample whose sample_id is hostile (path separators, dots) and one whose image is missing
from its download tar. Six samples are publishable.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from manifests import schema as S
from manifests.io import write_done, write_table_atomic, write_text_atomic
from manifests.layout import RunLayout
from manifests.verdicts import combine, count
from pipeline.demo_server import photo_bytes
from stages.plan import ShardPlan, write_plan

HOSTILE_ID = "../../etc/passwd.x/..jpg"
STAGES = ("candidates", "download", "filter", "dedup", "caption")


@dataclass(frozen=True)
class Sample:
    sample_id: str
    photo: str | None  # None: the download failed
    reason: str | None = None  # where the sample is dropped, "<stage-owner>:<why>"
    license: str | None = None
    in_tar: bool = True  # False: kept, but its image is missing from the download tar


def sid(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


SHARDS: dict[int, list[Sample]] = {
    0: [
        Sample(sid("a0"), "astronaut", license="cc-by-4.0"),
        Sample(sid("a1"), "grace_hopper", license="public-domain"),
        Sample(HOSTILE_ID, "astronaut_crop"),
        Sample(sid("a3"), None, "candidates:invalid_url"),
        Sample(sid("a4"), None, "download:http_404"),
        Sample(sid("a5"), "coffee", "face_count:zero"),
    ],
    1: [
        Sample(sid("b0"), "astronaut_resized", license="cc-by-4.0"),
        Sample(sid("b1"), "grace_hopper_crop"),
        Sample(sid("b2"), "astronaut_rot90"),
        Sample(sid("b3"), "astronaut_blur", "dedup:near_duplicate"),
        Sample(sid("b4"), "rocket", "caption:refusal"),
        Sample(sid("b5"), "astronaut", in_tar=False),
    ],
}
STAGE_OF_OWNER = {"candidates": 0, "download": 1, "face_count": 2, "dedup": 3, "caption": 4}
N_PUBLISHED = 6


def url_of(sample: Sample) -> str:
    return f"https://img.example.org/{sample.sample_id.replace('/', '_')}.jpg"


def _stage_reasons(samples: list[Sample], stage_index: int) -> list[str | None]:
    out: list[str | None] = []
    for s in samples:
        owner = s.reason.split(":")[0] if s.reason else None
        out.append(s.reason if owner and STAGE_OF_OWNER[owner] == stage_index else None)
    return out


def _candidates(samples: list[Sample], shard: int) -> dict[str, Any]:
    return {
        S.SHARD: [shard] * len(samples),
        S.URL: [url_of(s) for s in samples],
        S.URL_ORIGINAL: [url_of(s) for s in samples],
        S.ALT_TEXT: [f"alt text of {s.photo}" for s in samples],
        S.LICENSE: [s.license for s in samples],
        S.SIMILARITY: [0.3 + 0.01 * i for i in range(len(samples))],
    }


def _download(samples: list[Sample], shard: int) -> dict[str, Any]:
    keys = [f"{shard:05d}{i:04d}" if s.photo else None for i, s in enumerate(samples)]
    return {
        S.DL_STATUS: ["success" if k else "failed_to_download" for k in keys],
        S.DL_KEY: keys,
        S.DL_WIDTH_PX: [512 if k else None for k in keys],
        S.DL_HEIGHT_PX: [512 if k else None for k in keys],
        S.DL_SHA256: [hashlib.sha256(s.sample_id.encode()).hexdigest() for s in samples],
    }


def _filter(samples: list[Sample], shard: int) -> dict[str, Any]:
    n = len(samples)
    box = [100.0, 120.0, 300.0, 340.0]
    marks = [[150.0, 200.0], [250.0, 200.0], [200.0, 250.0], [160.0, 300.0], [240.0, 300.0]]
    return {
        S.FACE_COUNT: [0 if s.reason == "face_count:zero" else 1 for s in samples],
        S.FACE_BOXES: [[box] for _ in samples],
        S.FACE_CONFIDENCES: [[0.9] for _ in samples],
        S.FACE_LANDMARKS: [[marks] for _ in samples],
        S.FACE_CONFIDENCE: [0.9 - 0.05 * i for i in range(n)],
        S.FACE_SIZE_PX: [200.0 + 10 * i + 100 * shard for i in range(n)],
        S.FACE_SHARPNESS: [60.0 + 7 * i for i in range(n)],
        S.NSFW_SCORE: [0.01 * i for i in range(n)],
    }


def _dedup(samples: list[Sample], shard: int) -> dict[str, Any]:
    return {S.PHASH: ["f0f0f0f0f0f0f0f0"] * len(samples)}


def _caption(samples: list[Sample], shard: int) -> dict[str, Any]:
    text = [
        f"A photo of {s.photo.replace('_', ' ')}, close-up." if s.photo else None for s in samples
    ]
    return {
        S.CAPTION: text,
        S.CAPTION_MODEL: ["attributes" if t else None for t in text],
        S.CAPTION_PROMPT_VERSION: ["v1" if t else None for t in text],
        S.CAPTION_WORDS: [len(t.split()) if t else None for t in text],
    }


_BUILDERS = (_candidates, _download, _filter, _dedup, _caption)


def _write_stage(layout: RunLayout, shard: int, index: int, samples: list[Sample]) -> np.ndarray:
    """Write one stage's manifest and done marker; returns its keep column."""
    stage = STAGES[index]
    cols = _BUILDERS[index](samples, shard)
    upstream = np.ones(len(samples), dtype=bool)
    reasons: list[str | None] = [None] * len(samples)
    for i in range(index + 1):
        after = combine(upstream, reasons, _stage_reasons(samples, i))
        if i < index:
            upstream, reasons = after.keep, after.reasons
    table = pa.table({S.SAMPLE_ID: [s.sample_id for s in samples]})
    for name, values in cols.items():
        table = table.append_column(name, pa.array(values, S.COLUMNS[name].dtype))
    for name, array in after.columns().items():
        table = table.append_column(name, array)
    write_table_atomic(table, layout.manifest(stage, shard))
    write_done(layout, count(stage, shard, upstream, after, seconds={"total": 0.5 + index}))
    return after.keep


def _write_download_tar(layout: RunLayout, shard: int, samples: list[Sample]) -> None:
    keys = _download(samples, shard)[S.DL_KEY]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for s, key in zip(samples, keys, strict=True):
            if key is None or not s.in_tar:
                continue
            for ext, data in (("jpg", photo_bytes(s.photo or "")), ("txt", b"alt")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    path = layout.shard_file("download", shard, ".tar")
    path.write_bytes(buffer.getvalue())


RUN_CONFIG = {
    "stages": list(STAGES),
    "candidates": {"prefilter": {"min_similarity": 0.2}},
    "filter": {
        "chain": ["face_count", "face_size", "face_sharpness", "nsfw"],
        "face_count": {"type": "face_count", "min_faces": 1, "max_faces": 3},
        "face_size": {"type": "face_size", "min_px": 80.0, "min_area_fraction": 0.02},
        "face_sharpness": {"type": "face_sharpness", "min_sharpness": 50.0},
        "nsfw": {"type": "nsfw", "max_score": 0.2},
        "clip": {"type": "clip", "min_similarity": 0.28},
    },
    "caption": {"backend": {"type": "attributes"}, "prompt_version": "v1"},
}


def build_run(root: Path) -> RunLayout:
    """Write the whole run under ``root``."""
    layout = RunLayout(root)
    write_plan(layout, ShardPlan(inputs=(("in.parquet", 12),), shard_size=6, n_shards=2))
    for shard, samples in SHARDS.items():
        for index in range(len(STAGES)):
            _write_stage(layout, shard, index, samples)
        _write_download_tar(layout, shard, samples)
    info = {"config": RUN_CONFIG, "packages": {"webdataset": "0.2.111"}, "git_revision": "abc"}
    write_text_atomic(json.dumps(info), layout.run_json)
    return layout
