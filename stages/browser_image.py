"""img2dataset's ``Resizer``, fed the image as a browser shows it rather than as OpenCV reads it.

img2dataset decodes with ``cv2.imdecode(..., IMREAD_UNCHANGED)``: EXIF orientation is ignored
(a photo tagged "rotate 90°" is published sideways), 16-bit samples reach the 8-bit JPEG encoder
unscaled (an almost white image), and colour-key transparency, CMYK, animations and other
modes are left to OpenCV's reading of them. ``BrowserImageResizer`` keeps
img2dataset's call contract, resize modes, encode format and quality, and decides per image:

- An 8-bit three-component JPEG (or MPO, a JPEG with extra pictures appended) with no EXIF
  rotation is what OpenCV already decodes correctly: it goes through img2dataset unchanged, so
  its published bytes are exactly img2dataset's.
- Anything else is decoded with Pillow into upright 8-bit RGB and handed to img2dataset as a
  lossless BMP (a format it always re-encodes), so resizing and encoding stay img2dataset's own:
  - EXIF orientation (tag 0x0112, all 8 values of the TIFF 6.0 / EXIF 2.32 Orientation tag) is
    applied; other values are ignored, as browsers do.
  - 16-bit grayscale (``I;16*``) is scaled by 1/257 with rounding (65535 -> 255); 16-bit
    RGB(A) and LA samples are reduced to their high byte by Pillow's own unpackers (what
    libpng's ``png_set_strip_16`` does), within one level of the exact scaling.
  - Palette (with or without transparency), bilevel, grayscale, CMYK (Adobe-inverted CMYK as
    Pillow reads it, then Pillow's naive CMYK -> RGB, which is what browsers show for CMYK
    without an ICC profile) and YCbCr become RGB.
  - Transparency (alpha channels, palette and colour-key ``tRNS``) is composited on
    ``BACKGROUND_RGB``: white, the page background every major browser shows by default (CSS
    Backgrounds 3, section 2.11.2, leaves what shows through a transparent canvas to the user
    agent), and the background img2dataset itself mattes RGBA onto.
  - Animated GIF, WebP and APNG give the first frame shown. An APNG whose default image is not
    part of its animation (Pillow's ``info["default_image"]``) shows animation frame 1 instead.
- What cannot be shown correctly ends with its own error text, each its own reason in
  ``stages.download_errors``: a mode without a known 8-bit rendering (``I``, ``F``, ``LAB``, ...)
  -> ``download:unsupported_mode``; bytes Pillow cannot decode -> ``download:undecodable``;
  more pixels than Pillow's decompression-bomb limit -> ``download:too_large``.

ICC colour profiles are not applied (browsers convert tagged images to the display's space).
``original_width``/``original_height`` are the upright (displayed) size.
"""

from __future__ import annotations

import io
import logging
from typing import BinaryIO

import cv2
import numpy as np
from img2dataset.resizer import Resizer
from PIL import Image, UnidentifiedImageError

from stages.download_errors import (
    DECODE_ERROR,
    TOO_LARGE_ERROR,
    UNSUPPORTED_MODE_ERROR,
)

logger = logging.getLogger(__name__)

# img2dataset's Resizer result: img_str, width, height, original_width, original_height, err.
ResizeResult = tuple[bytes | None, int | None, int | None, int | None, int | None, str | None]

BACKGROUND_RGB = (255, 255, 255)  # see the module docstring
_ORIENTATION_TAG = 0x0112  # EXIF 2.32 / TIFF 6.0, tag 274 "Orientation"
# Orientation value -> the transpose that shows the image upright (EXIF 2.32, section 4.6.4 A,
# "Orientation"; the same table as Pillow's ImageOps.exif_transpose). 1 is upright already.
_UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_PLAIN_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_GRAY16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
# Modes Pillow converts to RGBA as they are shown (palette and tRNS transparency included);
# not "I", "F" (no declared range) nor "LAB" (Pillow copies L, a, b into R, G, B).
_RGBA_CONVERTIBLE = frozenset(
    {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
)
_GRAY16_PER_LEVEL = 257  # 65535 / 255: the full 16-bit range onto the full 8-bit range


class BrowserImageError(ValueError):
    """The image cannot be shown as a browser would; ``str()`` is the error text to report."""


class BrowserImageResizer(Resizer):
    """img2dataset's ``Resizer`` (same constructor and call), on browser-decoded pixels."""

    def __call__(
        self, img_stream: BinaryIO, blurring_bbox_list: list[list[float]] | None = None
    ) -> ResizeResult:
        """Same contract as ``img2dataset.resizer.Resizer.__call__``; never raises."""
        if self.disable_all_reencoding:
            # The user asked for the served bytes as they are: img2dataset's own behaviour.
            return super().__call__(img_stream, blurring_bbox_list)
        img_stream.seek(0)
        try:
            upright = browser_rgb(img_stream.read())
        except BrowserImageError as err:
            return None, None, None, None, None, str(err)
        if upright is None:
            return super().__call__(img_stream, blurring_bbox_list)
        bmp = cv2.imencode(".bmp", np.ascontiguousarray(upright[:, :, ::-1]))[1].tobytes()
        return super().__call__(io.BytesIO(bmp), blurring_bbox_list)


def browser_rgb(data: bytes) -> np.ndarray | None:
    """Upright H x W x 3 uint8 RGB as shown by a browser, or None for a plain JPEG.

    None means OpenCV's own decode already shows the image correctly (see the module
    docstring). Raises ``BrowserImageError`` with the text to report otherwise.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            transpose = _UPRIGHT.get(_orientation(img))
            if transpose is None and img.format in _PLAIN_JPEG_FORMATS and img.mode == "RGB":
                return None
            rgb = Image.fromarray(_composite(_rgba(_first_shown_frame(img))))
    except BrowserImageError:
        raise
    except Image.DecompressionBombError as err:
        raise BrowserImageError(f"{TOO_LARGE_ERROR} ({err})") from err
    except UnidentifiedImageError as err:
        # Its text names the stream object's address: a run-dependent text in dl_error.
        raise BrowserImageError(f"{DECODE_ERROR}: no image format recognized") from err
    except Exception as err:
        # Pillow's plugins raise many types on corrupt input (OSError, SyntaxError, EOFError,
        # struct.error, ...); img2dataset's Resizer likewise turns any exception into its text.
        logger.debug("undecodable image: %r", err)
        raise BrowserImageError(f"{DECODE_ERROR}: {err}") from err
    return np.asarray(rgb if transpose is None else rgb.transpose(transpose))


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation value, 1 when absent or unreadable (a browser then ignores it)."""
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a malformed EXIF block: browsers show the image unrotated
        return 1
    return value if isinstance(value, int) else 1


def _first_shown_frame(img: Image.Image) -> Image.Image:
    """The frame a browser shows first; loaded."""
    if img.info.get("default_image") and getattr(img, "n_frames", 1) > 1:
        # APNG spec: an IDAT without a preceding fcTL is not part of the animation; a browser
        # plays the animation, whose first frame Pillow numbers 1.
        img.seek(1)
    img.load()
    return img


def _rgba(img: Image.Image) -> np.ndarray:
    """H x W x 4 uint8 RGBA with every kind of transparency in the alpha channel."""
    if img.mode in _GRAY16_MODES:
        return _gray16_rgba(img)
    if img.mode not in _RGBA_CONVERTIBLE:
        raise BrowserImageError(f"{UNSUPPORTED_MODE_ERROR} {img.mode}")
    return np.asarray(img.convert("RGBA"))


def _gray16_rgba(img: Image.Image) -> np.ndarray:
    """16-bit grayscale scaled onto 0..255 with rounding; a tRNS colour key becomes alpha 0."""
    values = np.asarray(img).astype(np.uint32)
    # round(v / 257) as floor((2v + 257) / 514); no ties, 257 being odd.
    gray = ((2 * values + _GRAY16_PER_LEVEL) // (2 * _GRAY16_PER_LEVEL)).astype(np.uint8)
    alpha = np.full(gray.shape, 255, np.uint8)
    key = img.info.get("transparency")
    if isinstance(key, int):
        alpha[values == key] = 0
    return np.dstack([gray, gray, gray, alpha])


def _composite(rgba: np.ndarray) -> np.ndarray:
    """RGB over ``BACKGROUND_RGB``: (a * c + (255 - a) * b) / 255, rounded (no ties: 255 odd).

    The value of img2dataset's own alpha matting, in integers: uint16 holds 255 * 255 + 127.
    """
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    if bool((alpha == 255).all()):
        return np.ascontiguousarray(rgba[:, :, :3])
    background = np.asarray(BACKGROUND_RGB, np.uint16)
    blended = alpha * rgba[:, :, :3] + (255 - alpha) * background + 127
    return (blended // 255).astype(np.uint8)
