"""Which IP addresses a crawler must never connect to, and why (the address policy's table).

The ranges follow the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890), each
with the RFC that assigns it. The table is ours rather than ``ipaddress``'s ``is_global``
alone: Python's flags differ between releases and call 224.0.0.1, 2002:7f00:1::1 (6to4 of
127.0.0.1) and 64:ff9b::7f00:1 (NAT64 of 127.0.0.1) global (checked on 3.11). Addresses that
embed an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo) are judged by what they embed.
"""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, what it is), first match wins.
REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "'this network', incl. unspecified 0.0.0.0 (RFC 1122 §3.2.1.3)"),
    (_V4("10.0.0.0/8"), "private (RFC 1918)"),
    (_V4("100.64.0.0/10"), "shared address space, CGNAT (RFC 6598)"),
    (_V4("127.0.0.0/8"), "loopback (RFC 1122 §3.2.1.3)"),
    (_V4("169.254.0.0/16"), "link-local, incl. cloud metadata 169.254.169.254 (RFC 3927)"),
    (_V4("172.16.0.0/12"), "private (RFC 1918)"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments (RFC 6890 §2.2.2)"),
    (_V4("192.0.2.0/24"), "documentation TEST-NET-1 (RFC 5737)"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast, deprecated (RFC 7526)"),
    (_V4("192.168.0.0/16"), "private (RFC 1918)"),
    (_V4("198.18.0.0/15"), "benchmarking (RFC 2544)"),
    (_V4("198.51.100.0/24"), "documentation TEST-NET-2 (RFC 5737)"),
    (_V4("203.0.113.0/24"), "documentation TEST-NET-3 (RFC 5737)"),
    (_V4("224.0.0.0/4"), "multicast (RFC 5771)"),
    (_V4("240.0.0.0/4"), "reserved, incl. broadcast 255.255.255.255 (RFC 1112 §4, RFC 919)"),
)

REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified (RFC 4291 §2.5.2)"),
    (_V6("::1/128"), "loopback (RFC 4291 §2.5.3)"),
    (_V6("::/96"), "IPv4-compatible, deprecated (RFC 4291 §2.5.5.1)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64 (RFC 8215)"),
    (_V6("100::/64"), "discard-only (RFC 6666)"),
    (_V6("2001::/23"), "IETF protocol assignments (RFC 2928)"),
    (_V6("2001:db8::/32"), "documentation (RFC 3849)"),
    (_V6("3fff::/20"), "documentation (RFC 9637)"),
    (_V6("fc00::/7"), "unique local (RFC 4193)"),
    (_V6("fe80::/10"), "link-local (RFC 4291 §2.5.6)"),
    (_V6("fec0::/10"), "site-local, deprecated (RFC 3879)"),
    (_V6("ff00::/8"), "multicast (RFC 4291 §2.7)"),
)

# RFC 4291 §2.4: global unicast is 2000::/3; the rest of the space is special or unassigned.
GLOBAL_UNICAST_V6 = _V6("2000::/3")
# RFC 6052 §2.1: the well-known NAT64 prefix; the IPv4 address is the last 32 bits.
NAT64_V6 = _V6("64:ff9b::/96")


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` must not be contacted by a crawler, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded:
            return _embedded_problem(address, embedded)
        return _v6_problem(address)
    for network, what in REFUSED_V4:
        if address in network:
            return what
    if not address.is_global:  # a range a later Python release knows and this table does not
        return "not globally reachable (IANA special-purpose registry)"
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 transition form carries; [] for an ordinary address."""
    if address.ipv4_mapped is not None:  # ::ffff:0:0/96, RFC 4291 §2.5.5.2
        return [address.ipv4_mapped]
    if address in NAT64_V6:
        return [ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)]
    if address.sixtofour is not None:  # 2002::/16, RFC 3056 §2
        return [address.sixtofour]
    if address.teredo is not None:  # 2001::/32, RFC 4380 §4: server and (obfuscated) client
        return list(address.teredo)
    return []


def _embedded_problem(
    address: ipaddress.IPv6Address, embedded: list[ipaddress.IPv4Address]
) -> str | None:
    for inner in embedded:
        why = address_problem(inner)
        if why is not None:
            return f"an IPv6 form of {inner}, which is {why}"
    return None


def _v6_problem(address: ipaddress.IPv6Address) -> str | None:
    for network, what in REFUSED_V6:
        if address in network:
            return what
    if address not in GLOBAL_UNICAST_V6:
        return "outside global unicast 2000::/3 (RFC 4291 §2.4)"
    if not address.is_global:
        return "not globally reachable (IANA special-purpose registry)"
    return None
