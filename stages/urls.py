"""URL normalization, sample identity and URL safety for the candidates stage."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

# Characters left unescaped when re-quoting a path or query: RFC 3986 reserved + unreserved
# + '%' (already-escaped sequences stay as they are).
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"
_SAFE_QUERY = _SAFE_PATH + "?"
_DEFAULT_PORTS = {"http": 80, "https": 443}
ALLOWED_SCHEMES = frozenset(_DEFAULT_PORTS)
# A URL already in canonical form, as most of LAION is: lower-case http(s), a plain host (no
# port, no userinfo), a path and a query of only characters quote() leaves as they are, no
# fragment. For these, normalize_url's general path returns the same string, so it is skipped
# (it dominates ingest time); tests/stages/test_ingest.py checks that both paths agree.
_CHARS = r"A-Za-z0-9/:@!$&'()*+,;=\-._~%"
_CANONICAL = re.compile(rf"(https?)://([A-Za-z0-9.\-]+)(/[{_CHARS}]*)?(?:\?([{_CHARS}?]+))?")


class UrlProblem(ValueError):
    """Why a URL cannot be used; ``why`` is the reason suffix (``invalid_url`` ...)."""

    def __init__(self, why: str, detail: str) -> None:
        super().__init__(detail)
        self.why = why


@dataclass(frozen=True)
class NormalizedUrl:
    url: str
    host: str


def normalize_url(raw: object) -> NormalizedUrl:
    """Canonical form of a URL, so the same resource gets the same identity.

    Lower-cases scheme and host, IDNA-encodes the host, drops the default port and the
    fragment (never sent to the server), percent-encodes spaces and non-ASCII characters.
    The query is kept in order: reordering it could name another resource.
    """
    if raw is None or not isinstance(raw, str) or not raw.strip():
        raise UrlProblem("missing_url", "no URL")
    text = raw.strip()
    canonical = _CANONICAL.fullmatch(text)
    if canonical is not None:
        scheme, raw_host, path, query = canonical.groups()
        host = _normalize_host(raw_host)
        url = f"{scheme}://{host}{path or '/'}" + (f"?{query}" if query else "")
        return NormalizedUrl(url, host)
    return _normalize_general(text)


def _normalize_general(text: str) -> NormalizedUrl:
    """``normalize_url`` for any stripped, non-empty text."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise UrlProblem("invalid_url", str(err)) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise UrlProblem("invalid_url", "not an absolute URL")
    if scheme not in ALLOWED_SCHEMES:
        raise UrlProblem("unsupported_scheme", f"scheme {scheme!r} is not http(s)")
    if not parts.netloc:
        raise UrlProblem("invalid_url", "no host")
    host = _normalize_host(parts.hostname or "")
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal keeps its brackets in the netloc
        netloc = f"[{host}]" if port in (None, _DEFAULT_PORTS[scheme]) else f"[{host}]:{port}"
    path = quote(parts.path or "/", safe=_SAFE_PATH)
    query = quote(parts.query, safe=_SAFE_QUERY)
    return NormalizedUrl(urlunsplit((scheme, netloc, path, query, "")), host)


@functools.lru_cache(maxsize=65_536)
def _normalize_host(host: str) -> str:
    # Cached: LAION repeats hosts heavily and IDNA encoding is a large part of ingest time.
    host = host.strip().rstrip(".").lower()
    if not host:
        raise UrlProblem("invalid_url", "no host")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as err:
        raise UrlProblem("invalid_url", f"host {host!r}: {err}") from None
    if any(c in ascii_host for c in " /\\@") or ".." in ascii_host:
        raise UrlProblem("invalid_url", f"host {host!r} has forbidden characters")
    return ascii_host


def url_hash(url: str) -> str:
    """sha1 of the normalized URL, hex; sample_id is its first 16 characters (DESIGN §3)."""
    return hashlib.sha1(url.encode("utf-8")).hexdigest()


def sample_id_for(url: str) -> str:
    return url_hash(url)[:16]


def derived_sample_id(*parts: object) -> str:
    """A stable id for a row that has no usable URL or repeats one (never a URL's own id)."""
    text = "\x00".join(str(p) for p in parts)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


class HostSafety:
    """Decides whether a host may be contacted, resolving names once per host.

    A host that is an IP literal is judged directly; a name is resolved (when ``resolve`` is
    on) and refused if any address it resolves to is not public. Names that do not resolve are
    not refused here: the download reports them.
    """

    _LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

    def __init__(self, resolve: bool, timeout_s: float, threads: int = 16) -> None:
        self._resolve = resolve
        self._timeout_s = timeout_s
        self._threads = threads
        self._cache: dict[str, bool] = {}

    def check_many(self, hosts: set[str]) -> dict[str, bool]:
        """Safety of each host (True: may be contacted), resolving unknown names in parallel."""
        todo = sorted(h for h in hosts if h not in self._cache)
        if todo:
            with ThreadPoolExecutor(self._threads) as pool:
                for host, safe in zip(todo, pool.map(self._judge, todo), strict=True):
                    self._cache[host] = safe
        return {h: self._cache[h] for h in hosts}

    def _judge(self, host: str) -> bool:
        try:
            return is_public_address(host)
        except ValueError:
            pass  # a name, not an address
        addresses = self._resolve_addresses(host) if self._resolve else []
        if addresses:
            return all(is_public_address(a) for a in addresses)
        # Unresolved: refuse the names that always mean this machine, leave the rest to the
        # download (which reports hosts that do not resolve).
        return not (host in self._LOCAL_NAMES or host.endswith(".localhost"))

    def _resolve_addresses(self, host: str) -> list[str]:
        # getaddrinfo has no timeout of its own; the default socket timeout bounds it on most
        # resolvers, and a failure leaves the decision to the download.
        previous = socket.getdefaulttimeout()
        try:
            socket.setdefaulttimeout(self._timeout_s)
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return []
        finally:
            socket.setdefaulttimeout(previous)
        return sorted({str(info[4][0]) for info in infos})


@functools.cache
def host_safety(resolve: bool, timeout_s: float) -> HostSafety:
    """The process-wide ``HostSafety`` for these settings: a worker resolves each host once
    per run, not once per shard."""
    return HostSafety(resolve, timeout_s)
