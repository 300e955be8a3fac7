"""Write one final WebDataset tar and its Parquet index, byte for byte reproducibly.

A tar's bytes depend only on its samples: members are written in a fixed order with fixed
headers (mtime 0, uid/gid 0, empty user/group names, mode 0444, USTAR), so the same run (and a
takedown rebuild of the same samples) always yields the same file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import atomic_path, write_table_atomic
from manifests.layout import RunLayout
from stages.download_tar import find_member, open_download_tar, read_member
from stages.names import SHARD
from stages.shard.records import (
    ImageSettings,
    image_payload,
    member_key,
    score_columns,
    tag_columns,
    tar_member_bytes,
)

PUBLISH_DIR = "shards"
# Columns of RUN/shard/_global/parts/<shard>.parquet (one row per publishable sample) and of
# the index beside each tar (<name>.parquet), before the scores and tags (part_columns).
_PART_FIELDS: tuple[str, ...] = (
    S.SAMPLE_ID,
    S.SHARD,
    S.DL_KEY,
    S.OUT_IMAGE_EXT,
    S.OUT_SIZE_BYTES,
    S.OUT_METADATA_JSON,
    S.CAPTION,
    S.URL,
    S.LICENSE,
    S.CAPTION_MODEL,
    S.CAPTION_PROMPT_VERSION,
)
_INDEX_FIELDS: tuple[str, ...] = (
    S.SAMPLE_ID,
    S.OUT_INDEX,
    S.OUT_MEMBERS,
    S.OUT_OFFSET_BYTES,
    S.OUT_SIZE_BYTES,
    S.CAPTION,
    S.URL,
    S.LICENSE,
    S.CAPTION_MODEL,
    S.CAPTION_PROMPT_VERSION,
)


def part_columns() -> tuple[str, ...]:
    """Columns of a part file: its fields, then the published scores and tags."""
    return (*_PART_FIELDS, *score_columns(), *tag_columns())


def index_columns() -> tuple[str, ...]:
    """Columns of a tar's index: its fields, then the published scores and tags."""
    return (*_INDEX_FIELDS, *score_columns(), *tag_columns())


_TAR_MTIME = 0  # fixed header fields: reproducible tars (webdataset TarWriter's mtime argument)
_TAR_MODE = 0o444


@dataclass(frozen=True)
class OutShard:
    """One published tar: what the wids index and the checksum file list."""

    name: str  # file name under RUN/shards/, e.g. "00003.tar"
    nsamples: int
    filesize: int
    md5: str
    sha256: str
    index_sha256: str


def publish_dir(layout: RunLayout) -> Path:
    return layout.root / PUBLISH_DIR


def part_path(layout: RunLayout, shard: int) -> Path:
    return layout.stage_global(SHARD) / "parts" / f"{shard:05d}.parquet"


def _sample_members(row: dict, image: bytes, settings: ImageSettings) -> dict[str, bytes]:
    payload = image_payload(image, row[S.OUT_IMAGE_EXT], settings)
    return {
        payload.ext: payload.data,
        "json": row[S.OUT_METADATA_JSON].encode("utf-8"),
        "txt": (row[S.CAPTION] or "").encode("utf-8"),
    }


def _read_parts(layout: RunLayout, rows: pa.Table) -> dict[str, dict]:
    """Part rows of the given sample ids (from each input shard they come from)."""
    wanted = set(rows[S.SAMPLE_ID].to_pylist())
    found: dict[str, dict] = {}
    for shard in sorted(set(rows[S.SHARD].to_pylist())):
        part = pq.read_table(part_path(layout, shard))
        for row in part.to_pylist():
            if row[S.SAMPLE_ID] in wanted:
                found[row[S.SAMPLE_ID]] = row
    return found


def _read_images(layout: RunLayout, parts: dict[str, dict]) -> dict[str, bytes]:
    images: dict[str, bytes] = {}
    for shard in sorted({row[S.SHARD] for row in parts.values()}):
        with open_download_tar(layout, shard) as (tar, members):
            for sid, row in parts.items():
                if row[S.SHARD] != shard:
                    continue
                data = read_member(tar, find_member(members, row[S.DL_KEY]))
                if data is None:
                    raise FileNotFoundError(f"image of {sid} is gone from download shard {shard}")
                images[sid] = data
    return images


def write_output_tar(
    layout: RunLayout, name: str, rows: pa.Table, settings: ImageSettings
) -> OutShard:
    """Write ``RUN/shards/<name>`` (e.g. ``00003.tar``) and its index ``00003.parquet`` for
    ``rows`` (assignment rows: sample_id, shard, out_index), in out_index order."""
    from webdataset import TarWriter

    rows = rows.sort_by(S.OUT_INDEX)
    parts = _read_parts(layout, rows)
    images = _read_images(layout, parts)
    out_dir = publish_dir(layout)
    index: list[dict] = []
    offset = 0
    with atomic_path(out_dir / name) as tmp, tmp.open("wb") as stream:
        writer = TarWriter(
            stream, user="", group="", mode=_TAR_MODE, mtime=_TAR_MTIME, encoder=False
        )
        for position, sid in enumerate(rows[S.SAMPLE_ID].to_pylist()):
            row = parts[sid]
            key = member_key(sid)
            members = _sample_members(row, images[sid], settings)
            writer.write({"__key__": key, **members})
            size = sum(tar_member_bytes(len(v)) for v in members.values())
            index.append(_index_row(row, position, key, sorted(members), offset, size))
            offset += size
        writer.close()
    table = pa.Table.from_pylist(index, schema=S.schema_for(index_columns()))
    write_table_atomic(table, out_dir / index_name(name))
    return describe(out_dir, name, len(index))


def _index_row(row: dict, position: int, key: str, exts: list[str], offset: int, size: int) -> dict:
    out = {c: row.get(c) for c in index_columns()}
    out[S.OUT_INDEX] = position
    out[S.OUT_MEMBERS] = [f"{key}.{ext}" for ext in exts]
    out[S.OUT_OFFSET_BYTES] = offset
    out[S.OUT_SIZE_BYTES] = size
    return out


def file_digests(path: Path) -> tuple[str, str]:
    """(md5, sha256) of a file, read in 1 MiB chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def index_name(name: str) -> str:
    """The Parquet index beside tar ``name``: same stem."""
    return f"{name.removesuffix('.tar')}.parquet"


def describe(out_dir: Path, name: str, nsamples: int) -> OutShard:
    tar = out_dir / name
    md5, sha = file_digests(tar)
    _, index_sha = file_digests(out_dir / index_name(name))
    return OutShard(name, nsamples, tar.stat().st_size, md5, sha, index_sha)
