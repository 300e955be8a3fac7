"""The detection copy: an image shrunk to a bounded size for detectors, and the way back.

Detectors cost time in proportion to the pixels they scan (dlib HOG: ~39 ms at 512 px, ~131 ms
at 1024 px per image on one core), while the faces a corpus keeps are large enough to be found
at a fraction of a 1024 px download. So detection runs on a copy whose longer side is at most
``detect_max_side`` (640 by default, InsightFace's own ``det_size``), and every box and landmark
is mapped back to full-resolution pixels. Scores that read the face's pixels (sharpness,
exposure) still crop the full-resolution image.

Coordinates are continuous: pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``. Area
resampling (``cv2.INTER_AREA``) maps the copy's pixel edges onto the original's, so a point
``x`` of the copy is ``x * scale_x`` of the original, exactly; each axis has its own factor
because the copy's sides are rounded to whole pixels.
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
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return DetectionCopy(small, width / size[0], height / size[1])
