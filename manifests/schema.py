"""The manifest column schema: every column of every stage is defined here, once.

Each stage writes ``RUN/<stage>/<shard:05d>.parquet`` holding ``sample_id`` plus only the
columns it adds (DESIGN.md §3). Column names appear as string literals in this module only;
the rest of the code imports the constants below.

Columns are named ``<quantity>[_<unit>]``. Each block below belongs to one stage; a new stage
adds its own block and its ``<STAGE>_COLUMNS`` tuple.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

# Bumped whenever a column changes meaning or type; recorded in run.json.
SCHEMA_VERSION: Final = 1


@dataclass(frozen=True)
class Column:
    """One manifest column: its name, Arrow type and meaning."""

    name: str
    dtype: pa.DataType
    doc: str


COLUMNS: dict[str, Column] = {}


def _col(name: str, dtype: pa.DataType, doc: str) -> str:
    """Register a column and return its name (so constants stay plain strings)."""
    if name in COLUMNS:
        raise ValueError(f"column {name!r} defined twice")
    COLUMNS[name] = Column(name, dtype, doc)
    return name


def keep_column(owner: str, note: str = "") -> str:
    """The ``<owner>_keep`` column: filter ``owner``'s own verdict, False also when the filter
    lacked its scores. Registered on first use (a filter's class names it by its own name, so
    adding a filter adds no line here); asking again returns the same column, and a column
    of that name with another type or meaning is an error. ``note`` qualifies the meaning,
    e.g. ``"always kept"`` for a filter that only tags."""
    name = f"{owner}_keep"
    column = Column(name, pa.bool_(), f"{owner} filter verdict" + (f" ({note})" if note else ""))
    existing = COLUMNS.setdefault(name, column)
    if existing != column:
        raise ValueError(f"column {name!r} is already defined as {existing}, not as {column}")
    return name


_BOX = pa.list_(pa.float32(), 4)
_POINTS = pa.list_(pa.list_(pa.float32(), 2))

# --- shared by every stage -------------------------------------------------------------------
SAMPLE_ID: Final = _col("sample_id", pa.string(), "first 16 hex of sha1(normalized URL)")
KEEP: Final = _col("keep", pa.bool_(), "still in the corpus after this stage")
REJECT_REASON: Final = _col(
    "reject_reason", pa.string(), "first reason anywhere upstream or here, '<stage|filter>:<why>'"
)

# --- candidates ------------------------------------------------------------------------------
URL: Final = _col("url", pa.string(), "normalized URL (what is downloaded)")
URL_ORIGINAL: Final = _col("url_original", pa.string(), "URL exactly as in the input")
ALT_TEXT: Final = _col("alt_text", pa.string(), "original LAION alt text (TEXT), never edited")
META_WIDTH_PX: Final = _col("meta_width_px", pa.int64(), "WIDTH from the metadata")
META_HEIGHT_PX: Final = _col("meta_height_px", pa.int64(), "HEIGHT from the metadata")
SIMILARITY: Final = _col("similarity", pa.float64(), "LAION CLIP image-text similarity")
PUNSAFE: Final = _col("punsafe", pa.float64(), "LAION-5B probability unsafe")
PWATERMARK: Final = _col("pwatermark", pa.float64(), "LAION-5B probability watermark")
NSFW_TAG: Final = _col("nsfw_tag", pa.string(), "LAION-400M NSFW tag (UNLIKELY/UNSURE/NSFW)")
LICENSE: Final = _col("license", pa.string(), "licence from the metadata, if any")
SOURCE_SAMPLE_ID: Final = _col("source_sample_id", pa.string(), "LAION SAMPLE_ID or hash")
SOURCE_FILE: Final = _col("source_file", pa.string(), "input parquet the row came from")
SOURCE_ROW: Final = _col("source_row", pa.int64(), "row index inside source_file")
DUPLICATE_OF: Final = _col("duplicate_of", pa.string(), "sample_id of the first copy of the URL")
SHARD: Final = _col("shard", pa.int32(), "shard index the row was bucketed into")
URL_HOST: Final = _col("url_host", pa.string(), "host of the normalized URL (planning only)")
URL_SHA1: Final = _col("url_sha1", pa.string(), "sha1 of the normalized URL (planning only)")

# --- download --------------------------------------------------------------------------------
DL_STATUS: Final = _col(
    "dl_status", pa.string(), "img2dataset status, 'not_attempted', or 'taken_down' (bytes purged)"
)
DL_ERROR: Final = _col("dl_error", pa.string(), "img2dataset error message, verbatim")
DL_KEY: Final = _col("dl_key", pa.string(), "member key inside RUN/download/<shard>.tar")
DL_SHA256: Final = _col("dl_sha256", pa.string(), "sha256 of the bytes as served")
DL_WIDTH_PX: Final = _col("dl_width_px", pa.int64(), "stored image width")
DL_HEIGHT_PX: Final = _col("dl_height_px", pa.int64(), "stored image height")
DL_ORIGINAL_WIDTH_PX: Final = _col("dl_original_width_px", pa.int64(), "width as served")
DL_ORIGINAL_HEIGHT_PX: Final = _col("dl_original_height_px", pa.int64(), "height as served")

# --- filter (owned by filters/) --------------------------------------------------------------
# Decoded image.
IMG_WIDTH_PX: Final = _col("img_width_px", pa.int64(), "decoded width (after EXIF rotation)")
IMG_HEIGHT_PX: Final = _col("img_height_px", pa.int64(), "decoded height (after EXIF rotation)")
DECODE_STATUS: Final = _col("decode_status", pa.string(), "'ok' or why decoding failed")
PHASH: Final = _col("phash", pa.string(), "perceptual hash, hex (image filter; read by dedup)")
# Face detection: all faces, then the main (largest) face.
FACE_COUNT: Final = _col("face_count", pa.int32(), "faces above the confidence threshold")
FACE_BOXES: Final = _col("face_boxes", pa.list_(_BOX), "x0,y0,x1,y1 in pixels, all faces")
FACE_CONFIDENCES: Final = _col("face_confidences", pa.list_(pa.float32()), "per face")
FACE_LANDMARKS: Final = _col("face_landmarks", pa.list_(_POINTS), "5 points per face, x,y px")
FACE_BOX: Final = _col("face_box", _BOX, "main face box")
FACE_CONFIDENCE: Final = _col("face_confidence", pa.float32(), "main face detector score")
FACE_SIZE_PX: Final = _col("face_size_px", pa.float32(), "main face shorter side")
FACE_AREA_FRACTION: Final = _col("face_area_fraction", pa.float32(), "main face area / image")
FACE_YAW_DEG: Final = _col("face_yaw_deg", pa.float32(), "main face yaw estimate")
FACE_ROLL_DEG: Final = _col("face_roll_deg", pa.float32(), "main face roll from the eye line")
FACE_PITCH_DEG: Final = _col("face_pitch_deg", pa.float32(), "main face pitch, if known")
FACE_SHARPNESS: Final = _col("face_sharpness", pa.float32(), "Laplacian variance, size-normed")
FACE_BRIGHTNESS: Final = _col("face_brightness", pa.float32(), "mean luma of the face crop 0-1")
FACE_CONTRAST: Final = _col("face_contrast", pa.float32(), "std of luma of the face crop 0-1")
FACE_BORDER_MARGIN: Final = _col(
    "face_border_margin", pa.float32(), "min distance box-to-border / face size (<0: cut off)"
)
# Detector extras (face_count, when the backend estimates them); published after the main
# face's scores (the order of the published scores follows this module, filters.declarations).
FACE_AGE: Final = _col("face_age", pa.float32(), "detector age estimate, if the backend has one")
FACE_GENDER: Final = _col("face_gender", pa.string(), "detector gender estimate, if any")
NSFW_SCORE: Final = _col("nsfw_score", pa.float32(), "open_nsfw probability")
CLIP_SIMILARITY: Final = _col("clip_similarity", pa.float32(), "cosine(image, alt text)")
AESTHETIC_SCORE: Final = _col("aesthetic_score", pa.float32(), "aesthetic head output")
WATERMARK_SCORE: Final = _col("watermark_score", pa.float32(), "watermark head probability")
FACE_INDEX: Final = _col("face_index", pa.int32(), "position of the main face in face_boxes")
FACE_POSES: Final = _col(
    "face_poses", pa.list_(pa.list_(pa.float32(), 3)), "detector yaw,pitch,roll deg per face"
)
# The cascade (filter.score_rejected): filters that skipped a row an earlier filter rejected.
NOT_SCORED: Final = _col(
    "not_scored",
    pa.list_(pa.string()),
    "chain filters that never scored the row (an earlier one rejected it); [] all scored, "
    "null: the row never entered the filter stage",
)
# The reason ``decide_all`` gives a row that reaches a filter which never scored it.
NOT_SCORED_WHY: Final = "not_scored"

# --- hands (filter ``hands``: detection, then a subset tag; it never drops) ------------------
HAND_COUNT: Final = _col("hand_count", pa.int32(), "hands the hand detector returned")
HAND_BOXES: Final = _col("hand_boxes", pa.list_(_BOX), "x0,y0,x1,y1 px of each hand's landmarks")
HAND_CONFIDENCES: Final = _col("hand_confidences", pa.list_(pa.float32()), "per hand, 0-1")
HAND_HANDEDNESS: Final = _col(
    "hand_handedness", pa.list_(pa.string()), "per hand: the person's 'left' or 'right', or null"
)
HAND_LANDMARKS: Final = _col("hand_landmarks", pa.list_(_POINTS), "21 points per hand, x,y px")
HAND_SIZES_PX: Final = _col(
    "hand_sizes_px", pa.list_(pa.float32()), "per hand: longer side of its landmarks' box"
)
HAND_FACE_RATIOS: Final = _col(
    "hand_face_ratios", pa.list_(pa.float32()), "per hand: size / main face's shorter side"
)
HAND_INSIDE_FRAME: Final = _col(
    "hand_inside_frame", pa.list_(pa.bool_()), "per hand: all 21 landmarks inside the image"
)
HAND_SIZE_PX: Final = _col("hand_size_px", pa.float32(), "largest hand's size, null: no hand")
HAND_FACE_RATIO: Final = _col("hand_face_ratio", pa.float32(), "largest hand's size / face size")
HANDS_SUBSET: Final = _col(
    "hands_subset", pa.bool_(), "tag: in the hand-focused subset (filter.hands.subset_* rule)"
)

# --- face mesh (filter ``face_mesh``: MediaPipe's 478 points on the main face) ---------------
FACE_EYE_OPENNESS_LEFT: Final = _col(
    "face_eye_openness_left", pa.float32(), "eye aspect ratio of the image-left eye (~0.3 open)"
)
FACE_EYE_OPENNESS_RIGHT: Final = _col(
    "face_eye_openness_right", pa.float32(), "eye aspect ratio of the image-right eye"
)
FACE_EYE_OPENNESS: Final = _col("face_eye_openness", pa.float32(), "min of both eye ratios")
FACE_MOUTH_OPEN: Final = _col("face_mouth_open", pa.float32(), "inner-lip gap / mouth width")
FACE_SMILE: Final = _col("face_smile", pa.float32(), "mouth width / outer eye-corner distance")
FACE_GAZE_X: Final = _col(
    "face_gaze_x", pa.float32(), "iris offset in the eye, half eye widths, + image right"
)
FACE_GAZE_Y: Final = _col("face_gaze_y", pa.float32(), "iris offset across the eye, + down")
FACE_MESH_YAW_DEG: Final = _col(
    "face_mesh_yaw_deg", pa.float32(), "main face yaw from the mesh, + nose to image right"
)
FACE_MESH_PITCH_DEG: Final = _col(
    "face_mesh_pitch_deg", pa.float32(), "main face pitch from the mesh, + nose up"
)
FACE_MESH_ROLL_DEG: Final = _col(
    "face_mesh_roll_deg", pa.float32(), "main face roll from the mesh, + clockwise"
)

# --- body pose (filter ``body_pose``: MediaPipe Pose, 33 landmarks) --------------------------
BODY_UPPER_VISIBILITY: Final = _col(
    "body_upper_visibility", pa.float32(), "min in-frame visibility of both shoulders, 0-1"
)
BODY_FULL_VISIBILITY: Final = _col(
    "body_full_visibility", pa.float32(), "min in-frame visibility, shoulders to ankles, 0-1"
)
BODY_YAW_DEG: Final = _col(
    "body_yaw_deg", pa.float32(), "torso turn: 0 facing the camera, +-90 side, +-180 back"
)

# --- dedup -----------------------------------------------------------------------------------
DEDUP_GROUP: Final = _col("dedup_group", pa.string(), "sample_id of the kept copy of the group")

# --- caption (owned by captioners/) ----------------------------------------------------------
CAPTION: Final = _col("caption", pa.string(), "cleaned fine-grained caption")
CAPTION_SHORT: Final = _col("caption_short", pa.string(), "optional short caption")
CAPTION_MODEL: Final = _col("caption_model", pa.string(), "captioner backend and model")
CAPTION_PROMPT_VERSION: Final = _col("caption_prompt_version", pa.string(), "e.g. 'v1'")
CAPTION_WORDS: Final = _col("caption_words", pa.int32(), "words in the cleaned caption")
CAPTION_REFUSAL: Final = _col("caption_refusal", pa.bool_(), "model refused to describe")
CAPTION_TRUNCATED: Final = _col("caption_truncated", pa.bool_(), "cut to the length limit")
CAPTION_REPETITION: Final = _col("caption_repetition", pa.bool_(), "a repetition loop was cut")
CAPTION_SECONDS: Final = _col("caption_seconds", pa.float32(), "model time for this sample")
CAPTION_TOKENS: Final = _col(
    "caption_tokens", pa.int32(), "text-encoder tokens of the caption, special tokens included"
)
CAPTION_ERROR: Final = _col("caption_error", pa.string(), "why the captioner failed, else null")
# The columns of captioners.batch.CaptionRecord.as_row (sample_id first).
CAPTION_RECORD_COLUMNS: Final = (
    SAMPLE_ID,
    CAPTION,
    CAPTION_SHORT,
    CAPTION_MODEL,
    CAPTION_PROMPT_VERSION,
    CAPTION_WORDS,
    CAPTION_TOKENS,
    CAPTION_REFUSAL,
    CAPTION_TRUNCATED,
    CAPTION_REPETITION,
    CAPTION_SECONDS,
    CAPTION_ERROR,
)

# --- shard -----------------------------------------------------------------------------------
OUT_TAR: Final = _col("out_tar", pa.string(), "final tar name under RUN/shards/")
OUT_INDEX: Final = _col("out_index", pa.int64(), "position inside out_tar")
TAKEDOWN: Final = _col("takedown", pa.bool_(), "removed by a takedown request")
# Columns of the Parquet index beside each final tar and of the shard stage's run-wide parts.
OUT_MEMBERS: Final = _col(
    "out_members", pa.list_(pa.string()), "member names of the sample inside out_tar"
)
OUT_OFFSET_BYTES: Final = _col(
    "out_offset_bytes", pa.int64(), "offset of the sample's first tar header in out_tar"
)
OUT_SIZE_BYTES: Final = _col(
    "out_size_bytes", pa.int64(), "bytes the sample takes in out_tar, headers and padding included"
)
OUT_METADATA_JSON: Final = _col("out_metadata_json", pa.string(), "the sample's json member")
OUT_IMAGE_EXT: Final = _col("out_image_ext", pa.string(), "image member extension, e.g. 'jpg'")

# --- per-stage column sets (sample_id first) -------------------------------------------------
VERDICT_COLUMNS: Final = (KEEP, REJECT_REASON)
CANDIDATES_COLUMNS: Final = (
    SAMPLE_ID,
    SHARD,
    URL,
    URL_ORIGINAL,
    ALT_TEXT,
    META_WIDTH_PX,
    META_HEIGHT_PX,
    SIMILARITY,
    PUNSAFE,
    PWATERMARK,
    NSFW_TAG,
    LICENSE,
    SOURCE_SAMPLE_ID,
    SOURCE_FILE,
    SOURCE_ROW,
    DUPLICATE_OF,
    *VERDICT_COLUMNS,
)
DOWNLOAD_COLUMNS: Final = (
    SAMPLE_ID,
    DL_STATUS,
    DL_ERROR,
    DL_KEY,
    DL_SHA256,
    DL_WIDTH_PX,
    DL_HEIGHT_PX,
    DL_ORIGINAL_WIDTH_PX,
    DL_ORIGINAL_HEIGHT_PX,
    *VERDICT_COLUMNS,
)

DEDUP_COLUMNS: Final = (SAMPLE_ID, DEDUP_GROUP, *VERDICT_COLUMNS)


# Columns that measure time: they differ between two otherwise identical runs, so equality
# checks of manifests (reruns, cluster comparisons) leave them out.
VOLATILE_COLUMNS: Final = frozenset({CAPTION_SECONDS})


def schema_for(names: Iterable[str], extra: pa.Schema | None = None) -> pa.Schema:
    """Arrow schema for registered column ``names``, plus user-listed ``extra`` fields."""
    fields = [pa.field(n, COLUMNS[n].dtype) for n in names]
    if extra is not None:
        fields.extend(extra)
    return pa.schema(fields)


def reason(owner: str, why: str) -> str:
    """The one spelling of a reject reason: ``"<stage|filter>:<why>"``."""
    return f"{owner}:{why}"
