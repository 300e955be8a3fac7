"""Decode image bytes once into 8-bit RGB pixels, or say why not (never raises).

EXIF orientation is applied; grayscale, bilevel, palette, CMYK, YCbCr, LAB and 16-bit inputs
become 8-bit RGB; transparency is composited on white (how a viewer shows it, and what a caption
model should see). Animated images give their first frame.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

# Decode status values (the image filter turns them into reasons "image:<status>").
OK = "ok"
EMPTY = "empty"
UNDECODABLE = "undecodable"
TOO_MANY_PIXELS = "too_many_pixels"
DECODE_FAILURES: tuple[str, ...] = (EMPTY, UNDECODABLE, TOO_MANY_PIXELS)

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


class DecodeConfig(BaseModel):
    """Decoding limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_pixels: int = Field(
        default=89_478_485,
        gt=0,
        description="Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS, ~0.25 GiB "
        "of RGBA); larger images are refused before any pixel is decoded",
    )


@dataclass(frozen=True)
class DecodedImage:
    """Decoded pixels: ``rgb`` is H x W x 3 uint8, upright (EXIF orientation applied)."""

    rgb: np.ndarray

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


DEFAULT_DECODE = DecodeConfig()


def decode_image(data: bytes | None, config: DecodeConfig = DEFAULT_DECODE) -> DecodedImage | str:
    """``DecodedImage``, or a status string from ``DECODE_FAILURES`` when decoding fails."""
    if not data:
        return EMPTY
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces Pillow's warning; Pillow still raises past 2x its own.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > config.max_pixels:
                    return TOO_MANY_PIXELS
                image.load()
                # In place: otherwise Pillow returns a copy even of an upright image, 2.3 ms
                # of the 9.4 ms a 1024 px JPEG took to decode (measured, one core).
                ImageOps.exif_transpose(image, in_place=True)
                return DecodedImage(to_rgb(image))
    except Image.DecompressionBombError:
        return TOO_MANY_PIXELS
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        # SyntaxError and EOFError are what some Pillow plugins raise on corrupt headers.
        logger.debug("undecodable image: %s", error)
        return UNDECODABLE


def to_rgb(image: Image.Image) -> np.ndarray:
    """H x W x 3 uint8 RGB from any Pillow mode."""
    if image.mode in _WIDE_GRAY_MODES:
        gray = _gray_to_8bit(np.asarray(image))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        return _composite_on_white(np.asarray(image.convert("RGBA")))
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # Through tobytes (packed in C), one writable array that owns its memory: copying numpy's
    # view of the image instead took ~11 ms per 1024 px image against ~1 ms (measured, one core).
    pixels = np.frombuffer(bytearray(rgb.tobytes()), dtype=np.uint8)
    return pixels.reshape(rgb.height, rgb.width, 3)


def _gray_to_8bit(values: np.ndarray) -> np.ndarray:
    """Integer modes hold 16-bit samples (0..65535): divide by 257 so 65535 maps to 255.

    Float ("F") images have no declared range; values are clipped to 0..255.
    """
    if values.dtype.kind == "f":
        return np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8)
    return np.clip(np.rint(values.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Alpha-blend RGBA over a white background, rounding to the nearest 8-bit value."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32)
    blended = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
