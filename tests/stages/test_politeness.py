"""Per-host politeness (stages.host_politeness): the cap, the interval, 429/503 back-off and
the circuit breakers, proven by a loopback server that counts requests per Host header, both
in the real download subprocess and through the opener it installs.

Timing is asserted by lower bounds only, good responses get a 30 s timeout, and concurrency
is gathered by the server (it holds requests until they overlap), so a loaded machine is
slower but not wrong.
"""

from __future__ import annotations

import itertools
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import formatdate
from pathlib import Path
from urllib.error import HTTPError

import pytest
from pydantic import ValidationError

from manifests.fingerprint import split_config
from manifests.report import ShardReport
from pipeline.demo_server import photo_bytes
from stages.address_policy import AddressPolicy, build_opener
from stages.download import DownloadConfig, PolitenessConfig
from stages.download_errors import classify
from stages.host_politeness import HostGate, HostSkipped, Politeness, RateLimited, retry_after_s
from stages.img2dataset_shard import img2dataset_opt_out
from tests.stages.policy_servers import Response, image, redirect
from tests.stages.politeness_server import LoadServer, serve_load
from tests.stages.test_address_policy import Outcome, _download

SUCCESS = Outcome("success", None, None)
CAP_HOSTS = ("a.test", "b.test", "c.test")
SPACED_HOSTS = ("d.test", "e.test")
INTERVAL_S = 1.0
# Arrival times at the server: a request that reached it late shortens the next gap.
EPSILON_S = 0.1
TIMEOUT_S = 30


def _config(server: LoadServer, hosts: tuple[str, ...], **limits: float) -> DownloadConfig:
    return DownloadConfig(
        allow_addresses=[server.peer],
        resolve_overrides={h: "127.0.0.1" for h in hosts},
        timeout_s=TIMEOUT_S,
        thread_count=8,
        image_size=64,
        politeness=PolitenessConfig(**limits),
    )


def _interleaved(server: LoadServer, hosts: tuple[str, ...], n: int) -> list[str]:
    # Round-robin: img2dataset hands URLs to its threads in order, so every host is busy.
    return [server.url(h, f"/img/{i}.jpg") for i in range(n) for h in hosts]


@dataclass(frozen=True)
class Run:
    server: LoadServer
    outcomes: dict[str, Outcome]
    report: ShardReport


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """3 hosts x 6 URLs, 8 threads, 2 per host: the server holds requests until 6 overlap."""
    with serve_load(image(photo_bytes("astronaut")), gather=2 * len(CAP_HOSTS)) as server:
        urls = _interleaved(server, CAP_HOSTS, 6)
        config = _config(server, CAP_HOSTS, max_per_host=2)
        outcomes, report = _download(tmp_path_factory.mktemp("capped"), urls, config)
        yield Run(server, outcomes, report)


def test_the_cap_holds_per_host_while_hosts_proceed_together(capped: Run) -> None:
    assert capped.server.max_in_flight == {h: 2 for h in CAP_HOSTS}
    assert capped.server.max_total == 2 * len(CAP_HOSTS)
    assert {h: capped.server.host_hits(h) for h in CAP_HOSTS} == {h: 6 for h in CAP_HOSTS}
    assert set(capped.outcomes.values()) == {SUCCESS}
    assert (capped.report.n_in, capped.report.n_out) == (18, 18)


def test_request_starts_to_one_host_are_spaced(tmp_path: Path) -> None:
    with serve_load(image(photo_bytes("astronaut"))) as server:
        urls = _interleaved(server, SPACED_HOSTS, 3)
        config = _config(server, SPACED_HOSTS, min_interval_s=INTERVAL_S)
        outcomes, _ = _download(tmp_path, urls, config)
    assert set(outcomes.values()) == {SUCCESS}
    for host in SPACED_HOSTS:
        times = server.arrivals[host]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert len(gaps) == 2
        assert min(gaps) >= INTERVAL_S - EPSILON_S, (host, gaps)


# ---- back-off and breakers: one download, a host per case


def _opted_out(jpeg: bytes) -> Response:
    return 200, {"Content-Type": "image/jpeg", "X-Robots-Tag": "noai"}, jpeg


def _date_503() -> Response:
    return 503, {"Retry-After": formatdate(time.time() + 2, usegmt=True)}, b""


@pytest.fixture(scope="module")
def strained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    jpeg = photo_bytes("astronaut")
    with serve_load(image(jpeg)) as server:
        server.routes.update(
            {
                "/once-429": [(429, {"Retry-After": "1"}, b"slow down"), image(jpeg)],
                "/date-503": [_date_503, image(jpeg)],
                "/busy": [(503, {"Retry-After": "120"}, b"")],
                "/always-429": [(429, {"Retry-After": "0"}, b"")],
                **{f"/noai/{i}": [_opted_out(jpeg)] for i in range(5)},
                **{f"/err/{i}": [(500, {}, b"")] for i in range(5)},
            }
        )
        cases = {
            "retry.test": ["/once-429"],
            "date.test": ["/date-503"],
            "slow.test": ["/busy"],
            "tired.test": ["/always-429"],
            "optout.test": [f"/noai/{i}" for i in range(5)],
            "fail.test": [f"/err/{i}" for i in range(5)],
        }
        urls = [server.url(host, path) for host, paths in cases.items() for path in paths]
        limits = {"max_per_host": 4, "max_retry_after_s": 10, "backoff_retries": 2}
        config = _config(server, tuple(cases), breaker_optouts=3, breaker_failures=3, **limits)
        outcomes, report = _download(tmp_path_factory.mktemp("strained"), urls, config)
        yield Run(server, outcomes, report)


def test_every_case_ends_with_its_reason(strained: Run) -> None:
    assert strained.report.dropped == {
        "download:rate_limited": 1,
        "download:http_429": 1,
        "download:x_robots_tag": 3,
        "download:http_500": 3,
        "download:host_skipped": 4,
    }
    assert (strained.report.n_in, strained.report.n_out) == (14, 2)


def test_a_429_is_retried_once_after_its_retry_after(strained: Run) -> None:
    assert strained.outcomes[strained.server.url("retry.test", "/once-429")] == SUCCESS
    assert strained.server.hits[("retry.test", "/once-429")] == 2
    first, second = strained.server.arrivals["retry.test"]
    # The retry starts after the 429 arrived plus Retry-After: 1, which is after it was sent.
    assert second - first >= 1.0


def test_a_503_with_an_http_date_is_retried(strained: Run) -> None:
    assert strained.outcomes[strained.server.url("date.test", "/date-503")] == SUCCESS
    assert strained.server.hits[("date.test", "/date-503")] == 2


def test_a_wait_above_the_bound_is_rate_limited(strained: Run) -> None:
    assert strained.outcomes[strained.server.url("slow.test", "/busy")] == Outcome(
        "failed_to_download",
        "download:rate_limited",
        "rate limited: slow.test asked to wait 120 s (HTTP 503, Retry-After: 120), "
        "above download.politeness.max_retry_after_s = 10",
    )
    assert strained.server.host_hits("slow.test") == 1


def test_retries_are_bounded_and_the_last_answer_stands(strained: Run) -> None:
    assert strained.outcomes[strained.server.url("tired.test", "/always-429")] == Outcome(
        "failed_to_download", "download:http_429", "HTTP Error 429: Too Many Requests"
    )
    assert strained.server.hits[("tired.test", "/always-429")] == 3  # 1 + backoff_retries


def _reasons(run: Run, host: str) -> list[str]:
    prefix = run.server.url(host, "/")
    return sorted(str(o.reason) for u, o in run.outcomes.items() if u.startswith(prefix))


def test_opt_outs_trip_the_breaker(strained: Run) -> None:
    assert (
        _reasons(strained, "optout.test")
        == ["download:host_skipped"] * 2 + ["download:x_robots_tag"] * 3
    )
    skipped = {o.error for o in strained.outcomes.values() if o.reason == "download:host_skipped"}
    assert "host skipped: 3 X-Robots-Tag opt-outs from optout.test" in skipped
    assert strained.server.host_hits("optout.test") == 3


def test_consecutive_failures_trip_the_breaker(strained: Run) -> None:
    assert (
        _reasons(strained, "fail.test") == ["download:host_skipped"] * 2 + ["download:http_500"] * 3
    )
    skipped = {o.error for o in strained.outcomes.values() if o.reason == "download:host_skipped"}
    assert skipped == {
        "host skipped: 3 X-Robots-Tag opt-outs from optout.test",
        "host skipped: 3 consecutive failures from fail.test, the last: "
        "HTTP Error 500: Internal Server Error",
    }
    assert strained.server.host_hits("fail.test") == 3


# ---- the gate through the opener, in this process: sequences the thread pool would blur


def _opener(
    server: LoadServer, hosts: tuple[str, ...], **limits: float
) -> tuple[urllib.request.OpenerDirector, HostGate]:
    policy = AddressPolicy.from_settings(
        {"allow_addresses": [server.peer], "resolve_overrides": {h: "127.0.0.1" for h in hosts}}
    )
    settings = PolitenessConfig(**limits).model_dump()
    gate = HostGate(Politeness.from_settings(settings), img2dataset_opt_out(None, ["noai"]))
    return build_opener(policy, gate), gate


def _fetch(opener: urllib.request.OpenerDirector, url: str) -> int:
    with opener.open(url, timeout=TIMEOUT_S) as response:
        response.read()
        return int(response.status)


def test_an_answer_resets_the_consecutive_failures() -> None:
    with serve_load(image(b"bytes")) as server:
        server.routes["/err"] = [(500, {}, b"")]
        opener, _ = _opener(server, ("flaky.test",), breaker_failures=3)
        err, img = server.url("flaky.test", "/err"), server.url("flaky.test", "/img")
        for url in (err, err, img, err, err, err):
            if url == img:
                assert _fetch(opener, url) == 200
                continue
            with pytest.raises(HTTPError) as failed:
                _fetch(opener, url)
            assert failed.value.code == 500
        with pytest.raises(HostSkipped) as skipped:
            _fetch(opener, img)
    assert str(skipped.value) == (
        "host skipped: 3 consecutive failures from flaky.test, the last: "
        "HTTP Error 500: Internal Server Error"
    )
    assert server.hits == {("flaky.test", "/err"): 5, ("flaky.test", "/img"): 1}


def test_a_redirect_counts_against_its_target() -> None:
    with serve_load(image(b"bytes")) as server:
        server.routes["/to-back"] = [redirect(302, server.url("back.test", "/err"))]
        server.routes["/err"] = [(500, {}, b"")]
        opener, _ = _opener(server, ("front.test", "back.test"), breaker_failures=1)
        with pytest.raises(HTTPError):
            _fetch(opener, server.url("front.test", "/to-back"))
        assert _fetch(opener, server.url("front.test", "/img")) == 200
        with pytest.raises(HostSkipped) as skipped:
            _fetch(opener, server.url("back.test", "/img"))
    assert str(skipped.value).startswith("host skipped: 1 consecutive failures from back.test")
    assert server.hits == {
        ("front.test", "/to-back"): 1,
        ("back.test", "/err"): 1,
        ("front.test", "/img"): 1,
    }


def test_a_back_off_holds_every_request_to_its_host() -> None:
    with serve_load(image(b"bytes")) as server:
        opener, gate = _opener(server, ("hold.test", "far.test"))
        t0 = time.monotonic()
        gate.back_off("hold.test", 1.0)
        assert _fetch(opener, server.url("hold.test", "/img")) == 200
        gate.back_off("far.test", 120.0)  # above max_retry_after_s = 60: not waited for
        with pytest.raises(RateLimited) as refused:
            _fetch(opener, server.url("far.test", "/img"))
    assert server.arrivals["hold.test"][0] >= t0 + 1.0
    text = str(refused.value)
    assert text.startswith("rate limited: far.test asked not to be contacted for another ")
    assert text.endswith(" s, above download.politeness.max_retry_after_s = 60")
    assert classify("failed_to_download", text) == "download:rate_limited"
    assert server.host_hits("far.test") == 0


# ---- Retry-After, reasons, configuration

IMF = "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110 §5.6.7's example, in its three forms
SENT = "Sun, 06 Nov 1994 08:49:07 GMT"  # 30 s earlier
UNIX = 784111777.0  # IMF as a Unix time


def _headers(**fields: str) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


@pytest.mark.parametrize(
    ("fields", "now", "seconds"),
    [
        ({"Retry_After": "120"}, 0.0, 120.0),
        ({"Retry_After": " 3 "}, 0.0, 3.0),
        ({"Retry_After": IMF, "Date": SENT}, 0.0, 30.0),  # from the response's own Date
        ({"Retry_After": "Sunday, 06-Nov-94 08:49:37 GMT", "Date": SENT}, 0.0, 30.0),
        ({"Retry_After": "Sun Nov  6 08:49:37 1994", "Date": SENT}, 0.0, 30.0),
        ({"Retry_After": IMF}, UNIX - 5, 5.0),  # no Date: from the local clock
        ({"Retry_After": SENT, "Date": IMF}, 0.0, 0.0),  # in the past: no wait
        ({"Retry_After": "soon"}, 0.0, None),
        ({"Retry_After": "-1"}, 0.0, None),
        ({"Retry_After": "1.5"}, 0.0, None),  # delay-seconds are digits only
        ({}, 0.0, None),
    ],
)
def test_retry_after_follows_rfc_9110(
    fields: dict[str, str], now: float, seconds: float | None
) -> None:
    assert retry_after_s(_headers(**fields), now) == seconds


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("rate limited: a asked to wait 120 s (HTTP 503, Retry-After: 120)", "rate_limited"),
        ("host skipped: 3 X-Robots-Tag opt-outs from a", "host_skipped"),
        ("host skipped: 10 consecutive failures from a, the last: timed out", "host_skipped"),
        ("HTTP Error 429: rate limited: x", "http_429"),  # a reason phrase cannot pose as one
        ("Use of image disallowed by X-Robots-Tag directive", "x_robots_tag"),
    ],
)  # fmt: skip
def test_gate_refusals_have_their_own_reasons(error: str, reason: str) -> None:
    assert classify("failed_to_download", error) == f"download:{reason}"


def test_settings_carry_the_limits_and_only_outcomes_fingerprint() -> None:
    config = DownloadConfig(politeness=PolitenessConfig(max_per_host=2, breaker_failures=0))
    settings = config.settings()["politeness"]
    assert Politeness.from_settings(settings) == Politeness(
        max_per_host=2,
        min_interval_s=0.0,
        max_retry_after_s=60.0,
        backoff_retries=2,
        backoff_s=1.0,
        breaker_optouts=3,
        breaker_failures=0,
    )
    assert split_config(config).produce["politeness"] == {
        "max_retry_after_s": 60.0,
        "backoff_retries": 2,
        "backoff_s": 1.0,
        "breaker_optouts": 3,
        "breaker_failures": 0,
    }
    with pytest.raises(ValidationError, match="max_per_host"):
        PolitenessConfig(max_per_host=0)
    with pytest.raises(ValidationError, match="max_per_hots"):
        DownloadConfig.model_validate({"politeness": {"max_per_hots": 4}})
