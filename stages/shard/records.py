"""One published sample: its tar key, image payload, caption and provenance JSON.

Pure functions of a joined manifest row (candidates .. caption) and the downloaded bytes, so
the run-wide planning pass and the tar writer derive byte-identical members from the same row.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from filters import FILTERS
from filters.declarations import published_scores, published_tags
from manifests import schema as S

# Scores the published samples carry that no filter declares: LAION's own (the candidates
# stage reads them from the metadata) and the caption's length.
METADATA_SCORES: tuple[str, ...] = (S.SIMILARITY, S.PUNSAFE, S.PWATERMARK)
CAPTION_SCORES: tuple[str, ...] = (S.CAPTION_WORDS,)
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "png", "webp")  # img2dataset's encode formats
# A tar member name is "<key>.<ext>"; USTAR stores names up to 100 bytes without a prefix
# split (POSIX.1-1988 ustar header, field "name"), so keys stay well below that.
_MAX_KEY_CHARS = 64
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_DIGITS = 6  # decimals kept for floats in the json member: sub-pixel and 1e-6 score precision


def score_columns() -> tuple[str, ...]:
    """Numeric scores copied into every sample's json and its index row: what each registered
    filter publishes (``filters.declarations``), then LAION's and the caption's, then the
    scores of subset filters (beside their tags). Read from ``FILTERS`` at each call, so the
    columns follow the registry."""
    return (
        *published_scores(FILTERS, subsets=False),
        *METADATA_SCORES,
        *CAPTION_SCORES,
        *published_scores(FILTERS, subsets=True),
    )


def tag_columns() -> tuple[str, ...]:
    """Subset tags (bool) copied into every sample's json (top level) and its index row, as
    the registered filters declare them: a trainer selects or upweights a subset from either
    without a manifest."""
    return published_tags(FILTERS)


def member_key(sample_id: str) -> str:
    """The tar key of a sample: ``sample_id`` when it is already safe, else a cleaned form.

    WebDataset splits a member name at its first dot into key and extension, and a tar member
    name with ``/`` or ``..`` escapes the extraction folder; so anything but letters, digits,
    ``_`` and ``-`` becomes ``_``, and a changed key gets 8 hex of the original's sha1 so two
    hostile ids never collide. Leading ``_``/``-`` are dropped too: Hugging Face datasets skips
    tar members whose name starts with ``__`` or ``.`` as hidden files.
    """
    clean = _UNSAFE_KEY_CHARS.sub("_", sample_id)[:_MAX_KEY_CHARS].lstrip("_-")
    if clean == sample_id and clean:
        return clean
    digest = hashlib.sha1(sample_id.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]
    return f"{clean[: _MAX_KEY_CHARS - 9]}_{digest}" if clean else digest


@dataclass(frozen=True)
class ImageSettings:
    """How the image member is produced: the downloaded bytes, or a deterministic re-encode."""

    reencode: bool = False
    max_side_px: int | None = None
    jpeg_quality: int = 95


@dataclass(frozen=True)
class ImagePayload:
    data: bytes
    ext: str
    width: int | None
    height: int | None
    scale: float  # published pixels per downloaded pixel (1.0 when not resized)


def image_payload(data: bytes, ext: str, settings: ImageSettings) -> ImagePayload:
    """The image member; re-encoding drops EXIF and metadata so the bytes are reproducible."""
    if not settings.reencode:
        return ImagePayload(data, ext, None, None, 1.0)
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    width = image.width
    if settings.max_side_px is not None and max(image.size) > settings.max_side_px:
        image.thumbnail((settings.max_side_px, settings.max_side_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=settings.jpeg_quality, optimize=False)
    return ImagePayload(out.getvalue(), "jpg", image.width, image.height, image.width / width)


def _num(value: Any, scale: float = 1.0) -> Any:
    """JSON-safe number: NaN/inf become null, floats keep ``_DIGITS`` decimals."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    number = float(value) * scale
    return round(number, _DIGITS) if math.isfinite(number) else None


def _faces(row: Mapping[str, Any], scale: float) -> list[dict[str, Any]]:
    boxes = row.get(S.FACE_BOXES) or []
    confidences = row.get(S.FACE_CONFIDENCES) or []
    landmarks = row.get(S.FACE_LANDMARKS) or []
    poses = row.get(S.FACE_POSES) or []
    faces = []
    for i, box in enumerate(boxes):
        faces.append(
            {
                "box_xyxy_px": [_num(v, scale) for v in box],
                "confidence": _num(confidences[i]) if i < len(confidences) else None,
                "landmarks_px": (
                    [[_num(x, scale), _num(y, scale)] for x, y in landmarks[i]]
                    if i < len(landmarks) and landmarks[i] is not None
                    else None
                ),
                "pose_yaw_pitch_roll_deg": (
                    [_num(v) for v in poses[i]] if i < len(poses) and poses[i] else None
                ),
            }
        )
    return faces


def _hands(row: Mapping[str, Any], scale: float) -> list[dict[str, Any]]:
    """Each detected hand (``filters.hands``), coordinates in published pixels."""
    per_hand = [
        row.get(name) or []
        for name in (
            S.HAND_BOXES, S.HAND_CONFIDENCES, S.HAND_HANDEDNESS, S.HAND_LANDMARKS,
            S.HAND_SIZES_PX, S.HAND_FACE_RATIOS, S.HAND_INSIDE_FRAME,
        )
    ]  # fmt: skip
    hands = []
    for box, confidence, side, points, size, ratio, inside in zip(*per_hand, strict=True):
        hands.append(
            {
                "box_xyxy_px": [_num(v, scale) for v in box],
                "confidence": _num(confidence),
                "handedness": side,
                "landmarks_px": [[_num(x, scale), _num(y, scale)] for x, y in points],
                "size_px": _num(size, scale),
                "face_ratio": _num(ratio),
                "inside_frame": inside,
            }
        )
    return hands


def sample_metadata(row: Mapping[str, Any], image: ImagePayload) -> dict[str, Any]:
    """The json member: provenance, image size, faces, hands, caption provenance, scores and
    subset tags (null when the run had no filter deciding them)."""
    width = image.width or row.get(S.IMG_WIDTH_PX) or row.get(S.DL_WIDTH_PX)
    height = image.height or row.get(S.IMG_HEIGHT_PX) or row.get(S.DL_HEIGHT_PX)
    return {
        "sample_id": row[S.SAMPLE_ID],
        "url": row.get(S.URL),
        "alt_text": row.get(S.ALT_TEXT),
        "license": row.get(S.LICENSE),
        "source_sample_id": row.get(S.SOURCE_SAMPLE_ID),
        "sha256_served": row.get(S.DL_SHA256),
        "width_px": width,
        "height_px": height,
        "original_width_px": row.get(S.DL_ORIGINAL_WIDTH_PX),
        "original_height_px": row.get(S.DL_ORIGINAL_HEIGHT_PX),
        "faces": _faces(row, image.scale),
        "main_face_index": row.get(S.FACE_INDEX),
        "caption_model": row.get(S.CAPTION_MODEL),
        "caption_prompt_version": row.get(S.CAPTION_PROMPT_VERSION),
        "caption_short": row.get(S.CAPTION_SHORT),
        "scores": {name: _num(row.get(name)) for name in score_columns()},
        "hands": _hands(row, image.scale),
        **{name: row.get(name) for name in tag_columns()},
    }


def dumps_metadata(metadata: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys, no spaces): the same row always gives the same bytes."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tar_member_bytes(size: int) -> int:
    """Bytes one member takes in a tar: a 512-byte header plus data padded to 512 (POSIX)."""
    return 512 + -(-size // 512) * 512
