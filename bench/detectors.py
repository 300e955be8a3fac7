"""Face detectors compared on the project's public-domain photos and insightface's ``t1.jpg``.

Detectors: dlib HOG at upsample 0 and 1, MediaPipe full range (the embedded default) and short
range.
Images: the demo's photos (``pipeline.demo_server.BASE_PHOTOS``: astronaut, grace_hopper, and
coffee, rocket, chelsea without a human face) and ``t1.jpg`` (six people), read from the
installed insightface package (never copied), each as is and rotated by 15, 30 and 90 degrees
(canvas expanded), scaled by 0.5 and 2, and for the portraits cropped to the face +-50%.

Ground truth is each face's centre, read off the photos once (``FACE_CENTRES``) and mapped
through every variant's transform. A detection counts as a face when its box holds a true
centre not yet matched, else it is a false positive; faces count as the pipeline counts them,
at ``face_count``'s default ``min_confidence``. Time is the median per image of each detector
alone, in CPU seconds of the process (all its threads; models loaded before timing), and as a
ratio to dlib HOG upsample 0 in the same run.

The second table is what the filter stage itself gives a detector: every image first resized
so its longer side is ``--download-px`` (1024, the presets' img2dataset ``image_size``; the
``face_count`` input) and then shrunk to the stage's detection copy (``filter.detect_max_side``,
640 by default, ``filters.detection_copy``), boxes mapped back to the download's pixels; its
time includes making the copy. A 1024 px group photo's faces (t1: ~73 px at 640) are then
below dlib's 80 px HOG window.

    .venv/bin/python bench/detectors.py            # prints the markdown tables of docs/filters.md
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from filters.detection_copy import detection_copy
from filters.detectors import DlibDetectorConfig, Face, MediaPipeDetectorConfig
from filters.face_count import FaceCountConfig
from pipeline.demo_server import BASE_PHOTOS
from stages.filter import FilterStageConfig

# Face centres (x, y) in the originals, read off the photos: the astronaut and grace_hopper
# at their dlib boxes' centres (bench/scale_photos.py FACE_BOXES); t1.jpg (1280 x 886) from
# left to right: the woman with cards, the woman behind, the man in grey, the man in red, the
# standing man, the woman on the right.
FACE_CENTRES: dict[str, tuple[tuple[float, float], ...]] = {
    "astronaut": ((223.0, 127.0),),
    "grace_hopper": ((269.0, 245.0),),
    "t1": ((95, 320), (335, 215), (515, 350), (785, 415), (985, 140), (1180, 320)),
    "coffee": (),
    "rocket": (),
    "chelsea": (),
}
PORTRAIT_CROPS = {"astronaut": (150, 50, 300, 200), "grace_hopper": (130, 100, 400, 380)}
DETECTORS = {
    "dlib HOG, upsample 0": DlibDetectorConfig(upsample=0),
    "dlib HOG, upsample 1": DlibDetectorConfig(upsample=1),
    "MediaPipe full range": MediaPipeDetectorConfig(model="full_range"),
    "MediaPipe short range": MediaPipeDetectorConfig(model="short_range"),
}
MIN_CONFIDENCE = FaceCountConfig().min_confidence


@dataclass(frozen=True)
class Case:
    """One test image with the true face centres in its own pixel coordinates."""

    name: str
    variant: str
    image: np.ndarray
    centres: np.ndarray  # n x 2


def t1_photo() -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("insightface is not installed: its data/images/t1.jpg is needed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg"
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def rotated(
    image: np.ndarray, centres: np.ndarray, degrees: float
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` rotated counter-clockwise on an expanded canvas, and its mapped centres."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    size = (math.ceil(width * cos + height * sin), math.ceil(width * sin + height * cos))
    matrix[:, 2] += (size[0] / 2 - width / 2, size[1] / 2 - height / 2)
    out = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR)
    return out, centres @ matrix[:, :2].T + matrix[:, 2] if len(centres) else centres


def scaled(image: np.ndarray, centres: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    size = (round(width * factor), round(height * factor))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interpolation), centres * factor


def cases() -> list[Case]:
    """Every photo and variant with its ground truth."""
    photos = {name: np.asarray(make().convert("RGB")) for name, make in BASE_PHOTOS.items()}
    photos["t1"] = t1_photo()
    out: list[Case] = []
    for name, image in photos.items():
        centres = np.array(FACE_CENTRES[name], dtype=np.float64).reshape(-1, 2)
        variants: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
            "original": lambda i=image, c=centres: (i, c),
            "rotated 15": lambda i=image, c=centres: rotated(i, c, 15),
            "rotated 30": lambda i=image, c=centres: rotated(i, c, 30),
            "rotated 90": lambda i=image, c=centres: rotated(i, c, 90),
            "scaled 0.5": lambda i=image, c=centres: scaled(i, c, 0.5),
            "scaled 2": lambda i=image, c=centres: scaled(i, c, 2.0),
        }
        if name in PORTRAIT_CROPS:
            x0, y0, x1, y1 = PORTRAIT_CROPS[name]
            variants["cropped"] = lambda i=image, c=centres, b=(x0, y0, x1, y1): (
                np.ascontiguousarray(i[b[1] : b[3], b[0] : b[2]]),
                c - (b[0], b[1]),
            )
        for variant, make in variants.items():
            pixels, truth = make()
            out.append(Case(name, variant, np.ascontiguousarray(pixels), truth))
    return out


def as_download(case: Case, longest: int) -> Case:
    """``case`` resized so its longer side is ``longest`` px, as a download of that size."""
    height, width = case.image.shape[:2]
    factor = longest / max(height, width)
    pixels, centres = scaled(case.image, case.centres, factor)
    return Case(case.name, case.variant, np.ascontiguousarray(pixels), centres)


def matches(faces: list[Face], centres: np.ndarray) -> tuple[int, int]:
    """(true positives, false positives): a box holding an unmatched true centre is a hit."""
    free = list(range(len(centres)))
    hits = 0
    for face in faces:
        x0, y0, x1, y1 = face.box
        inside = [i for i in free if x0 <= centres[i, 0] <= x1 and y0 <= centres[i, 1] <= y1]
        if inside:
            free.remove(inside[0])
            hits += 1
    return hits, len(faces) - hits


@dataclass
class Tally:
    faces: int = 0
    found: int = 0
    false_positives: int = 0
    fp_on_non_faces: int = 0
    seconds: list[float] | None = None
    misses: list[str] | None = None


def measure(config: object, all_cases: list[Case], copy_side: int | None = None) -> Tally:
    """Recall, false positives and CPU time of one detector; with ``copy_side``, each image is
    scanned as the stage's detection copy of at most that many px (copy time included)."""
    detector = config.build()  # type: ignore[attr-defined]
    detector.detect(all_cases[0].image)  # load the model before timing
    tally = Tally(seconds=[], misses=[])
    for case in all_cases:
        start = time.process_time()  # CPU time: the bench machine may be shared
        copy = detection_copy(case.image, copy_side)
        faces = copy.to_full(detector.detect(copy.rgb))
        tally.seconds.append(time.process_time() - start)  # type: ignore[union-attr]
        faces = [f for f in faces if f.confidence >= MIN_CONFIDENCE]
        hits, false = matches(faces, case.centres)
        tally.faces += len(case.centres)
        tally.found += hits
        tally.false_positives += false
        tally.fp_on_non_faces += false if not len(case.centres) else 0
        if hits < len(case.centres) or false:
            note = f"{case.name} {case.variant} {hits}/{len(case.centres)}"
            tally.misses.append(note + (f" +{false} false" if false else ""))  # type: ignore[union-attr]
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--download-px", type=int, default=1024)
    parser.add_argument("--detect-max-side", type=int, default=FilterStageConfig().detect_max_side)
    args = parser.parse_args()
    all_cases = cases()
    print(f"{len(all_cases)} images; faces count at confidence >= {MIN_CONFIDENCE}")
    print("\n### The images as they are\n")
    table({name: measure(config, all_cases) for name, config in DETECTORS.items()})
    print(
        f"\n### As the filter stage sees them: {args.download_px} px downloads, "
        f"{args.detect_max_side} px detection copy\n"
    )
    downloads = [as_download(case, args.download_px) for case in all_cases]
    table(
        {
            name: measure(config, downloads, args.detect_max_side)
            for name, config in DETECTORS.items()
        }
    )
    return 0


def table(tallies: dict[str, Tally]) -> None:
    """The markdown table of ``tallies`` (the first detector is the time base), then misses."""
    base = statistics.median(next(iter(tallies.values())).seconds or [1.0])
    print(
        "| detector | recall | false positives (on non-face photos) "
        "| CPU ms per image (median) | time vs dlib up 0 |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, tally in tallies.items():
        median = statistics.median(tally.seconds or [0.0])
        print(
            f"| {name} | {tally.found}/{tally.faces} ({tally.found / tally.faces:.0%}) | "
            f"{tally.false_positives} ({tally.fp_on_non_faces}) | {median * 1000:.1f} | "
            f"{median / base:.2f}x |"
        )
    print()
    for name, tally in tallies.items():
        print(f"- {name}, misses and false positives: {'; '.join(tally.misses or []) or 'none'}")


if __name__ == "__main__":
    raise SystemExit(main())
