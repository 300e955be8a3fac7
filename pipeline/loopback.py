"""A quiet HTTP server on 127.0.0.1 in a daemon thread.

The demo's photo server and every loopback server of the tests start here, so each of them
writes only what it answers: a route table, a counter, a script.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (status, headers, body) of one answer.
Response = tuple[int, dict[str, str], bytes]


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that writes no access log and answers with one ``send`` call."""

    def send(self, response: Response) -> None:
        """Write ``response`` with its Content-Length; a client that gave up is not an error
        (timeouts are part of what the servers serve)."""
        code, headers, body = response
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # the demo and the tests read manifests and counters, not access logs


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog (socketserver's default is 5): above any client's thread count, so
    # simultaneous connects are never dropped and retried a second later.
    request_queue_size = 64


@contextlib.contextmanager
def serve_loopback(
    handler: type[BaseHTTPRequestHandler], name: str, tls: ssl.SSLContext | None = None
) -> Iterator[int]:
    """Serve ``handler`` on 127.0.0.1 (a free port; HTTPS with ``tls``); yields the port."""
    server = _Server(("127.0.0.1", 0), handler)
    if tls is not None:
        # The handshake runs in the request thread, so a client that rejects the certificate
        # cannot stall the accept loop.
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
