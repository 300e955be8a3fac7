"""decode_image on real encoded files: every mode, EXIF orientation, failures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from filters import Batch, DecodeConfig, DecodedImage, decode_image
from filters.decode import DEFAULT_DECODE, EMPTY, TOO_MANY_PIXELS, UNDECODABLE
from tests.filters.conftest import encode

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


def decoded(data: bytes, config: DecodeConfig = DEFAULT_DECODE) -> np.ndarray:
    result = decode_image(data, config)
    assert isinstance(result, DecodedImage), result
    assert result.rgb.dtype == np.uint8 and result.rgb.ndim == 3 and result.rgb.shape[2] == 3
    return result.rgb


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP", "WEBP"])
def test_lossless_rgb_round_trips_exactly(fmt: str) -> None:
    params = {"lossless": True} if fmt == "WEBP" else {}
    assert np.array_equal(decoded(encode(RGB, fmt, **params)), RGB)


def test_jpeg_rgb_is_close() -> None:
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (32, 1, 3))
    rgb = decoded(encode(smooth, "JPEG", quality=95))
    assert rgb.shape == (32, 64, 3)
    assert np.abs(rgb.astype(int) - smooth).max() <= 4  # JPEG q95 error on a smooth ramp


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = RGB[:, :, 0]
    rgb = decoded(encode(Image.fromarray(gray, mode="L")))
    assert np.array_equal(rgb, np.stack([gray] * 3, axis=2))


def test_bilevel_is_black_and_white() -> None:
    bits = Image.fromarray(RGB[:, :, 0] > 127).convert("1")
    rgb = decoded(encode(bits))
    assert set(np.unique(rgb)) == {0, 255}


def test_sixteen_bit_gray_png_scales_to_eight_bits() -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    rgb = decoded(encode(Image.fromarray(values)))
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_sixteen_bit_rgb_png_becomes_eight_bit() -> None:
    import cv2

    wide = RNG.integers(0, 65536, size=(8, 9, 3), dtype=np.uint16)
    ok, data = cv2.imencode(".png", wide[:, :, ::-1])  # OpenCV writes BGR
    assert ok
    rgb = decoded(data.tobytes())
    assert np.abs(rgb.astype(int) - (wide >> 8)).max() <= 1


def test_cmyk_tiff_converts_back_exactly() -> None:
    cmyk = Image.fromarray(RGB).convert("CMYK")
    assert np.array_equal(decoded(encode(cmyk, "TIFF")), RGB)


def test_cmyk_jpeg_decodes_to_rgb() -> None:
    flat = np.full((16, 16, 3), (200, 120, 40), dtype=np.uint8)
    rgb = decoded(encode(Image.fromarray(flat).convert("CMYK"), "JPEG", quality=95))
    assert np.abs(rgb.astype(int) - flat).max() <= 3


def test_palette_with_transparency_composites_on_white() -> None:
    palette = Image.new("P", (4, 2))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 1)  # index 1 (blue), declared transparent
    rgb = decoded(encode(palette, transparency=1))
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[1, 1].tolist() == [255, 0, 0]


def test_alpha_composites_on_white() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = [[255, 128], [0, 64]]
    rgb = decoded(encode(Image.fromarray(rgba, mode="RGBA")))
    # Green = 255 * (1 - alpha / 255), rounded.
    assert rgb[..., 1].tolist() == [[0, 127], [255, 191]]
    assert rgb[..., 0].tolist() == [[255, 255], [255, 255]]


def test_gray_with_alpha_composites_on_white() -> None:
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), mode="LA")
    assert decoded(encode(la))[0, :, 0].tolist() == [255, 0]


def test_exif_orientation_is_applied() -> None:
    image = np.zeros((20, 40, 3), dtype=np.uint8)  # wide, left half white
    image[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display" (EXIF 2.3, Orientation tag)
    rgb = decoded(encode(image, "JPEG", quality=95, exif=exif.tobytes()))
    assert rgb.shape == (40, 20, 3)  # displayed portrait
    assert rgb[:15].mean() > 240 and rgb[25:].mean() < 15  # left half ended up on top


@pytest.mark.parametrize(
    ("data", "status"),
    [(b"", EMPTY), (None, EMPTY), (b"definitely not an image", UNDECODABLE)],
)
def test_failures_give_a_status(data: bytes | None, status: str) -> None:
    assert decode_image(data) == status


def test_truncated_jpeg_is_undecodable() -> None:
    full = encode(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8), "JPEG")
    assert decode_image(full[: len(full) // 2]) == UNDECODABLE


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = encode(np.zeros((100, 100, 3), dtype=np.uint8))
    assert decode_image(data, DecodeConfig(max_pixels=9_999)) == TOO_MANY_PIXELS
    assert isinstance(decode_image(data, DecodeConfig(max_pixels=10_000)), DecodedImage)


def test_batch_from_bytes_keeps_each_status() -> None:
    batch = Batch.from_bytes([encode(RGB), None, b"junk"])
    assert [batch.status(i) for i in range(3)] == ["ok", EMPTY, UNDECODABLE]
    image = batch.image(0)
    assert image is not None and np.array_equal(image, RGB)
    assert batch.image(1) is None


# EXIF 2.3's Orientation values as array operations on the stored pixels (H x W x 3).
UPRIGHT = {
    1: lambda a: a,
    2: np.fliplr,  # mirrored left-right
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),  # mirrored, then turned 90 degrees
    6: lambda a: np.rot90(a, -1),  # "rotate 90 CW to display"
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_every_exif_orientation_is_turned_upright(orientation: int) -> None:
    image = RNG.integers(0, 256, size=(12, 20, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(image, "PNG", exif=exif.tobytes())  # lossless: pixels compare exactly
    np.testing.assert_array_equal(decoded(data), UPRIGHT[orientation](image))
