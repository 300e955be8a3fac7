"""Per-host politeness of the download subprocess: caps, intervals, back-off, circuit breakers.

img2dataset's ``thread_count`` threads each fetch whatever URL comes next: a shard whose URLs
share a host sends it up to ``thread_count`` requests at once, ignores ``Retry-After`` and
keeps fetching from a host that opted out of every image it served (img2dataset #62, #331,
#375, #298). ``HostGate`` stands before every hop the address policy's opener sends
(``stages.address_policy.build_opener``), first hop and each redirect alike, and counts each
against the host it contacts: a redirect counts against its target, the machine that serves
the bytes. A host is the hostname, lower-cased, without the port. Per host, shared by every
thread of the subprocess (so per shard: N shards in parallel may reach a host N times over):

- at most ``max_per_host`` requests in flight, and ``min_interval_s`` between two starts. A
  request is in flight from its admission (before it connects) until its response is closed
  (2xx: after img2dataset has read the body) or, for any other status, until its headers came
  (urllib reads no error body; a redirect's body is read before the next hop is opened).
- 429 and 503 back the whole host off: nothing starts there before the time ``Retry-After``
  names (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), or, without one, ``backoff_s``
  doubled per retry (exponential back-off, img2dataset #331). The URL is retried up to
  ``backoff_retries`` times. No request waits more than ``max_retry_after_s``: a longer wait
  ends the sample as ``download:rate_limited`` (text ``rate limited: ...``), the host not
  contacted; once the retries are spent, the last answer stands (``download:http_429``).
- a circuit breaker: after ``breaker_optouts`` X-Robots-Tag opt-outs (img2dataset's own check
  on the same headers) or ``breaker_failures`` consecutive failures (connection errors,
  timeouts, 5xx), the host's remaining requests end as ``download:host_skipped`` (text
  ``host skipped: ...``) without a connection. So that the host sees exactly that many, no
  more requests are in flight than strikes are left (the cap shrinks to them).

A waiting request holds its img2dataset thread: a shard dominated by one slow host runs at
that host's pace (raise ``thread_count`` or ``max_per_host`` for such shards).
"""

from __future__ import annotations

import datetime
import http.client
import logging
import math
import re
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.error import URLError
from urllib.parse import urlsplit

from stages.address_policy import Send, UnsafeAddress

log = logging.getLogger(__name__)

# Markers that start each text; stages.download_errors matches on them.
RATE_LIMITED = "rate limited"
HOST_SKIPPED = "host skipped"
# RFC 6585 §4 (429 Too Many Requests) and RFC 9110 §15.6.4 (503): both may carry Retry-After.
BACKOFF_STATUSES = frozenset({429, 503})
# RFC 9110 §10.2.3: delay-seconds = 1*DIGIT (ASCII digits only, RFC 5234 Appendix B.1).
_DELAY_SECONDS = re.compile(r"[0-9]+")
_CONFIG = "download.politeness"

# Whether a response's headers opt its image out (img2dataset's is_disallowed, bound).
OptOutCheck = Callable[[Message], bool]


@dataclass(frozen=True)
class Politeness:
    """The limits of ``HostGate``; ``DownloadConfig.politeness`` documents each and its default.

    A breaker threshold of 0 turns that breaker off.
    """

    max_per_host: int
    min_interval_s: float
    max_retry_after_s: float
    backoff_retries: int
    backoff_s: float
    breaker_optouts: int
    breaker_failures: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Politeness:
        """From ``DownloadConfig.settings()["politeness"]`` (the same field names)."""
        return cls(**settings)


class RateLimited(OSError):
    """A request not sent: the host asked for a longer wait than ``max_retry_after_s``."""


class HostSkipped(OSError):
    """A request not sent: its host's circuit breaker is open."""


def http_date(text: str) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7, any of its three forms) as a Unix time; None if not one."""
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP-dates are always UTC (RFC 9110 §5.6.7)
        return when.replace(tzinfo=datetime.timezone.utc).timestamp()
    return when.timestamp()


def retry_after_s(headers: Message, now: float) -> float | None:
    """Seconds ``Retry-After`` asks for (never negative); None without a valid one.

    An HTTP-date is measured from the response's own ``Date`` when it has one, so a skewed
    local clock cannot shorten or stretch the wait; else from ``now`` (Unix time).
    """
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    when = http_date(value)
    if when is None:
        return None
    sent = http_date(headers.get("Date", ""))
    return max(0.0, when - (now if sent is None else sent))


@dataclass
class _Host:
    """One host's shared state; every field is read and written under ``ready``."""

    name: str
    ready: threading.Condition = field(default_factory=threading.Condition)
    in_flight: int = 0
    last_start: float = -math.inf  # time.monotonic()
    resume_at: float = -math.inf  # time.monotonic(): no start before (back-off)
    optouts: int = 0
    failures: int = 0  # consecutive
    skipped: str | None = None  # the breaker's text once it is open


@dataclass
class _Slot:
    """One admitted request's place under its host's cap, given back exactly once."""

    host: _Host
    held: bool = True

    def release(self) -> None:
        with self.host.ready:
            if self.held:
                self.held = False
                self.host.in_flight -= 1
                self.host.ready.notify_all()


def _refused(err: BaseException) -> bool:
    # The address policy refused the peer: nothing reached the host, so it is not its failure.
    return isinstance(err, URLError) and isinstance(err.reason, UnsafeAddress)


class HostGate:
    """The ``stages.address_policy.OpenGate`` of the download subprocess (module docstring)."""

    def __init__(self, limits: Politeness, opted_out: OptOutCheck) -> None:
        self.limits = limits
        self._opted_out = opted_out
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()

    def _host(self, name: str) -> _Host:
        with self._lock:
            if name not in self._hosts:
                self._hosts[name] = _Host(name)
            return self._hosts[name]

    def open(self, req: urllib.request.Request, send: Send) -> http.client.HTTPResponse:
        """``send`` once admitted; again after a 429/503, up to ``backoff_retries`` times."""
        host = self._host((urlsplit(req.full_url).hostname or "").lower())
        attempt = 0
        while True:
            slot = self._admit(host)
            response = self._send(slot, send)
            if response.status in BACKOFF_STATUSES:
                wait, why = self._wait_after(response, attempt)
                self.back_off(host.name, wait)
                if attempt < self.limits.backoff_retries:
                    slot.release()
                    response.close()
                    if wait > self.limits.max_retry_after_s:
                        raise RateLimited(self._too_long(host, response.status, wait, why))
                    attempt += 1
                    continue
            return self._settle(slot, response)

    def back_off(self, name: str, wait_s: float) -> None:
        """No request to host ``name`` starts in the next ``wait_s`` seconds."""
        host = self._host(name)
        with host.ready:
            host.resume_at = max(host.resume_at, time.monotonic() + wait_s)
            host.ready.notify_all()

    def _admit(self, host: _Host) -> _Slot:
        """Wait until ``host`` may receive one more request; HostSkipped or RateLimited."""
        limits = self.limits
        with host.ready:
            while True:
                if host.skipped is not None:
                    raise HostSkipped(host.skipped)
                now = time.monotonic()
                if host.resume_at - now > limits.max_retry_after_s:
                    raise RateLimited(
                        f"{RATE_LIMITED}: {host.name} asked not to be contacted for another "
                        f"{host.resume_at - now:.0f} s, above "
                        f"{_CONFIG}.max_retry_after_s = {limits.max_retry_after_s:g}"
                    )
                if host.in_flight >= self._room(host):
                    host.ready.wait()  # a release or a breaker notifies
                    continue
                start = max(host.resume_at, host.last_start + limits.min_interval_s)
                if now < start:
                    host.ready.wait(start - now)
                    continue
                host.in_flight += 1
                host.last_start = now
                return _Slot(host)

    def _room(self, host: _Host) -> float:
        """The cap, lowered to the strikes each breaker has left (module docstring)."""
        room = float(self.limits.max_per_host)
        if self.limits.breaker_optouts:
            room = min(room, self.limits.breaker_optouts - host.optouts)
        if self.limits.breaker_failures:
            room = min(room, self.limits.breaker_failures - host.failures)
        return room

    def _send(self, slot: _Slot, send: Send) -> http.client.HTTPResponse:
        try:
            return send()
        except (OSError, http.client.HTTPException) as err:
            if not _refused(err):
                self._failed(slot.host, str(err))
            slot.release()
            raise

    def _settle(self, slot: _Slot, response: http.client.HTTPResponse) -> Any:
        """Count the answer; hold the slot until a 2xx body is closed, else give it back."""
        status = response.status
        if 200 <= status < 300:
            self._answered(slot.host, optout=self._opted_out(response.headers))
            self._release_on_close(slot, response)
            return response
        if status >= 500:
            self._failed(slot.host, f"HTTP Error {status}: {response.reason}")
        elif status != 429:  # a 429 says nothing of the host's health
            self._answered(slot.host, optout=False)
        slot.release()
        return response

    def _release_on_close(self, slot: _Slot, response: http.client.HTTPResponse) -> None:
        """Release when img2dataset closes the response (``with urlopen(...)``); a failed body
        read (a timeout mid-body) is a failure of the host."""
        ref, cls = weakref.ref(response), type(response)

        def close() -> None:
            try:
                alive = ref()
                if alive is not None:
                    cls.close(alive)
            finally:
                slot.release()

        def read(amt: int | None = None) -> bytes:
            try:
                return cls.read(ref(), amt)  # type: ignore[arg-type]
            except (OSError, http.client.HTTPException) as err:
                self._failed(slot.host, str(err))
                raise

        # Instance attributes shadow the methods; closures hold the response only weakly, so
        # a response dropped unclosed still gives its slot back when collected.
        setattr(response, "close", close)  # noqa: B010
        setattr(response, "read", read)  # noqa: B010
        weakref.finalize(response, slot.release)

    def _answered(self, host: _Host, optout: bool) -> None:
        with host.ready:
            host.failures = 0
            if optout:
                host.optouts += 1
                if host.optouts == self.limits.breaker_optouts:
                    self._trip(host, f"{host.optouts} X-Robots-Tag opt-outs from {host.name}")
            host.ready.notify_all()

    def _failed(self, host: _Host, error: str) -> None:
        with host.ready:
            host.failures += 1
            if host.failures == self.limits.breaker_failures:
                why = f"{host.failures} consecutive failures from {host.name}, the last: {error}"
                self._trip(host, why)
            host.ready.notify_all()

    def _trip(self, host: _Host, why: str) -> None:
        if host.skipped is None:
            host.skipped = f"{HOST_SKIPPED}: {why}"
            log.warning("%s; its remaining URLs in this shard are not fetched", host.skipped)

    def _wait_after(self, response: http.client.HTTPResponse, attempt: int) -> tuple[float, str]:
        """How long a 429/503 asks the host to be left alone, and why, for the error text."""
        wait = retry_after_s(response.headers, time.time())
        if wait is not None:
            return wait, f"Retry-After: {response.headers.get('Retry-After', '').strip()}"
        return self.limits.backoff_s * 2**attempt, "no Retry-After, exponential back-off"

    def _too_long(self, host: _Host, status: int, wait: float, why: str) -> str:
        return (
            f"{RATE_LIMITED}: {host.name} asked to wait {wait:.0f} s (HTTP {status}, {why}), "
            f"above {_CONFIG}.max_retry_after_s = {self.limits.max_retry_after_s:g}"
        )
