"""A loopback HTTP server of public-domain photos and broken responses, for the demo and tests.

The photos ship inside installed packages (scikit-image, matplotlib), so nothing is fetched.
Routes: ``/img/<name>.jpg`` photos and variants; ``/status/<code>``; ``/slow/<name>.jpg`` (replies
after ``slow_s``); ``/redirect/<name>.jpg`` (302 to the photo); ``/html`` (a page, not an image);
``/truncated.jpg`` (a JPEG cut in half); ``/noai/<name>.jpg`` (the photo with
``X-Robots-Tag: noai``). Only ever bound to 127.0.0.1.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageFilter

from pipeline.loopback import QuietHandler, serve_loopback


def _skimage(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from skimage import data

        array = getattr(data, name)()
        return Image.fromarray(np.asarray(array)).convert("RGB")

    return load


def _grace_hopper() -> Image.Image:
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return Image.open(str(path)).convert("RGB")


BASE_PHOTOS: dict[str, Callable[[], Image.Image]] = {
    "astronaut": _skimage("astronaut"),  # Eileen Collins, NASA, public domain
    "grace_hopper": _grace_hopper,  # US Navy photo, public domain
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "chelsea": _skimage("chelsea"),  # a cat
}


def _variant(base: str, op: Callable[[Image.Image], Image.Image]) -> Callable[[], Image.Image]:
    return lambda: op(BASE_PHOTOS[base]())


def _crop_center(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((w // 8, h // 8, w - w // 8, h - h // 8))


# Variants that the filter stages must tell apart from the originals.
VARIANTS: dict[str, Callable[[], Image.Image]] = {
    "astronaut_crop": _variant("astronaut", _crop_center),
    "astronaut_small": _variant(
        "astronaut", lambda im: im.resize((80, 80), Image.Resampling.LANCZOS)
    ),
    "astronaut_blur": _variant("astronaut", lambda im: im.filter(ImageFilter.GaussianBlur(6))),
    "astronaut_rot90": _variant("astronaut", lambda im: im.rotate(90, expand=True)),
    "astronaut_resized": _variant(
        "astronaut", lambda im: im.resize((480, 480), Image.Resampling.LANCZOS)
    ),
    "grace_hopper_crop": _variant("grace_hopper", _crop_center),
}
PHOTOS: dict[str, Callable[[], Image.Image]] = {**BASE_PHOTOS, **VARIANTS}


@functools.cache
def photo_bytes(name: str, quality: int = 92) -> bytes:
    """JPEG bytes of a photo or variant (cached: the server answers many requests)."""
    buffer = io.BytesIO()
    PHOTOS[name]().save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class _Handler(QuietHandler):
    # Far above any download timeout the demo or the tests use, so a loaded machine can never
    # turn the slow route's timeout into a success (or a success into a timeout).
    slow_s: float = 30.0

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        name = parts[-1].removesuffix(".jpg")
        if parts[0] == "img" and name in PHOTOS:
            self._send(200, photo_bytes(name), "image/jpeg")
        elif parts[0] == "noai" and name in PHOTOS:
            self._send(200, photo_bytes(name), "image/jpeg", {"X-Robots-Tag": "noai"})
        elif parts[0] == "slow" and name in PHOTOS:
            time.sleep(self.slow_s)
            self._send(200, photo_bytes(name), "image/jpeg")
        elif parts[0] == "redirect" and name in PHOTOS:
            self._send(302, b"", "text/plain", {"Location": f"/img/{name}.jpg"})
        elif parts[0] == "status" and len(parts) == 2 and parts[1].isdigit():
            self._send(int(parts[1]), b"error", "text/plain")
        elif parts[0] == "html":
            self._send(200, b"<html><body>not an image</body></html>", "text/html")
        elif parts[0] == "truncated.jpg":
            data = photo_bytes("astronaut")
            self._send(200, data[: len(data) // 3], "image/jpeg")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(
        self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send((code, {"Content-Type": ctype, **(headers or {})}, body))


@contextmanager
def serve_photos(slow_s: float = _Handler.slow_s) -> Iterator[str]:
    """Serve on 127.0.0.1 (a free port) in a daemon thread; yields the base URL."""
    handler = type("PhotoHandler", (_Handler,), {"slow_s": slow_s})
    with serve_loopback(handler, "demo-photos") as port:
        yield f"http://127.0.0.1:{port}"


def write_photo_urls(base: str, names: Sequence[str], n: int, path: Path) -> Path:
    """A candidates parquet (URL, TEXT) of ``n`` distinct URLs cycling through ``names``: each
    has its own query string, so no cache or URL check sees two rows alike."""
    urls = [f"{base}/img/{names[i % len(names)]}.jpg?i={i}" for i in range(n)]
    pq.write_table(pa.table({"URL": urls, "TEXT": [f"photo {i}" for i in range(n)]}), path)
    return path
