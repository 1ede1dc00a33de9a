"""The IP addresses a message passed through, from its trace headers, and IP range checks.

Only the "from" clause of a `Received` header is read (up to `by`, `with`, `via`, `id`, `for`
or `;`): that is where the receiving server wrote the sending peer's address, in any of the
forms `[203.0.113.5]`, `(203.0.113.5)`, `[IPv6:2001:db8::1]` or bare. The clause also holds
the HELO name the sender chose, so an address it claims there is reported too; every hop
before the first trusted server is the sender's to forge anyway. IPv4-mapped IPv6 addresses
are reported as IPv4, and the unspecified addresses (0.0.0.0, ::) are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Received headers can be long, but an address is never far from the start of its clause.
_MAX_VALUE = 4_096
_CLAUSE_END = re.compile(r"\s(?:by|with|via|id|for)\s|;", re.IGNORECASE)
_CANDIDATE = re.compile(r"[0-9A-Za-z:.]+")
_SPF_CLIENT = re.compile(r"client-ip=([0-9A-Fa-f:.]+)", re.IGNORECASE)
_AUTH_SENDER = re.compile(r"sender IP is ([0-9A-Fa-f:.]+)", re.IGNORECASE)
_BARE_HEADERS = frozenset(
    {"x-originating-ip", "x-sender-ip", "x-ms-exchange-organization-originalclientipaddress"}
)


def received_ips(headers: Sequence[tuple[str, str]]) -> list[str]:
    """Canonical addresses from the trace headers, de-duplicated, in header order."""
    found: dict[str, None] = {}
    for name, value in headers:
        for candidate in _candidates(name.strip().lower(), value[:_MAX_VALUE]):
            ip = _canonical(candidate)
            if ip is not None:
                found.setdefault(ip, None)
    return list(found)


def _candidates(name: str, value: str) -> Iterator[str]:
    if name == "received":
        value = value.lstrip()
        if value[:4].lower() == "from":
            end = _CLAUSE_END.search(value, 4)
            clause = value[4 : end.start() if end else None]
            yield from (match.group() for match in _CANDIDATE.finditer(clause))
    elif name in _BARE_HEADERS:
        yield from (match.group() for match in _CANDIDATE.finditer(value))
    elif name == "received-spf":
        yield from (match.group(1) for match in _SPF_CLIENT.finditer(value))
    elif name == "authentication-results":
        yield from (match.group(1) for match in _AUTH_SENDER.finditer(value))


def _canonical(candidate: str) -> str | None:
    if candidate[:5].lower() == "ipv6:":
        candidate = candidate[5:]
    try:
        ip = ipaddress.ip_address(candidate.rstrip("."))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return None if ip.is_unspecified else str(ip)


def parse_ip_spec(spec: str) -> IPNetwork:
    """An IP address or CIDR range (host bits may be set: "10.1.2.3/8" means 10.0.0.0/8)."""
    try:
        return ipaddress.ip_network(spec.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"not an IP address or CIDR range: {spec!r} (expected e.g. 203.0.113.5, "
            "203.0.113.0/24 or 2001:db8::/32)"
        ) from None


def ip_matches(ip: str, spec: str) -> bool:
    """Whether `ip` is `spec` or inside it; False if either is invalid."""
    address = _canonical(ip.strip())
    try:
        return address is not None and ipaddress.ip_address(address) in parse_ip_spec(spec)
    except ValueError:
        return False
