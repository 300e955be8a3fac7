"""The detection copy: an image shrunk to a bounded size for detectors, and the way back.

Detectors cost time in proportion to the pixels they scan (dlib HOG: ~39 ms at 512 px, ~131 ms
at 1024 px per image on one core), while the faces a corpus keeps are large enough to be found
at a fraction of a 1024 px download. So detection runs on a copy whose longer side is at most
``detect_max_side`` (640 by default, InsightFace's own ``det_size``), and every box and landmark
is mapped back to full-resolution pixels. Scores that read the face's pixels (sharpness,
exposure) still crop the full-resolution image.

Coordinates are continuous: pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``. Both
resampling steps (``shrink``) map the copy's pixel edges onto the original's, so a point ``x``
of the copy is ``x * scale_x`` of the original, exactly; each axis has its own factor because
the copy's sides are rounded to whole pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import cv2
import numpy as np

R = TypeVar("R", bound="Rescalable")


class Rescalable(Protocol):
    """A detection (a face, a hand) that can be moved from the copy's pixels to the original's."""

    def rescaled(self: R, scale_x: float, scale_y: float, /) -> R: ...


@dataclass(frozen=True)
class DetectionCopy:
    """Pixels a detector sees (``rgb``) and the factors from copy to original pixels."""

    rgb: np.ndarray
    scale_x: float = 1.0
    scale_y: float = 1.0

    def to_full(self, found: list[R]) -> list[R]:
        """Detections ``found`` on the copy, in the original image's pixel coordinates."""
        if self.scale_x == 1.0 and self.scale_y == 1.0:
            return found
        return [item.rescaled(self.scale_x, self.scale_y) for item in found]


def detection_copy(image: np.ndarray, max_side: int | None) -> DetectionCopy:
    """``image`` itself when its longer side is within ``max_side`` (or ``max_side`` is None),
    else an area-resampled copy whose longer side is ``max_side``."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if max_side is None or longest <= max_side:
        return DetectionCopy(image)
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return DetectionCopy(shrink(image, size), width / size[0], height / size[1])


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resampled to ``size`` (width, height) without aliasing.

    Area resampling (``cv2.INTER_AREA``) is the reference, but OpenCV runs it fast only for
    whole-number factors: 1024 -> 640 px (factor 1.6) took 9.7 ms on one core, 2 -> 1 took 0.3.
    So up to factor 2 the image is first resampled bilinearly to twice ``size`` (an enlargement
    or a mild reduction, which bilinear does without aliasing) and then area-averaged 2 x 2:
    1.6 ms in all, a mean 0.26 grey levels (max 9) from INTER_AREA's pixels on the astronaut;
    face recall through it 31 and 20 of 50 faces against INTER_AREA's 32 and 18 (MediaPipe,
    dlib; bench/detectors.py). Both steps map pixel edges onto pixel edges.
    """
    width, height = size
    if image.shape[1] > 2 * width or image.shape[0] > 2 * height:
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    double = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(double, size, interpolation=cv2.INTER_AREA)
