"""Loopback servers for the address-policy tests: fixed routes, and a count of every request.

A refused peer must receive nothing; counting the requests each path received is how the tests
prove that. The TLS variant uses a self-signed certificate made here with the ``openssl`` CLI
(the ``cryptography`` package is not installed).
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# (status, headers, body) of one route.
Response = tuple[int, dict[str, str], bytes]


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


def _handler(server: CountingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, headers, body = server.respond(self.path)
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # the tests read the counts, not access logs

    return Handler


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[CountingServer]:
    """A CountingServer on 127.0.0.1 (a free port) in a daemon thread; HTTPS with ``tls``."""
    state = CountingServer(scheme="https" if tls else "http")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    if tls is not None:
        # The handshake runs in the request thread, so a client that rejects the
        # certificate cannot stall the accept loop.
        httpd.socket = tls.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, name="policy-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


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
