"""Loopback servers for the address-policy tests: fixed routes, and a count of every request.

A refused peer must receive nothing; counting the requests each path received is how the tests
prove that. The TLS variant uses a self-signed certificate made here with the ``openssl`` CLI
(the ``cryptography`` package is not installed).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.loopback import QuietHandler, Response, serve_loopback


def redirect(code: int, location: str) -> Response:
    return code, {"Location": location}, b""


def image(body: bytes) -> Response:
    return 200, {"Content-Type": "image/jpeg"}, body


@dataclass
class CountingServer:
    """Routes (path -> response, settable after start) and the requests each path received."""

    port: int = 0
    scheme: str = "http"
    routes: dict[str, Response] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def peer(self) -> str:
        """The ``download.allow_addresses`` entry of this server."""
        return f"127.0.0.1:{self.port}"

    def respond(self, path: str) -> Response:
        with self.lock:
            self.hits[path] += 1
        return self.routes.get(path, (404, {}, b"not found"))


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[CountingServer]:
    """A CountingServer on 127.0.0.1 (a free port) in a daemon thread; HTTPS with ``tls``."""
    state = CountingServer(scheme="https" if tls else "http")

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send(state.respond(self.path))

    with serve_loopback(Handler, "policy-server", tls) as port:
        state.port = port
        yield state


def self_signed(directory: Path, hostname: str) -> tuple[Path, Path] | None:
    """(certificate, key) valid for ``hostname`` only; None without the ``openssl`` CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={hostname}",
            "-addext", f"subjectAltName=DNS:{hostname}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
