"""One MediaPipe solution graph per process, shared by the threads of a worker.

MediaPipe's ``solutions`` objects wrap a calculator graph that processes one image at a time
(``SolutionBase.process`` feeds a packet and waits for its outputs), so concurrent calls from
two threads of one Dask worker are serialized by a lock here.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class LockedGraph:
    """A MediaPipe solution (``FaceDetection``, ``FaceMesh``, ``Pose`` ...) behind a lock."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.lock = threading.Lock()

    def process(self, image: np.ndarray) -> Any:
        """The solution's result for one RGB image (H x W x 3 uint8)."""
        with self.lock:
            return self.graph.process(np.ascontiguousarray(image))
