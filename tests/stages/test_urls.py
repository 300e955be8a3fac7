"""URL normalization, sample identity and URL safety."""

from __future__ import annotations

import pytest

from stages.urls import HostSafety, UrlProblem, is_public_address, normalize_url, sample_id_for


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM:80/a b/ü?x=1&y=2#frag", "http://example.com/a%20b/%C3%BC?x=1&y=2"),
        ("  https://example.com  ", "https://example.com/"),
        ("https://example.com:443/p?b=2&a=1", "https://example.com/p?b=2&a=1"),
        ("https://bücher.de:8443/x", "https://xn--bcher-kva.de:8443/x"),
        ("http://[::1]:8080/a", "http://[::1]:8080/a"),
        ("http://example.com/already%20escaped", "http://example.com/already%20escaped"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_url(raw).url == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (None, "missing_url"),
        ("", "missing_url"),
        ("   ", "missing_url"),
        (42, "missing_url"),
        ("UNLIKELY", "invalid_url"),
        ("http://", "invalid_url"),
        ("http://a..b/", "invalid_url"),
        ("http://exa mple.com/", "invalid_url"),
        ("http://example.com:99999/", "invalid_url"),
        ("ftp://example.org/x.jpg", "unsupported_scheme"),
        ("javascript:alert(1)", "unsupported_scheme"),
        ("file:///etc/passwd", "unsupported_scheme"),
    ],
)
def test_unusable_urls(raw: object, why: str) -> None:
    with pytest.raises(UrlProblem) as info:
        normalize_url(raw)
    assert info.value.why == why


def test_sample_id_is_stable_sha1_prefix() -> None:
    # sha1("http://example.com/") = 9c17e047f58f9220a7008d4f18152fee4d111d14
    assert sample_id_for("http://example.com/") == "9c17e047f58f9220"
    assert normalize_url("HTTP://EXAMPLE.com").url == "http://example.com/"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_host_safety_refuses_local_names_and_literals() -> None:
    safety = HostSafety(resolve=False, timeout_s=1.0)
    verdict = safety.check_many(
        {"localhost", "foo.localhost", "127.0.0.1", "example.com", "8.8.8.8"}
    )
    assert verdict == {
        "localhost": False,
        "foo.localhost": False,
        "127.0.0.1": False,
        "example.com": True,
        "8.8.8.8": True,
    }


def test_host_safety_resolves_names() -> None:
    safety = HostSafety(resolve=True, timeout_s=1.0)
    assert safety._resolve_addresses("localhost") == ["127.0.0.1"]
    # Resolved to loopback: refused. Not resolvable (.invalid is reserved, RFC 6761): left to
    # the download, which reports it.
    assert safety.check_many({"localhost", "no-such-host.invalid"}) == {
        "localhost": False,
        "no-such-host.invalid": True,
    }
