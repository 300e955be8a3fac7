"""Gallery tiles of the audit report: kept samples and samples rejected for each reason.

Picks are deterministic (manifest order, shard by shard); thumbnails come from the download
tars. Samples removed by a takedown request never get a thumbnail.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from manifests import schema as S
from manifests.io import join_stages
from manifests.layout import RunLayout
from stages.download_tar import find_member, open_download_tar, read_member
from stages.shard.plan import TAKEDOWN_REASON

KEPT = "kept"
# The gallery of kept samples tagged for the hand-focused subset (a tag, so also under KEPT).
HANDS_TAGGED = S.HANDS_SUBSET
_THUMB_PX = 128  # thumbnail longer side: a gallery row of 6 fits a 1280 px window
_THUMB_QUALITY = 80


@dataclass(frozen=True)
class Tile:
    sample_id: str
    text: str  # the caption, else the alt text
    thumbnail: str | None  # a data URI; None when there is no image to show


def thumbnail(data: bytes) -> str | None:
    """A small JPEG data URI of image bytes (None when they do not decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
        image.thumbnail((_THUMB_PX, _THUMB_PX))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=_THUMB_QUALITY)
    except (UnidentifiedImageError, OSError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _pick(layout: RunLayout, stages: list[str], groups: list[str], per_group: int) -> dict:
    """Rows chosen per group (kept or reason): {group: [(shard, row), ...]}."""
    picked: dict[str, list[tuple[int, dict]]] = {g: [] for g in groups}
    for shard in layout.done_shards(stages[-1]):
        if all(len(rows) >= per_group for rows in picked.values()):
            break
        try:
            table = join_stages(layout, stages, shard)
        except FileNotFoundError:  # a shard skipped by some stage
            continue
        for row in table.to_pylist():
            group = KEPT if row[S.KEEP] else row[S.REJECT_REASON]
            tagged = [HANDS_TAGGED] if row[S.KEEP] and row.get(S.HANDS_SUBSET) is True else []
            for name in (group, *tagged):
                rows = picked.get(name)
                if rows is not None and len(rows) < per_group:
                    rows.append((shard, row))
    return picked


def _images(layout: RunLayout, picked: dict[str, list[tuple[int, dict]]]) -> dict[str, bytes]:
    wanted: dict[int, list[dict]] = {}
    for group, chosen in picked.items():
        for shard, row in chosen:
            if group != TAKEDOWN_REASON and row.get(S.DL_KEY):
                wanted.setdefault(shard, []).append(row)
    images: dict[str, bytes] = {}
    for shard, rows in sorted(wanted.items()):
        with open_download_tar(layout, shard) as (tar, members):
            for row in rows:
                data = read_member(tar, find_member(members, row[S.DL_KEY]))
                if data is not None:
                    images[row[S.SAMPLE_ID]] = data
    return images


def galleries(
    layout: RunLayout,
    stages: list[str],
    reasons: list[str],
    per_group: int = 6,
    tags: tuple[str, ...] = (),
) -> dict[str, list[Tile]]:
    """Tiles for the kept samples, for each reason in ``reasons`` (in that order), then for
    kept samples with each tag in ``tags`` (``HANDS_TAGGED``)."""
    picked = _pick(layout, stages, [KEPT, *reasons, *tags], per_group)
    images = _images(layout, picked)
    out: dict[str, list[Tile]] = {}
    for group, rows in picked.items():
        tiles = []
        for _, row in rows:
            sid = row[S.SAMPLE_ID]
            data = images.get(sid)
            text = row.get(S.CAPTION) or row.get(S.ALT_TEXT) or ""
            tiles.append(Tile(sid, text, thumbnail(data) if data is not None else None))
        out[group] = tiles
    return out
