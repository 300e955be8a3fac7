"""A loopback server that measures politeness: requests in flight per Host header (and their
maximum), each request's arrival time, and scripted answers per path.

Many hostnames (``download.resolve_overrides`` -> 127.0.0.1) reach the one server, so one
server stands for several hosts. A request counts as in flight from its arrival until just
before its answer is written: that window lies inside the client's own (which ends no sooner
than the answer arrives), so the maxima measured here never exceed what the client allowed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pipeline.loopback import QuietHandler, Response, serve_loopback

# An answer, or a function making one when the request arrives (e.g. an HTTP-date from now).
Answer = Response | Callable[[], Response]
# A generous bound on how long a gathering server holds a request (the client waits 30 s).
HOLD_S = 20.0


@dataclass
class LoadServer:
    """Answers: ``routes[path][n]`` for the path's n-th hit (the last repeats), else
    ``default``. With ``gather`` > 0, every request is held until ``gather`` requests have
    been in flight at once (or HOLD_S passed): concurrency is then proven, not hoped for."""

    default: Response
    routes: dict[str, list[Answer]] = field(default_factory=dict)
    gather: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    gathered: threading.Event = field(default_factory=threading.Event)
    in_flight: Counter[str] = field(default_factory=Counter)
    max_in_flight: Counter[str] = field(default_factory=Counter)
    total: int = 0
    max_total: int = 0
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    arrivals: dict[str, list[float]] = field(default_factory=dict)

    @property
    def peer(self) -> str:
        """The ``download.allow_addresses`` entry of this server."""
        return f"127.0.0.1:{self.port}"

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def host_hits(self, host: str) -> int:
        return sum(n for (h, _), n in self.hits.items() if h == host)

    def arrive(self, host: str, path: str) -> Response:
        """Count the request in; its answer, once the gathering (if any) is done."""
        with self.lock:
            self.in_flight[host] += 1
            self.max_in_flight[host] = max(self.max_in_flight[host], self.in_flight[host])
            self.total += 1
            self.max_total = max(self.max_total, self.total)
            self.arrivals.setdefault(host, []).append(time.monotonic())
            self.hits[(host, path)] += 1
            nth = self.hits[(host, path)]
            if self.gather and self.total >= self.gather:
                self.gathered.set()
        if self.gather:
            self.gathered.wait(HOLD_S)
        answers = self.routes.get(path, [self.default])
        answer = answers[min(nth, len(answers)) - 1]
        return answer() if callable(answer) else answer

    def leave(self, host: str) -> None:
        with self.lock:
            self.in_flight[host] -= 1
            self.total -= 1


@contextmanager
def serve_load(default: Response, gather: int = 0) -> Iterator[LoadServer]:
    """A LoadServer on 127.0.0.1 (a free port) in a daemon thread."""
    state = LoadServer(default=default, gather=gather)

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            host = str(self.headers.get("Host", "")).rsplit(":", 1)[0].lower()
            try:
                response = state.arrive(host, self.path)
            finally:
                state.leave(host)  # before a byte of the answer leaves (module docstring)
            self.send(response)

    with serve_loopback(Handler, "load-server") as port:
        state.port = port
        yield state
