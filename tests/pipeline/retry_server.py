"""A loopback server whose URLs fail the first time and answer after, counting every request.

The retry tests prove that a retry asks exactly the failed URLs again by the requests each path
(query included) received. Routes, by the first path segment, each ending in a photo name of
``PHOTOS`` or ``MIRRORED`` (``/<route>/<name>.jpg``):

- ``ok``: the photo, always;
- ``flaky``: 502 the first time, the photo after (not 503: the download's politeness retries
  503 and 429 itself, honouring Retry-After);
- ``stall``: the first request gets no answer until the server shuts down (far beyond any
  download timeout), every later one the photo at once;
- ``down``: 500, always; ``gone``: 404, always.

Each route is meant to be served under its own host name (``hosts``, all resolving to
127.0.0.1 through ``download.resolve_overrides``), so the download's per-host limits and
circuit breakers see one failing URL per host.
"""

from __future__ import annotations

import functools
import io
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from PIL import ImageOps

from pipeline.demo_server import PHOTOS, photo_bytes
from pipeline.loopback import QuietHandler, serve_loopback

ROUTES = ("ok", "flaky", "stall", "down", "gone")
# Mirror images: faces distinct from the originals for the perceptual hash (26 to 32 of 64 bits
# apart), so the dedup stage keeps both.
MIRRORED = ("astronaut_mirror", "grace_hopper_mirror")
# How long a stalled first request waits at most (the server's shutdown releases it sooner).
STALL_S = 600.0


@functools.cache
def served_bytes(name: str) -> bytes:
    """JPEG bytes of a photo of ``PHOTOS`` or of ``MIRRORED``."""
    if name not in MIRRORED:
        return photo_bytes(name)
    buffer = io.BytesIO()
    ImageOps.mirror(PHOTOS[name.removesuffix("_mirror")]()).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@dataclass
class RetryServer:
    """The server's state: its port, the requests per path, the event that ends stalls."""

    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def host(self, route: str) -> str:
        return f"{route}.retry.test"

    def url(self, route: str, name: str, query: str = "") -> str:
        return f"http://{self.host(route)}:{self.port}/{route}/{name}.jpg{query}"

    @property
    def overrides(self) -> list[str]:
        """The download settings that let the download reach this server's hosts only."""
        hosts = ", ".join(f"{self.host(r)}: 127.0.0.1" for r in ROUTES)
        return [
            f"download.allow_addresses=['127.0.0.1:{self.port}']",
            f"download.resolve_overrides={{{hosts}}}",
        ]

    def count(self, path: str) -> int:
        """This request's number for ``path``, from 1."""
        with self.lock:
            self.hits[path] += 1
            return self.hits[path]


def _answer(state: RetryServer, path: str) -> tuple[int, bytes]:
    route, _, rest = path.split("?", 1)[0].strip("/").partition("/")
    name = rest.removesuffix(".jpg")
    attempt = state.count(path)
    if route not in ROUTES or (name not in PHOTOS and name not in MIRRORED):
        return 404, b"not found"
    if route == "stall" and attempt == 1:
        state.release.wait(STALL_S)
    if route == "down":
        return 500, b"error"
    if route == "gone":
        return 404, b"gone"
    if route == "flaky" and attempt == 1:
        return 502, b"bad gateway"
    return 200, served_bytes(name)


@contextmanager
def serve_retry() -> Iterator[RetryServer]:
    """A RetryServer on 127.0.0.1 (a free port) in a daemon thread."""
    state = RetryServer()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            code, body = _answer(state, self.path)
            ctype = "image/jpeg" if code == 200 else "text/plain"
            self.send((code, {"Content-Type": ctype}, body))

    with serve_loopback(Handler, "retry-server") as port:
        state.port = port
        try:
            yield state
        finally:
            state.release.set()  # ends a stall still waiting, before the server stops
