"""A hand-built finished run (candidates .. caption) with real manifests and download tars.

Two input shards of six candidates each, rejected at every stage for a known reason, plus a
kept sample whose sample_id is hostile (path separators, dots) and one whose image is missing
from its download tar. Six samples are publishable.

Built by the real writers where there are any: each reason is the one the stage emits (its
constants and classifiers), verdicts and reports come from ``manifests.verdicts``, and
``run.json`` is a validated config recorded by ``pipeline.run_info`` and
``manifests.run_record``.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from filters.face_count import NAME as FACE_COUNT
from filters.face_count import ZERO as NO_FACE
from manifests import schema as S
from manifests.io import write_done, write_table_atomic
from manifests.layout import RunLayout
from manifests.run_record import append_record, finish_record
from manifests.verdicts import Upstream
from pipeline.config import validate_config
from pipeline.demo_server import photo_bytes
from pipeline.run_info import new_record
from stages.candidates import NAME as CANDIDATES
from stages.caption import NAME as CAPTION
from stages.caption import REFUSED_REASON
from stages.dedup import NAME as DEDUP
from stages.download import NAME as DOWNLOAD
from stages.download_errors import classify
from stages.filter import NAME as FILTER
from stages.plan import ShardPlan, write_plan
from stages.shard.plan import SOURCE_STAGES
from stages.urls import UrlProblem, normalize_url

HOSTILE_ID = "../../etc/passwd.x/..jpg"
STAGES = SOURCE_STAGES
# img2dataset's error text for a 404 (urllib's HTTPError), as dl_error stores it.
HTTP_404_ERROR = "HTTP Error 404: Not Found"


@dataclass(frozen=True)
class Sample:
    sample_id: str
    photo: str | None  # None: the download failed
    reason: str | None = None  # where the sample is dropped, "<stage-owner>:<why>"
    license: str | None = None
    in_tar: bool = True  # False: kept, but its image is missing from the download tar


def sid(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def _url_reason(url: str) -> str:
    """The candidates stage's reason for a URL it cannot use."""
    try:
        normalize_url(url)
    except UrlProblem as problem:
        return S.reason(CANDIDATES, problem.why)
    raise ValueError(f"{url!r} is a usable URL")


SHARDS: dict[int, list[Sample]] = {
    0: [
        Sample(sid("a0"), "astronaut", license="cc-by-4.0"),
        Sample(sid("a1"), "grace_hopper", license="public-domain"),
        Sample(HOSTILE_ID, "astronaut_crop"),
        Sample(sid("a3"), None, _url_reason("https://")),
        Sample(sid("a4"), None, classify("failed_to_download", HTTP_404_ERROR)),
        Sample(sid("a5"), "coffee", NO_FACE),
    ],
    1: [
        Sample(sid("b0"), "astronaut_resized", license="cc-by-4.0"),
        Sample(sid("b1"), "grace_hopper_crop"),
        Sample(sid("b2"), "astronaut_rot90"),
        # stages.dedup_groups' reason for a copy that is not byte-identical (b0's, blurred)
        Sample(sid("b3"), "astronaut_blur", S.reason(DEDUP, "near")),
        Sample(sid("b4"), "rocket", REFUSED_REASON),
        Sample(sid("b5"), "astronaut", in_tar=False),
    ],
}
NEAR_COPY_OF = {sid("b3"): sid("b0")}
# The stage that emits each reason's owner (a filter's reasons are the filter stage's).
STAGE_OF_OWNER = {
    CANDIDATES: CANDIDATES,
    DOWNLOAD: DOWNLOAD,
    FACE_COUNT: FILTER,
    DEDUP: DEDUP,
    CAPTION: CAPTION,
}
N_PUBLISHED = 6


def url_of(sample: Sample) -> str:
    return f"https://img.example.org/{sample.sample_id.replace('/', '_')}.jpg"


def _stage_reasons(samples: list[Sample], stage: str) -> list[str | None]:
    out: list[str | None] = []
    for s in samples:
        owner = s.reason.split(":")[0] if s.reason else None
        out.append(s.reason if owner and STAGE_OF_OWNER[owner] == stage else None)
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
        S.DL_ERROR: [None if k else HTTP_404_ERROR for k in keys],
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
        S.PHASH: ["f0f0f0f0f0f0f0f0"] * n,
    }


def _dedup(samples: list[Sample], shard: int) -> dict[str, Any]:
    return {S.DEDUP_GROUP: [NEAR_COPY_OF.get(s.sample_id) for s in samples]}


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


def _write_stage(
    layout: RunLayout, shard: int, index: int, samples: list[Sample], upstream: Upstream
) -> Upstream:
    """Write one stage's manifest and done marker; returns the verdict it passes on."""
    stage = STAGES[index]
    after = upstream.combine(_stage_reasons(samples, stage))
    table = pa.table({S.SAMPLE_ID: [s.sample_id for s in samples]})
    for name, values in _BUILDERS[index](samples, shard).items():
        table = table.append_column(name, pa.array(values, S.COLUMNS[name].dtype))
    for name, array in after.columns().items():
        table = table.append_column(name, array)
    write_table_atomic(table, layout.manifest(stage, shard))
    write_done(layout, upstream.count(stage, shard, after, seconds={"total": 0.5 + index}))
    return Upstream(table, after.keep, after.reasons)


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
    "caption": {"captioner": {"type": "attributes"}},
}


def _write_run_record(layout: RunLayout) -> None:
    """run.json as ``laionface run`` writes it, for RUN_CONFIG. What would differ between two
    builds is pinned, so that the dataset card is the same bytes every time: the run_dir
    (``run``, wherever the fixture lies), the run's id and time, the software it names."""
    config = validate_config({**RUN_CONFIG, "run_dir": "run"}, "RUN_CONFIG")
    record = replace(
        new_record(config, STAGES, {}),
        run_id="20260101T000000-000000",
        started_at="2026-01-01T00:00:00+00:00",
        packages={"webdataset": "0.2.111"},
        git_revision="abc",
    )
    append_record(layout, record)
    finish_record(layout, record.run_id, "ok", record.started_at)


def build_run(root: Path) -> RunLayout:
    """Write the whole run under ``root``."""
    layout = RunLayout(root)
    write_plan(layout, ShardPlan(inputs=(("in.parquet", 12),), shard_size=6, n_shards=2))
    for shard, samples in SHARDS.items():
        ids = pa.table({S.SAMPLE_ID: [s.sample_id for s in samples]})
        upstream = Upstream.entering(ids)
        for index in range(len(STAGES)):
            upstream = _write_stage(layout, shard, index, samples, upstream)
        _write_download_tar(layout, shard, samples)
    _write_run_record(layout)
    return layout
