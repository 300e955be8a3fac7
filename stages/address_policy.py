"""The connect-time address policy of the download subprocess (DESIGN §4).

The candidates stage judges a URL's first host once, long before the download; a public URL
can still redirect to ``127.0.0.1`` or ``169.254.169.254`` (a cloud metadata service), and a
name's DNS answer can change in between. So in the download subprocess every connection,
first hop and each redirect alike, HTTP and HTTPS, resolves the host itself, checks each peer
address against the policy and connects to exactly the address it checked, before a byte is
sent: nothing re-resolves between the check and the connect. HTTPS still sends SNI and verifies
the certificate against the URL's hostname (``http.client`` wraps the checked socket with
``server_hostname=host``).

Redirects are checked too: more than ``max_redirects`` hops, a downgrade from https to http,
or a target that is not http(s) (file, ftp, data ...) are refused, each with its own message.
The messages start with the markers below, which ``stages.download_errors`` maps to reasons.
Proxies are not used: through a proxy the peer would be the proxy, and the destination could
not be checked.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol
from urllib.parse import urljoin, urlsplit

from stages.address_ranges import IPAddress, address_problem

# Markers that start each refusal's text; stages.download_errors matches on them.
UNSAFE_ADDRESS = "unsafe address"
REDIRECT_LIMIT = "redirect limit"
UNSAFE_REDIRECT = "unsafe redirect"
# RFC 2616 §10.3: "previous versions of this specification recommended a maximum of five
# redirections"; RFC 9110 §15.4 leaves the limit to the client. urllib's own is 10.
DEFAULT_MAX_REDIRECTS = 5
# Browsers give up after 20 (Chromium's kMaxRedirects, Firefox's network.http.redirection-limit).
MAX_REDIRECTS_CAP = 20
_WEB_SCHEMES = frozenset({"http", "https"})
# Request attribute carrying how many redirects led to it (urllib tracks distinct URLs only).
_HOPS = "laionface_redirects"

Connector = Callable[..., socket.socket]
# One hop's request as urllib sends it: connect (checked), send, read the status and headers.
Send = Callable[[], http.client.HTTPResponse]


class OpenGate(Protocol):
    """What stands between urllib and each connection: ``open`` decides when ``send`` runs.

    ``stages.host_politeness.HostGate`` is one (per-host caps, back-off, circuit breakers).
    It is called for the first hop and for each redirect, with that hop's request.
    """

    def open(self, req: urllib.request.Request, send: Send) -> http.client.HTTPResponse: ...


class UnsafeAddress(OSError):
    """A connection refused by the policy before it was opened.

    An ``OSError``, as a failed connect is: urllib wraps it in a ``URLError``, so
    img2dataset records ``<urlopen error unsafe address: ...>``.
    """


class RefusedRedirect(OSError):
    """A redirect refused before it was followed (``REDIRECT_LIMIT``/``UNSAFE_REDIRECT``)."""


def parse_peer(text: str) -> tuple[IPAddress, int]:
    """``"127.0.0.1:8765"`` or ``"[::1]:8765"`` as (address, port); ValueError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected IP:port, e.g. 127.0.0.1:8765 or [::1]:8765")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # "::1:80" is itself an IPv6 address: the port would be a guess
        raise ValueError(f"{text!r}: an IPv6 address is written in brackets, [::1]:8765")
    try:
        return ipaddress.ip_address(host), int(port)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None


def _host_key(host: str) -> str:
    return host.strip().rstrip(".").lower()


@dataclass(frozen=True)
class AddressPolicy:
    """Which peers a download may connect to, and how redirects may go.

    ``allow``: (address, port) peers permitted although not public (a loopback test server,
    a local mirror). ``resolve``: (hostname, address) pairs used instead of DNS (tests,
    air-gapped mirrors); a name listed here never reaches the resolver. The address check
    applies to overridden names too.
    """

    allow: frozenset[tuple[IPAddress, int]] = frozenset()
    resolve: tuple[tuple[str, IPAddress], ...] = ()
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AddressPolicy:
        """From the JSON form ``DownloadConfig.settings()["address_policy"]`` writes."""
        return cls(
            allow=frozenset(parse_peer(p) for p in settings.get("allow_addresses", ())),
            resolve=tuple(
                sorted(
                    (_host_key(h), ipaddress.ip_address(a))
                    for h, a in dict(settings.get("resolve_overrides", {})).items()
                )
            ),
            max_redirects=int(settings.get("max_redirects", DEFAULT_MAX_REDIRECTS)),
        )

    def problem(self, address: IPAddress, port: int) -> str | None:
        """Why the policy refuses ``address:port``, or None if a connection may be opened."""
        if (address, port) in self.allow:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped in {
            a for a, p in self.allow if p == port
        }:
            return None  # the IPv4-mapped spelling of an allowed IPv4 peer is that peer
        return address_problem(address)

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses ``host`` stands for, in resolver order, without duplicates."""
        key = _host_key(host)
        overrides = dict(self.resolve)
        if key in overrides:
            return [overrides[key]]
        try:
            return [ipaddress.ip_address(key.split("%", 1)[0])]
        except ValueError:
            pass  # a name
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        return list(dict.fromkeys(found))

    def permitted(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host`` that may be contacted; UnsafeAddress when there are none.

        A name with both public and refused addresses is contacted on its public ones only:
        what must never happen is a connection to a refused peer, and none is opened.
        """
        addresses = self.addresses(host, port)
        if not addresses:
            raise OSError(f"{host} resolved to no address")
        allowed = [a for a in addresses if self.problem(a, port) is None]
        if not allowed:
            first = addresses[0]
            peer = f"[{first}]" if first.version == 6 else str(first)
            why = self.problem(first, port)
            raise UnsafeAddress(f"{UNSAFE_ADDRESS}: {host} -> {peer}:{port} is {why}")
        return allowed

    def connector(self) -> Connector:
        """A ``socket.create_connection`` that connects only to checked addresses."""

        def connect(
            address: tuple[str, int],
            timeout: float | None,
            source_address: tuple[str, int] | None = None,
        ) -> socket.socket:
            # ``timeout`` may be socket's "default timeout" sentinel: passed on as it came.
            host, port = address
            allowed = self.permitted(host, port)
            for ip in allowed[:-1]:
                try:
                    return socket.create_connection((str(ip), port), timeout, source_address)
                except OSError:
                    continue  # the next checked address, as create_connection does
            # An IP literal: create_connection's own getaddrinfo does no DNS lookup.
            return socket.create_connection((str(allowed[-1]), port), timeout, source_address)

        return connect


class CheckedHTTPConnection(http.client.HTTPConnection):
    """``HTTPConnection`` whose socket goes only to addresses the policy permits."""

    def __init__(self, *args: Any, policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The hook HTTPConnection.connect() opens its socket with (CPython's http/client.py).
        self._create_connection = policy.connector()


class CheckedHTTPSConnection(http.client.HTTPSConnection):
    """``HTTPSConnection`` on a checked socket; TLS (SNI, certificate) uses the hostname."""

    def __init__(self, *args: Any, policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # HTTPSConnection.connect() calls HTTPConnection.connect(), then wraps the socket
        # with server_hostname=self.host: the certificate is checked against the URL's name.
        self._create_connection = policy.connector()


def _through(gate: OpenGate | None, req: urllib.request.Request, send: Send) -> Any:
    return send() if gate is None else gate.open(req, send)


class CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: AddressPolicy, gate: OpenGate | None = None) -> None:
        super().__init__()
        self._policy = policy
        self._gate = gate

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        def connection(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            return CheckedHTTPConnection(*args, policy=self._policy, **kwargs)

        return _through(self._gate, req, lambda: self.do_open(connection, req))


class CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, policy: AddressPolicy, gate: OpenGate | None = None) -> None:
        # A verifying context, whatever urllib's module default has been set to.
        self._tls = ssl.create_default_context()
        super().__init__(context=self._tls)
        self._policy = policy
        self._gate = gate

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        def connection(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            return CheckedHTTPSConnection(*args, policy=self._policy, **kwargs)

        return _through(self._gate, req, lambda: self.do_open(connection, req, context=self._tls))


class PolicyRedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, refusing too many hops and unsafe scheme changes first.

    Each followed hop opens a new connection, which the connection classes check again.
    """

    # urllib's own loop limits (4 per URL, 10 in all) sit above ours, so that ours decide.
    max_repeats = max_redirections = MAX_REDIRECTS_CAP + 1

    def __init__(self, max_redirects: int) -> None:
        if not 0 <= max_redirects <= MAX_REDIRECTS_CAP:
            raise ValueError(f"max_redirects must be in 0..{MAX_REDIRECTS_CAP}")
        self.max_redirects = max_redirects

    def http_error_302(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
    ) -> Any:
        # As urllib: the first Location header, else URI; no header means no redirect.
        target = headers.get("location") or headers.get("uri")
        if target is not None:
            why = self.refusal(req, urljoin(req.full_url, target))
            if why is not None:
                fp.close()
                raise RefusedRedirect(why)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def refusal(self, req: urllib.request.Request, target: str) -> str | None:
        """Why following ``req``'s redirect to the absolute URL ``target`` is refused."""
        hops = int(getattr(req, _HOPS, 0)) + 1
        if hops > self.max_redirects:
            return f"{REDIRECT_LIMIT}: more than {self.max_redirects} redirects, at {target}"
        scheme = urlsplit(target).scheme.lower()
        if scheme not in _WEB_SCHEMES:
            return f"{UNSAFE_REDIRECT}: to a {scheme or 'relative'}: URL, {target}"
        if req.type == "https" and scheme == "http":
            return f"{UNSAFE_REDIRECT}: https downgraded to http, {target}"
        return None

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            setattr(new, _HOPS, int(getattr(req, _HOPS, 0)) + 1)
        return new


def build_opener(
    policy: AddressPolicy, gate: OpenGate | None = None
) -> urllib.request.OpenerDirector:
    """An opener for http(s) only, every connection and redirect checked by ``policy``, and
    each hop (first and redirects) sent when ``gate`` lets it.

    Built by hand, not with ``urllib.request.build_opener``, which would add the file, ftp
    and data handlers and the environment's proxies.
    """
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.UnknownHandler(),  # any other scheme: "unknown url type"
        CheckedHTTPHandler(policy, gate),
        CheckedHTTPSHandler(policy, gate),
        urllib.request.HTTPDefaultErrorHandler(),
        PolicyRedirectHandler(policy.max_redirects),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def install(policy: AddressPolicy, gate: OpenGate | None = None) -> None:
    """Make ``urllib.request.urlopen`` (which img2dataset fetches with) obey ``policy`` and
    ``gate``."""
    urllib.request.install_opener(build_opener(policy, gate))
