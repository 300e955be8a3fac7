"""Generated photos for ``bench/scale.py``: many distinct variants of a few public-domain photos.

Every photo is a pure function of ``(seed, index)``: the index picks a kind (face ~68%,
non-face ~30%, broken ~2%) and a base photo, and seeds the variant: a random crop (holding
the face), padding on a random background, a random light field (kept off the face), a small
roll, a flip, colour changes (saturation, brightness, contrast, channel order and gains) and
a random output size. Without the background and light field, pHash (what dedup compares)
called a third of 2,000 face variants near copies; with them under 1% of 20,000. Faces come
from skimage's astronaut (Eileen Collins) and matplotlib's grace_hopper.jpg; non-faces from
skimage's coffee, rocket and chelsea (a cat). Broken URLs are 404s (no file) or undecodable
bytes served as a JPEG.

Photos are rendered into a directory before anything is timed, then served from it by a
threaded loopback server in its own process, so neither rendering nor serving is charged to
the pipeline's driver (CPU or RSS) and a stage rerun sees exactly the bytes the first run saw.

    python bench/scale_photos.py serve DIR   # prints the port, serves DIR until killed
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from pipeline.demo_server import BASE_PHOTOS

# Main-face boxes (x0, y0, x1, y1) in the originals, measured once with the pipeline's dlib
# detector (filters.detectors.dlib_detector, confidence 0.82 on both). Crops keep these inside.
FACE_BOXES: dict[str, tuple[int, int, int, int]] = {
    "astronaut": (179, 83, 267, 171),
    "grace_hopper": (161, 137, 377, 353),
}
NON_FACES = ("coffee", "rocket", "chelsea")
ALT_TEXTS = {
    "astronaut": "portrait of a smiling astronaut in an orange spacesuit",
    "grace_hopper": "portrait of a woman in a navy officer uniform",
    "coffee": "a cup of coffee on a saucer",
    "rocket": "a rocket on its launch pad",
    "chelsea": "a tabby cat looking up",
}
# Kind shares (the issue asks for ~30% non-face and "a few" broken URLs).
BROKEN_SHARE = 0.02
NON_FACE_SHARE = 0.30
# The filter chain's limits the face variants must stay within (their config defaults):
# image.min_side_px 256, face_size.min_px 80 (dlib's window), face_pose.max_abs_roll_deg 30.
SHORT_SIDE_PX = (320, 512)  # drawn output shorter side, above image.min_side_px
MAX_SIDE_PX = 512  # longer side at most download.image_size: the download keeps the bytes
# Crop side / face side; on a canvas up to 1.35x the crop and with aspects up to 4:3 the face
# keeps >= 320 / (2.4 * 1.35 * 1.155) = 85 px.
CROP_OVER_FACE = (1.5, 2.4)
# Light field gains: strong enough that pHash (dedup.max_hamming 6) tells variants apart
# (measured, seed 0: 0.1% of 2,049 and 0.8% of 20,450 face variants fall in a near-copy
# group), kept off the face; with the field over the face dlib missed most astronaut crops.
LIGHT_GAIN = (0.45, 1.55)
CANVAS_GROWTH = (1.0, 1.35)  # canvas side / crop side, per axis
MAX_ROLL_DEG = 8.0  # well inside dlib HOG's frontal range and the pose filter's 30


@dataclass(frozen=True)
class PhotoSpec:
    """What index ``index`` of seed ``seed`` is: its kind, base photo and served name."""

    seed: int
    index: int
    kind: str  # "face", "non_face", "missing" (404) or "corrupt" (undecodable bytes)
    base: str

    @property
    def name(self) -> str:
        return f"{self.index:08d}.jpg"

    @property
    def alt_text(self) -> str:
        return f"{ALT_TEXTS[self.base]}, picture {self.index}"


def _rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent streams per index: 0 picks the kind, 1 draws the variant."""
    return np.random.default_rng([seed, index, stream])


def photo_spec(seed: int, index: int) -> PhotoSpec:
    """The deterministic kind and base photo of one index."""
    rng = _rng(seed, index)
    draw = rng.random()
    if draw < BROKEN_SHARE:
        kind = "missing" if draw < BROKEN_SHARE / 2 else "corrupt"
        return PhotoSpec(seed, index, kind, str(rng.choice(list(FACE_BOXES))))
    if draw < BROKEN_SHARE + NON_FACE_SHARE:
        return PhotoSpec(seed, index, "non_face", str(rng.choice(NON_FACES)))
    return PhotoSpec(seed, index, "face", str(rng.choice(list(FACE_BOXES))))


@functools.cache
def _base(name: str) -> Image.Image:
    return BASE_PHOTOS[name]()


def _face_crop(rng: np.random.Generator, name: str) -> tuple[int, int, int, int]:
    """A random box holding the whole face, CROP_OVER_FACE face sides wide, aspect 3:4 to 4:3."""
    width, height = _base(name).size
    x0, y0, x1, y1 = FACE_BOXES[name]
    face = x1 - x0
    side = face * rng.uniform(*CROP_OVER_FACE)
    aspect = rng.uniform(0.75, 1.33)
    cw = int(min(width, max(face * 1.3, side * aspect**0.5)))
    ch = int(min(height, max(face * 1.3, side / aspect**0.5)))
    # The crop's left edge may go anywhere that keeps the face (plus a 10% margin) inside.
    margin = int(0.1 * face)
    left = rng.integers(max(0, x1 + margin - cw), min(x0 - margin, width - cw) + 1)
    top = rng.integers(max(0, y1 + margin - ch), min(y0 - margin, height - ch) + 1)
    return int(left), int(top), int(left) + cw, int(top) + ch


def _any_crop(rng: np.random.Generator, name: str) -> tuple[int, int, int, int]:
    """A random box covering 55-100% of each side of a non-face photo."""
    width, height = _base(name).size
    cw, ch = int(width * rng.uniform(0.55, 1.0)), int(height * rng.uniform(0.55, 1.0))
    left, top = rng.integers(0, width - cw + 1), rng.integers(0, height - ch + 1)
    return int(left), int(top), int(left) + cw, int(top) + ch


def _recolour(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Saturation, brightness, contrast, channel order and per-channel gains, at random."""
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.5, 1.5))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.25))
    gains = rng.uniform(0.88, 1.12, size=3)
    # A channel order, so grey (what pHash sees) weighs each colour region differently.
    order = rng.permutation(3)
    pixels = np.asarray(image, dtype=np.float32)[..., order] * gains
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _relight(
    rng: np.random.Generator, image: Image.Image, face: tuple[int, int, int, int] | None
) -> Image.Image:
    """Multiply by a smooth random light field (an 8 x 8 grid of gains, bicubic-upsampled),
    faded to no change over the face box ``face`` (in ``image``'s coordinates).

    pHash keeps only the lowest 8 x 8 DCT frequencies of a 32 x 32 grey image, which crops of
    one photo share; uneven lighting moves exactly those, so variants of one photo stop
    colliding. A field that fine across the face breaks dlib's detection of the small
    astronaut face, hence the fade: the background carries the change, the face its detail.
    """
    grid = rng.uniform(*LIGHT_GAIN, size=(8, 8)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid, mode="F").resize(image.size, Image.Resampling.BICUBIC))
    if face is not None:
        field = 1.0 + (field - 1.0) * _away_from(face, image.size)
    pixels = np.asarray(image, dtype=np.float32) * field[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _away_from(face: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """A mask: 0 over the face box grown by a fifth, rising smoothly to 1 away from it."""
    x0, y0, x1, y1 = face
    grow = 0.2 * (x1 - x0)
    mask = Image.new("L", size, 255)  # Pillow blurs 8-bit modes only
    mask.paste(0, (int(x0 - grow), int(y0 - grow), int(x1 + grow), int(y1 + grow)))
    return np.asarray(mask.filter(ImageFilter.GaussianBlur(grow)), dtype=np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A random smooth colour field: a 4 x 4 grid of random colours, bicubic-upsampled."""
    grid = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)


def _on_canvas(
    rng: np.random.Generator, image: Image.Image, face: tuple[int, int, int, int] | None
) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """Paste ``image`` at a random place on a larger random background (a padded photo, as
    on many web pages); returns the canvas and the face box in its coordinates."""
    width, height = image.size
    size = (int(width * rng.uniform(*CANVAS_GROWTH)), int(height * rng.uniform(*CANVAS_GROWTH)))
    left = int(rng.integers(0, size[0] - width + 1))
    top = int(rng.integers(0, size[1] - height + 1))
    canvas = _smooth_noise(rng, size)
    canvas.paste(image, (left, top))
    if face is None:
        return canvas, None
    return canvas, (face[0] + left, face[1] + top, face[2] + left, face[3] + top)


def _face_in(crop: tuple[int, int, int, int], name: str) -> tuple[int, int, int, int]:
    """The base photo's face box in the coordinates of ``crop``."""
    x0, y0, x1, y1 = FACE_BOXES[name]
    return x0 - crop[0], y0 - crop[1], x1 - crop[0], y1 - crop[1]


def render_variant(spec: PhotoSpec) -> Image.Image:
    """The variant image of a face or non-face spec: crop, pad, relight, roll, flip, recolour,
    rescale."""
    rng = _rng(spec.seed, spec.index, 1)
    if spec.kind == "face":
        box = _face_crop(rng, spec.base)
        face: tuple[int, int, int, int] | None = _face_in(box, spec.base)
    else:
        box, face = _any_crop(rng, spec.base), None
    image, face = _on_canvas(rng, _base(spec.base).crop(box), face)
    image = _relight(rng, image, face)
    fill = tuple(int(c) for c in rng.integers(0, 256, size=3))
    image = image.rotate(rng.uniform(-MAX_ROLL_DEG, MAX_ROLL_DEG), Image.Resampling.BILINEAR,
                         fillcolor=fill)  # fmt: skip
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = _recolour(rng, image)
    # The shorter side sets the scale (the image filter's limit is on it), capped so the
    # longer side stays within download.image_size.
    short = rng.uniform(*SHORT_SIDE_PX)
    scale = min(short / min(image.size), MAX_SIDE_PX / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def render_bytes(spec: PhotoSpec) -> bytes | None:
    """What the server sends for ``spec``: JPEG bytes, junk bytes (corrupt) or None (404)."""
    if spec.kind == "missing":
        return None
    rng = _rng(spec.seed, spec.index, 2)
    if spec.kind == "corrupt":
        # A JPEG start-of-image marker, then noise: served as image/jpeg, never decodable.
        return b"\xff\xd8\xff\xe0" + rng.bytes(int(rng.integers(200, 4000)))
    buffer = io.BytesIO()
    quality = int(rng.integers(75, 96))
    render_variant(spec).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _render_range(directory: str, seed: int, start: int, stop: int) -> list[tuple[int, int]]:
    """Render indices [start, stop) into ``directory``; returns (width, height) per index."""
    sizes = []
    for index in range(start, stop):
        spec = photo_spec(seed, index)
        path = Path(directory) / spec.name
        if spec.kind in ("face", "non_face"):
            if not path.is_file():  # a previous --work run already rendered it
                path.write_bytes(render_bytes(spec) or b"")
            with Image.open(path) as image:
                sizes.append(image.size)
            continue
        data = render_bytes(spec)
        if data is not None:
            path.write_bytes(data)
        sizes.append((MAX_SIDE_PX, MAX_SIDE_PX))  # what broken rows claim in their metadata
    return sizes


def render_all(directory: Path, seed: int, n: int, processes: int) -> list[tuple[int, int]]:
    """Render indices 0..n-1 into ``directory`` in ``processes`` processes; their sizes."""
    directory.mkdir(parents=True, exist_ok=True)
    step = max(1, -(-n // (processes * 8)))
    starts = range(0, n, step)
    with ProcessPoolExecutor(processes) as pool:
        parts = pool.map(
            _render_range,
            [str(directory)] * len(starts),
            [seed] * len(starts),
            starts,
            [min(n, s + step) for s in starts],
        )
        return [size for part in parts for size in part]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return  # one line per request would be most of the bench's output


def _serve_forever(directory: Path) -> None:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[tuple[str, int]]:
    """Serve ``directory`` on 127.0.0.1 from a child process; yields (base URL, its pid)."""
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "serve", str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}", child.pid
    finally:
        child.terminate()
        child.wait(timeout=10)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        raise SystemExit(__doc__)
    _serve_forever(Path(sys.argv[2]))
