"""Images as a browser shows them: each image class is built here, resized, and its published
pixels compared with ones computed independently (mostly Pillow's exif_transpose and
alpha_composite); then the same files through the real download stage, from loopback."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from img2dataset.resizer import Resizer
from PIL import Image, ImageOps

from manifests import schema as S
from manifests.io import write_table_atomic
from manifests.layout import RunLayout
from stages.base import RunContext
from stages.browser_image import BrowserImageResizer, ResizeResult
from stages.download import DownloadConfig
from stages.download_errors import DECODE_ERROR, TOO_LARGE_ERROR, classify
from tests.stages.policy_servers import serve

WIDTH, HEIGHT = 64, 40  # not square: a missed 90° rotation changes the shape
WHITE = (255, 255, 255)
# JPEG re-encoding at img2dataset's quality 95 moves smooth pictures by about 1 level.
MAX_MEAN_ABS_DIFF = 3.0


def _picture() -> np.ndarray:
    """Smooth, asymmetric RGB: red grows to the right, green downwards, one dark corner."""
    x = np.linspace(0, 255, WIDTH)[None, :]
    y = np.linspace(0, 255, HEIGHT)[:, None]
    rgb = np.stack(np.broadcast_arrays(x, y, np.full_like(x * y, 96.0)), axis=-1)
    rgb[:10, :10] = 20
    return np.rint(rgb).astype(np.uint8)


def _alpha() -> np.ndarray:
    """Alpha from opaque (left) to transparent (right)."""
    return np.broadcast_to(np.linspace(255, 0, WIDTH)[None, :], (HEIGHT, WIDTH)).astype(np.uint8)


def _save(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG written by OpenCV (channel order BGR, as cv2 expects)."""
    ok, encoded = cv2.imencode(".png", values)
    assert ok and values.dtype == np.uint16
    return encoded.tobytes()


def _gray16() -> np.ndarray:
    return _picture()[..., 0].astype(np.uint16) * 257  # the red channel, exactly scaled up


def _rgb16() -> np.ndarray:
    """Not a multiple of 257: the low byte matters (+100, kept under 65535)."""
    return np.minimum(_picture().astype(np.uint32) * 257 + 100, 65535).astype(np.uint16)


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation tag
    return _save(Image.fromarray(_picture()), "JPEG", quality=95, exif=exif)


def _shown_by_pillow(data: bytes) -> np.ndarray:
    """Pillow's own rendering: upright, composited on white, RGB."""
    with Image.open(io.BytesIO(data)) as img:
        rgba = ImageOps.exif_transpose(img).convert("RGBA")
    return np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba))[..., :3]


def _palette() -> Image.Image:
    """A smooth palette image: index grows to the right, entry i is (i, 255 - i, 96)."""
    index = np.broadcast_to(np.rint(np.linspace(0, 252, WIDTH)), (HEIGHT, WIDTH))
    img = Image.fromarray(index.astype(np.uint8)).convert("P")
    img.putpalette([c for i in range(256) for c in (i, 255 - i, 96)])
    return img


# An index the gradient never uses (it steps by 4): only the painted rectangle is transparent.
HOLE_INDEX = 2


def _palette_with_hole() -> bytes:
    """The palette image with one rectangle of a transparent index (a tRNS chunk)."""
    img = _palette()
    img.paste(HOLE_INDEX, (30, 5, 50, 20))
    return _save(img, "PNG", transparency=HOLE_INDEX)


def _frames(fmt: str, colors: list[tuple[int, int, int]], **params: Any) -> bytes:
    frames = [Image.new("RGB", (WIDTH, HEIGHT), c) for c in colors]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **params)


def _solid(color: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.asarray(color, np.uint8), (HEIGHT, WIDTH, 3))


def _gray_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
_LA = Image.merge("LA", (Image.fromarray(_picture()[..., 1]), Image.fromarray(_alpha())))
_RGBA = Image.fromarray(np.dstack([_picture(), _alpha()]), "RGBA")

# name -> (the served bytes, the pixels a browser shows)
CASES: dict[str, tuple[Callable[[], bytes], Callable[[bytes], np.ndarray]]] = {
    **{f"exif_{o}": (lambda o=o: _exif_jpeg(o), _shown_by_pillow) for o in range(1, 9)},
    "gray16_png": (
        lambda: _png16(_gray16()),
        lambda _: _gray_rgb(np.rint(_gray16() / 257.0).astype(np.uint8)),
    ),
    # The dark corner (20 * 257) is declared transparent by a 16-bit tRNS colour key.
    "gray16_color_key_png": (
        lambda: _save(Image.fromarray(_gray16()), "PNG", transparency=20 * 257),
        lambda _: _gray_rgb(np.where(_picture()[..., 0] == 20, 255, _picture()[..., 0])),
    ),
    "rgb16_png": (
        lambda: _png16(_rgb16()[..., ::-1].copy()),
        lambda _: np.rint(_rgb16() / 257.0).astype(np.uint8),
    ),
    "palette_png": (lambda: _save(_palette(), "PNG"), _shown_by_pillow),
    "palette_transparent_png": (_palette_with_hole, _shown_by_pillow),
    "la_png": (lambda: _save(_LA, "PNG"), _shown_by_pillow),
    "rgba_png": (lambda: _save(_RGBA, "PNG"), _shown_by_pillow),
    "rgb_color_key_png": (
        lambda: _save(Image.fromarray(_picture()), "PNG", transparency=(20, 20, 20)),
        lambda _: np.where((_picture() == 20).all(-1, keepdims=True), 255, _picture()),
    ),
    # Pillow writes CMYK JPEGs Adobe-inverted; RGB -> CMYK -> RGB is exact in Pillow.
    "cmyk_jpeg": (
        lambda: _save(Image.fromarray(_picture()).convert("CMYK"), "JPEG", quality=95),
        lambda _: _picture(),
    ),
    "gray_jpeg": (
        lambda: _save(Image.fromarray(_picture()[..., 0]), "JPEG", quality=95),
        lambda _: _gray_rgb(_picture()[..., 0]),
    ),
    "animated_gif": (lambda: _frames("GIF", [RED, BLUE]), lambda _: _solid(RED)),
    "animated_webp": (lambda: _frames("WEBP", [RED, BLUE], lossless=True), lambda _: _solid(RED)),
    "apng": (lambda: _frames("PNG", [RED, BLUE]), lambda _: _solid(RED)),
    # The default image (green) is not part of the animation: a browser plays red, then blue.
    "apng_default_image": (
        lambda: _frames("PNG", [GREEN, RED, BLUE], default_image=True),
        lambda _: _solid(RED),
    ),
}


def _resizer(**overrides: Any) -> BrowserImageResizer:
    return BrowserImageResizer(**DownloadConfig(**overrides).settings()["resizer"])


def _decoded(result: ResizeResult) -> np.ndarray:
    data, width, height, _, _, error = result
    assert error is None and data is not None
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and (img.width, img.height) == (width, height)
        return np.asarray(img.convert("RGB"))


def _assert_shows(published: np.ndarray, expected: np.ndarray) -> None:
    assert published.shape == expected.shape
    diff = np.abs(published.astype(np.float64) - expected.astype(np.float64)).mean()
    assert diff < MAX_MEAN_ABS_DIFF, diff


@pytest.mark.parametrize("name", list(CASES))
def test_published_pixels_are_what_a_browser_shows(name: str) -> None:
    served, expected = CASES[name]
    data = served()
    result = _resizer()(io.BytesIO(data))
    _assert_shows(_decoded(result), expected(data))


def test_img2dataset_alone_publishes_them_wrong() -> None:
    """The cases above catch the bugs: img2dataset's own Resizer fails them."""
    stock = Resizer(**DownloadConfig().settings()["resizer"])
    rotated = _exif_jpeg(6)
    assert _decoded(stock(io.BytesIO(rotated))).shape != _shown_by_pillow(rotated).shape
    gray16 = _png16(_gray16())
    expected = CASES["gray16_png"][1](gray16)
    wrong = np.abs(_decoded(stock(io.BytesIO(gray16))).astype(float) - expected).mean()
    assert wrong > 50


def test_rotated_images_are_resized_as_shown() -> None:
    """Shown 40 x 64 (orientation 6); keep_ratio brings the shorter side to 20."""
    result = _resizer(image_size=20)(io.BytesIO(_exif_jpeg(6)))
    assert result[1:] == (20, 32, HEIGHT, WIDTH, None)


def _mpo() -> bytes:
    first, second = Image.fromarray(_picture()), Image.fromarray(255 - _picture())
    return _save(first, "MPO", save_all=True, append_images=[second], quality=90)


PLAIN_JPEGS: dict[str, Callable[[], bytes]] = {
    "baseline": lambda: _save(Image.fromarray(_picture()), "JPEG", quality=90),
    "progressive": lambda: _save(Image.fromarray(_picture()), "JPEG", progressive=True),
    "exif_upright": lambda: _exif_jpeg(1),
    "mpo": _mpo,
}
SETTINGS: list[dict[str, Any]] = [
    {},
    {"image_size": 24, "resize_mode": "keep_ratio"},
    {"image_size": 24, "resize_mode": "center_crop"},
    {"image_size": 24, "resize_mode": "border"},
    {"image_size": 24, "resize_mode": "keep_ratio_largest"},
    {"image_size": 128, "resize_mode": "keep_ratio", "resize_only_if_bigger": False},
    {"resize_mode": "no", "encode_format": "png", "encode_quality": 9},
    {"image_size": 24, "encode_format": "webp", "encode_quality": 80},
]


@pytest.mark.parametrize("name", list(PLAIN_JPEGS))
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
def test_plain_jpegs_publish_img2dataset_bytes(name: str, settings: dict[str, Any]) -> None:
    data = PLAIN_JPEGS[name]()
    resizer_settings = DownloadConfig(**settings).settings()["resizer"]
    ours = BrowserImageResizer(**resizer_settings)(io.BytesIO(data))
    theirs = Resizer(**resizer_settings)(io.BytesIO(data))
    assert ours[5] is None
    assert ours == theirs


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header for width x height pixels (PNG spec: signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    signature = b"\x89PNG\r\n\x1a\n"
    return (
        signature + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


# name -> (served bytes, exact error text, exact reason)
REFUSED: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "html": (
        lambda: b"<html>not an image</html>",
        f"{DECODE_ERROR}: no image format recognized",
        "download:undecodable",
    ),
    "truncated_png": (
        lambda: (png := _save(Image.fromarray(_picture()), "PNG"))[: len(png) // 2],
        f"{DECODE_ERROR}: image file is truncated",
        "download:undecodable",
    ),
    "int32_tiff": (
        lambda: _save(Image.new("I", (WIDTH, HEIGHT), 70000), "TIFF"),
        "unsupported image mode I",
        "download:unsupported_mode",
    ),
    "float_tiff": (
        lambda: _save(Image.new("F", (WIDTH, HEIGHT), 0.5), "TIFF"),
        "unsupported image mode F",
        "download:unsupported_mode",
    ),
    "lab_tiff": (
        lambda: _save(Image.new("LAB", (WIDTH, HEIGHT), (50, 0, 0)), "TIFF"),
        "unsupported image mode LAB",
        "download:unsupported_mode",
    ),
    "decompression_bomb": (
        lambda: _png_claiming(20_000, 20_000),
        # Pillow refuses more than twice Image.MAX_IMAGE_PIXELS before decoding a pixel.
        f"{TOO_LARGE_ERROR} (Image size (400000000 pixels) exceeds limit of "
        f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack.)",
        "download:too_large",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_images_that_cannot_be_shown_end_with_their_reason(name: str) -> None:
    served, error, reason = REFUSED[name]
    assert _resizer()(io.BytesIO(served())) == (None, None, None, None, None, error)
    assert classify("failed_to_resize", error) == reason


# --- end to end: the download stage on a loopback server -------------------------------------

E2E_OK = ["exif_6", "exif_3", "exif_8", "gray16_png", "palette_transparent_png", "cmyk_jpeg"]
E2E_OK += ["gray_jpeg", "rgba_png", "animated_gif"]
E2E_REFUSED = ["html", "int32_tiff", "decompression_bomb"]


@contextmanager
def _serve(files: dict[str, bytes]) -> Iterator[int]:
    """Serve ``files`` (path -> body) on 127.0.0.1; yields the port."""
    with serve() as server:
        ctype = {"Content-Type": "application/octet-stream"}
        server.routes.update({path: (200, ctype, body) for path, body in files.items()})
        yield server.port


def _candidates(run_dir: Path, port: int, names: list[str]) -> None:
    """Shard 0 of the candidates stage: one kept row per case, sample id = its index."""
    columns = [S.SAMPLE_ID, S.URL, S.ALT_TEXT, *S.VERDICT_COLUMNS]
    rows = {
        S.SAMPLE_ID: [f"{i:016x}" for i in range(len(names))],
        S.URL: [f"http://127.0.0.1:{port}/{name}" for name in names],
        S.ALT_TEXT: names,
        S.KEEP: [True] * len(names),
        S.REJECT_REASON: [None] * len(names),
    }
    table = pa.table(rows, schema=S.schema_for(columns))
    write_table_atomic(table, RunLayout(run_dir).manifest("candidates", 0))


def test_download_stage_publishes_what_a_browser_shows(tmp_path: Path) -> None:
    served = {name: CASES[name][0]() for name in E2E_OK}
    served |= {name: REFUSED[name][0]() for name in E2E_REFUSED}
    names = [*E2E_OK, *E2E_REFUSED]
    run_dir = tmp_path / "run"
    with _serve({f"/{n}": body for n, body in served.items()}) as port:
        _candidates(run_dir, port, names)
        config = DownloadConfig(timeout_s=30, thread_count=4, allow_addresses=[f"127.0.0.1:{port}"])
        report = config.build().run_shard(0, RunContext(run_dir))
    assert (report.n_in, report.n_out) == (len(names), len(E2E_OK))
    assert report.dropped == {
        "download:undecodable": 1,
        "download:unsupported_mode": 1,
        "download:too_large": 1,
    }
    layout = RunLayout(run_dir)
    rows = _download_rows(layout, names)
    for name in E2E_OK:
        assert (rows[name][S.DL_STATUS], rows[name][S.REJECT_REASON]) == ("success", None), name
    sizes = [S.DL_WIDTH_PX, S.DL_HEIGHT_PX, S.DL_ORIGINAL_WIDTH_PX, S.DL_ORIGINAL_HEIGHT_PX]
    assert [rows["exif_6"][c] for c in sizes] == [HEIGHT, WIDTH, HEIGHT, WIDTH]  # as shown
    for name in E2E_REFUSED:
        row, (_, error, reason) = rows[name], REFUSED[name]
        got = (row[S.DL_STATUS], row[S.DL_ERROR], row[S.REJECT_REASON])
        assert got == ("failed_to_resize", error, reason), name
    published = _published(layout)
    assert set(published) == {rows[n][S.SAMPLE_ID] for n in E2E_OK}
    for name in E2E_OK:
        _assert_shows(published[str(rows[name][S.SAMPLE_ID])], CASES[name][1](served[name]))


def _download_rows(layout: RunLayout, names: list[str]) -> dict[str, dict[str, Any]]:
    """Case name -> its download manifest row (sample ids as ``_candidates`` made them)."""
    name_of = {f"{i:016x}": name for i, name in enumerate(names)}
    download = pq.read_table(layout.manifest("download", 0)).to_pylist()
    assert sorted(str(r[S.SAMPLE_ID]) for r in download) == sorted(name_of)
    return {name_of[str(r[S.SAMPLE_ID])]: r for r in download}


def _published(layout: RunLayout) -> dict[str, np.ndarray]:
    """sample_id -> decoded jpg pixels of the download tar."""
    pixels: dict[str, np.ndarray] = {}
    tar = layout.shard_file("download", 0, ".tar")
    for sample in wds.WebDataset(str(tar), shardshuffle=False):
        sample_id = json.loads(sample["json"])[S.SAMPLE_ID]
        with Image.open(io.BytesIO(sample["jpg"])) as img:
            pixels[sample_id] = np.asarray(img.convert("RGB"))
    return pixels
