"""The connect-time address policy: the address table, and the real download subprocess
against loopback servers that count every request they receive."""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from manifests import schema as S
from manifests.fingerprint import split_config
from manifests.layout import RunLayout
from manifests.report import ShardReport
from pipeline.demo_server import photo_bytes
from stages.address_policy import AddressPolicy, PolicyRedirectHandler, UnsafeAddress, parse_peer
from stages.address_ranges import address_problem
from stages.base import RunContext
from stages.download import DownloadConfig
from stages.download_errors import classify
from stages.urls import sample_id_for
from tests.stages.policy_servers import (
    CountingServer,
    image,
    redirect,
    self_signed,
    serve,
    server_context,
)

LOOPBACK = "loopback (RFC 1122 §3.2.1.3)"
LOOPBACK_V6_FORM = f"an IPv6 form of 127.0.0.1, which is {LOOPBACK}"
METADATA = "link-local, incl. cloud metadata 169.254.169.254 (RFC 3927)"

REFUSED = [
    ("127.0.0.1", LOOPBACK),
    ("127.255.0.9", LOOPBACK),
    ("::ffff:127.0.0.1", LOOPBACK_V6_FORM),  # IPv4-mapped, RFC 4291 §2.5.5.2
    ("64:ff9b::7f00:1", LOOPBACK_V6_FORM),  # NAT64, RFC 6052
    ("2002:7f00:1::1", LOOPBACK_V6_FORM),  # 6to4, RFC 3056
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", LOOPBACK_V6_FORM),  # Teredo client 127.0.0.1
    ("0.0.0.0", "'this network', incl. unspecified 0.0.0.0 (RFC 1122 §3.2.1.3)"),
    ("169.254.169.254", METADATA),
    ("::ffff:169.254.169.254", f"an IPv6 form of 169.254.169.254, which is {METADATA}"),
    ("64:ff9b::a9fe:a9fe", f"an IPv6 form of 169.254.169.254, which is {METADATA}"),
    ("224.0.0.1", "multicast (RFC 5771)"),
    ("10.1.2.3", "private (RFC 1918)"),
    ("172.16.0.1", "private (RFC 1918)"),
    ("172.31.255.255", "private (RFC 1918)"),
    ("192.168.1.1", "private (RFC 1918)"),
    ("100.64.0.1", "shared address space, CGNAT (RFC 6598)"),
    ("100.127.255.254", "shared address space, CGNAT (RFC 6598)"),
    ("255.255.255.255", "reserved, incl. broadcast 255.255.255.255 (RFC 1112 §4, RFC 919)"),
    ("fc00::1", "unique local (RFC 4193)"),
    ("fd12:3456::1", "unique local (RFC 4193)"),
    ("fe80::1", "link-local (RFC 4291 §2.5.6)"),
    ("::1", "loopback (RFC 4291 §2.5.3)"),
    ("::", "unspecified (RFC 4291 §2.5.2)"),
    ("ff02::1", "multicast (RFC 4291 §2.7)"),
    ("2001:db8::1", "documentation (RFC 3849)"),
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",  # just past 172.16/12
    "100.128.0.1",  # just past 100.64/10
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of a public address: what DNS64 networks hand out
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_refused_ranges_name_their_rfc(address: str, why: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_the_allow_list_is_exact_to_the_port() -> None:
    policy = AddressPolicy(allow=frozenset({parse_peer("127.0.0.1:8765")}))
    loopback = ipaddress.ip_address("127.0.0.1")
    assert policy.problem(loopback, 8765) is None
    assert policy.problem(ipaddress.ip_address("::ffff:127.0.0.1"), 8765) is None
    assert policy.problem(loopback, 8766) == LOOPBACK
    assert policy.problem(ipaddress.ip_address("127.0.0.2"), 8765) == LOOPBACK


def test_resolver_override_is_used_and_still_checked() -> None:
    policy = AddressPolicy(
        resolve=(
            ("mirror.example", ipaddress.ip_address("93.184.216.34")),
            ("public.example", ipaddress.ip_address("127.0.0.1")),
        )
    )
    assert policy.permitted("Mirror.Example.", 80) == [ipaddress.ip_address("93.184.216.34")]
    with pytest.raises(UnsafeAddress) as refused:
        policy.permitted("public.example", 80)
    assert str(refused.value) == f"unsafe address: public.example -> 127.0.0.1:80 is {LOOPBACK}"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("localhost:80", "'localhost:80': 'localhost' is not an IP address"),
        ("127.0.0.1", "'127.0.0.1': expected IP:port, e.g. 127.0.0.1:8765 or [::1]:8765"),
        ("127.0.0.1:0", "'127.0.0.1:0': expected IP:port, e.g. 127.0.0.1:8765 or [::1]:8765"),
        ("::1:80", "'::1:80': an IPv6 address is written in brackets, [::1]:8765"),
    ],
)
def test_allow_entries_must_be_ip_and_port(text: str, why: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_peer(text)
    assert str(refused.value) == why
    with pytest.raises(ValidationError, match="allow_addresses"):
        DownloadConfig(allow_addresses=[text])


def test_settings_carry_the_policy_to_the_subprocess() -> None:
    config = DownloadConfig(
        allow_addresses=["127.0.0.1:8765", "[::1]:8766"],
        resolve_overrides={"mirror.example": "127.0.0.1"},
        max_redirects=3,
    )
    settings = json.loads(json.dumps(config.settings()))
    assert AddressPolicy.from_settings(settings["address_policy"]) == AddressPolicy(
        allow=frozenset({parse_peer("127.0.0.1:8765"), parse_peer("[::1]:8766")}),
        resolve=(("mirror.example", ipaddress.ip_address("127.0.0.1")),),
        max_redirects=3,
    )
    with pytest.raises(ValidationError, match="resolve_overrides"):
        DownloadConfig(resolve_overrides={"mirror.example": "mirror.local"})
    # Produce fields: a change recomputes the downloads.
    produce = split_config(config).produce
    assert (produce["allow_addresses"], produce["max_redirects"]) == (config.allow_addresses, 3)
    assert produce["resolve_overrides"] == {"mirror.example": "127.0.0.1"}


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("<urlopen error unsafe address: a -> 127.0.0.1:80 is x>", "download:unsafe_address"),
        ("redirect limit: more than 5 redirects, at http://a/", "download:redirect_limit"),
        ("unsafe redirect: to a file: URL, file:///etc/passwd", "download:unsafe_redirect"),
        ("unsafe redirect: https downgraded to http, http://a/", "download:unsafe_redirect"),
        # A server's reason phrase cannot pose as a refusal.
        ("HTTP Error 404: unsafe address: x", "download:http_404"),
        ("<urlopen error [Errno 111] Connection refused>", "download:connection"),
    ],
)
def test_refusals_have_their_own_reasons(error: str, reason: str) -> None:
    assert classify("failed_to_download", error) == reason


@pytest.mark.parametrize(
    ("source", "target", "why"),
    [
        ("https://a.example/x", "http://a.example/y", "https downgraded to http"),
        ("https://a.example/x", "file:///etc/passwd", "to a file: URL"),
        ("http://a.example/x", "ftp://a.example/y.jpg", "to a ftp: URL"),
        ("http://a.example/x", "data:image/jpeg;base64,AAAA", "to a data: URL"),
        ("http://a.example/x", "https://b.example/y", None),
        ("https://a.example/x", "https://b.example/y", None),
    ],
)
def test_redirect_scheme_rules(source: str, target: str, why: str | None) -> None:
    refusal = PolicyRedirectHandler(5).refusal(urllib.request.Request(source), target)
    assert refusal == (None if why is None else f"unsafe redirect: {why}, {target}")


# ---- end to end: the download stage, its img2dataset subprocess, two loopback servers


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None
    error: str | None


def _download(
    tmp: Path, urls: list[str], config: DownloadConfig
) -> tuple[dict[str, Outcome], ShardReport]:
    """Run the download stage on one shard of ``urls``; each URL's outcome, and the report."""
    layout = RunLayout(tmp / "run")
    names = [S.SAMPLE_ID, S.URL, S.ALT_TEXT, S.KEEP, S.REJECT_REASON]
    path = layout.manifest("candidates", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(urls)
    columns = [[sample_id_for(u) for u in urls], urls, ["a photo"] * n, [True] * n, [None] * n]
    pq.write_table(pa.table(dict(zip(names, columns, strict=True)), S.schema_for(names)), path)
    report = config.build().run_shard(0, RunContext(layout.root))
    rows = pq.read_table(layout.manifest("download", 0)).to_pylist()
    by_id = {r[S.SAMPLE_ID]: r for r in rows}
    outcomes = {
        u: Outcome(
            by_id[sample_id_for(u)][S.DL_STATUS],
            by_id[sample_id_for(u)][S.REJECT_REASON],
            by_id[sample_id_for(u)][S.DL_ERROR],
        )
        for u in urls
    }
    return outcomes, report


@dataclass(frozen=True)
class PolicyRun:
    allowed: CountingServer
    refused: CountingServer
    outcomes: dict[str, Outcome]
    report: ShardReport


@pytest.fixture(scope="module")
def policy_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyRun]:
    """One download of every HTTP case; the refused server is a second loopback server."""
    jpeg = photo_bytes("astronaut")
    with serve() as allowed, serve() as refused:
        other = f"{refused.base}/img.jpg"
        allowed.routes.update(
            {
                "/img.jpg": image(jpeg),
                "/mirror.jpg": image(jpeg),
                "/to-other-302": redirect(302, other),
                "/to-other-301": redirect(301, other),
                "/loop-a": redirect(302, "/loop-b"),
                "/loop-b": redirect(302, "/loop-a"),
                "/to-metadata": redirect(302, "http://169.254.169.254/latest/meta-data/"),
                "/to-mapped": redirect(302, f"http://[::ffff:127.0.0.1]:{refused.port}/img.jpg"),
                "/to-file": redirect(302, "file:///etc/passwd"),
                "/to-ftp": redirect(302, f"ftp://127.0.0.1:{refused.port}/img.jpg"),
            }
        )
        refused.routes["/img.jpg"] = image(jpeg)
        urls = [
            *(f"{allowed.base}{p}" for p in allowed.routes if p not in ("/loop-b", "/mirror.jpg")),
            f"http://public.example:{refused.port}/img.jpg",
            f"http://mirror.example:{allowed.port}/mirror.jpg",
        ]
        config = DownloadConfig(
            allow_addresses=[allowed.peer],
            resolve_overrides={"public.example": "127.0.0.1", "mirror.example": "127.0.0.1"},
            max_redirects=3,
            timeout_s=30,
            thread_count=4,
            image_size=256,
        )
        outcomes, report = _download(tmp_path_factory.mktemp("policy"), urls, config)
        yield PolicyRun(allowed, refused, outcomes, report)


def _refused_text(host: str, peer: str, why: str) -> str:
    return f"<urlopen error unsafe address: {host} -> {peer} is {why}>"


def test_the_refused_server_received_nothing(policy_run: PolicyRun) -> None:
    assert policy_run.refused.hits == {}
    assert policy_run.report.dropped == {
        "download:unsafe_address": 5,
        "download:redirect_limit": 1,
        "download:unsafe_redirect": 2,
    }
    assert (policy_run.report.n_in, policy_run.report.n_out) == (10, 2)


def test_allowed_fetches_succeed(policy_run: PolicyRun) -> None:
    base, port = policy_run.allowed.base, policy_run.allowed.port
    for url in (f"{base}/img.jpg", f"http://mirror.example:{port}/mirror.jpg"):
        assert policy_run.outcomes[url] == Outcome("success", None, None)
    assert policy_run.allowed.hits["/img.jpg"] == 1
    assert policy_run.allowed.hits["/mirror.jpg"] == 1


@pytest.mark.parametrize("code", [301, 302])
def test_a_redirect_to_another_loopback_server_is_refused(policy_run: PolicyRun, code: int) -> None:
    peer = policy_run.refused.peer
    assert policy_run.outcomes[f"{policy_run.allowed.base}/to-other-{code}"] == Outcome(
        "failed_to_download",
        "download:unsafe_address",
        _refused_text("127.0.0.1", peer, LOOPBACK),
    )


def test_redirects_to_metadata_and_mapped_addresses_are_refused(policy_run: PolicyRun) -> None:
    base, port = policy_run.allowed.base, policy_run.refused.port
    metadata = policy_run.outcomes[f"{base}/to-metadata"]
    assert metadata.reason == "download:unsafe_address"
    assert metadata.error == _refused_text("169.254.169.254", "169.254.169.254:80", METADATA)
    mapped = policy_run.outcomes[f"{base}/to-mapped"]
    assert mapped.reason == "download:unsafe_address"
    # Python spells the peer ::ffff:7f00:1 before 3.13 and ::ffff:127.0.0.1 since.
    peer = ipaddress.ip_address("::ffff:127.0.0.1")
    assert mapped.error == _refused_text("::ffff:127.0.0.1", f"[{peer}]:{port}", LOOPBACK_V6_FORM)


def test_a_name_resolving_to_loopback_is_refused(policy_run: PolicyRun) -> None:
    port = policy_run.refused.port
    outcome = policy_run.outcomes[f"http://public.example:{port}/img.jpg"]
    assert outcome == Outcome(
        "failed_to_download",
        "download:unsafe_address",
        _refused_text("public.example", f"127.0.0.1:{port}", LOOPBACK),
    )


def test_a_redirect_loop_stops_at_the_limit(policy_run: PolicyRun) -> None:
    base = policy_run.allowed.base
    assert policy_run.outcomes[f"{base}/loop-a"] == Outcome(
        "failed_to_download",
        "download:redirect_limit",
        f"redirect limit: more than 3 redirects, at {base}/loop-a",
    )
    # The first request and 3 followed redirects; the 4th redirect is not followed.
    assert (policy_run.allowed.hits["/loop-a"], policy_run.allowed.hits["/loop-b"]) == (2, 2)


def test_redirects_off_the_web_are_refused(policy_run: PolicyRun) -> None:
    base, port = policy_run.allowed.base, policy_run.refused.port
    assert policy_run.outcomes[f"{base}/to-file"] == Outcome(
        "failed_to_download",
        "download:unsafe_redirect",
        "unsafe redirect: to a file: URL, file:///etc/passwd",
    )
    ftp = f"ftp://127.0.0.1:{port}/img.jpg"
    assert policy_run.outcomes[f"{base}/to-ftp"] == Outcome(
        "failed_to_download", "download:unsafe_redirect", f"unsafe redirect: to a ftp: URL, {ftp}"
    )


def test_https_keeps_the_hostname_and_refuses_downgrades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = self_signed(tmp_path, "secure.test")
    if pair is None:
        pytest.skip("no openssl CLI to make a certificate; see test_redirect_scheme_rules")
    # The subprocess trusts only this certificate (OpenSSL reads SSL_CERT_FILE).
    monkeypatch.setenv("SSL_CERT_FILE", str(pair[0]))
    jpeg = photo_bytes("astronaut")
    with serve(server_context(*pair)) as tls, serve() as plain:
        plain.routes["/downgraded.jpg"] = image(jpeg)
        downgrade = f"{plain.base}/downgraded.jpg"
        tls.routes.update({"/img.jpg": image(jpeg), "/to-http": redirect(302, downgrade)})
        named = f"https://secure.test:{tls.port}"
        urls = [f"{named}/img.jpg", f"{named}/to-http", f"{tls.base}/img.jpg"]
        config = DownloadConfig(
            allow_addresses=[tls.peer, plain.peer],
            resolve_overrides={"secure.test": "127.0.0.1"},
            timeout_s=30,
            thread_count=3,
            image_size=256,
        )
        outcomes, _ = _download(tmp_path, urls, config)
    # Connected to the checked 127.0.0.1, verified the certificate against secure.test.
    assert outcomes[f"{named}/img.jpg"] == Outcome("success", None, None)
    assert outcomes[f"{named}/to-http"] == Outcome(
        "failed_to_download",
        "download:unsafe_redirect",
        f"unsafe redirect: https downgraded to http, {downgrade}",
    )
    assert plain.hits == {}  # allowed as a peer; refused for the downgrade alone
    # The certificate names secure.test, not 127.0.0.1: verification is on.
    by_ip = outcomes[f"{tls.base}/img.jpg"]
    assert (by_ip.status, by_ip.reason) == ("failed_to_download", "download:tls")
    assert str(by_ip.error).startswith("<urlopen error [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert tls.hits == {"/img.jpg": 1, "/to-http": 1}
