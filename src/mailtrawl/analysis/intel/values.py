"""Threat-intelligence values: one indicator, one list, and the normalisation both sides share.

An `IntelList` is a plain value (no storage): whoever persists lists stores these fields. Every
indicator value is normalised on the way in, the same way the parser normalises what it finds
in a message, so matching is a dictionary lookup rather than a fuzzy comparison.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from mailtrawl.errors import MailtrawlError
from mailtrawl.matching.attachments import hash_kind
from mailtrawl.matching.urls import normalise_domain, normalise_url

MAX_VALUE_LENGTH = 8_192
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# Feeds publish values "defanged" so nobody clicks them; undo the common spellings.
_REFANG = (
    ("[.]", "."),
    ("(.)", "."),
    ("{.}", "."),
    ("[dot]", "."),
    ("(dot)", "."),
    ("[:]", ":"),
    ("[://]", "://"),
    ("[@]", "@"),
    ("(@)", "@"),
    ("[at]", "@"),
)


class IntelType(enum.StrEnum):
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"
    URL = "url"
    DOMAIN = "domain"
    IP = "ip"
    CIDR = "cidr"
    EMAIL = "email"


HASH_TYPES = frozenset({IntelType.MD5, IntelType.SHA1, IntelType.SHA256, IntelType.SHA512})


class IntelFormatError(MailtrawlError, ValueError):
    """An intelligence file or value is malformed; `position` says where (line, object, ...)."""

    def __init__(self, reason: str, position: str | None = None) -> None:
        self.reason = reason
        self.position = position
        super().__init__(f"{position}: {reason}" if position else reason)


@dataclass(frozen=True, slots=True)
class IntelIndicator:
    """One normalised indicator of compromise from a list."""

    type: IntelType
    value: str
    description: str = ""
    source: str = ""  # who published it (CSV source column, MISP org, STIX identity)


@dataclass(frozen=True, slots=True)
class IntelList:
    """A named list of indicators; `source_kind` is the format it came in (csv, stix, misp...)."""

    name: str
    source_kind: str
    indicators: tuple[IntelIndicator, ...]
    warnings: tuple[str, ...] = ()  # entries skipped on import, with their position


def refang(value: str) -> str:
    """Undo defanging (`hxxp://`, `evil[.]com`, `user[@]host`) so the value can be matched."""
    out = value.strip()
    lowered = out[:8].lower()
    if lowered.startswith(("hxxp", "hxxps", "fxp")):
        out = out[:1] + "tt" + out[3:] if lowered.startswith("hxxp") else "ftp" + out[3:]
    for defanged, plain in _REFANG:
        if defanged in out:
            out = out.replace(defanged, plain)
    return out


def normalise_hash(value: str, expected: IntelType | None = None) -> tuple[IntelType, str]:
    """The hash type and lower-case hex; ValueError if it is not a hex digest of that type."""
    value = value.strip().lower()
    kind = hash_kind(value)
    if expected is not None and kind != expected.value:
        raise ValueError(
            f"a {expected} digest must be {_HEX_LENGTH[expected]} hex characters, "
            f"not {_show(value)}"
        )
    if kind is None:
        raise ValueError(f"not a hex MD5, SHA-1, SHA-256 or SHA-512 digest: {_show(value)}")
    return IntelType(kind), value


_HEX_LENGTH = {IntelType.MD5: 32, IntelType.SHA1: 40, IntelType.SHA256: 64, IntelType.SHA512: 128}


def canonical_ip(value: str) -> str | None:
    """The canonical text of an IP address (IPv4-mapped IPv6 as IPv4), or None if not one."""
    try:
        ip = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def normalise_domain_value(value: str) -> str:
    """A lower-case punycode host name; ValueError if it cannot be one."""
    domain = normalise_domain(refang(value).removeprefix("*."))
    if not domain or len(domain) > 253 or any(not label for label in domain.split(".")):
        raise ValueError(f"not a domain name: {_show(value)}")
    if not set(domain) <= _HOST_CHARS:
        raise ValueError(f"not a domain name: {_show(value)}")
    return domain


def normalise_value(kind: IntelType, value: str) -> tuple[IntelType, str]:
    """Normalise `value` as `kind`; the type may be refined (a /32 CIDR is an IP).

    Raises ValueError with a readable reason when the value is not of that kind.
    """
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"the value is longer than {MAX_VALUE_LENGTH} characters")
    if kind in HASH_TYPES:
        return normalise_hash(value, kind)
    plain = refang(value)
    if kind is IntelType.URL:
        url = normalise_url(plain)
        if url is None:
            raise ValueError(f"not an http(s) or ftp URL: {_show(value)}")
        return kind, url
    if kind is IntelType.DOMAIN:
        ip = canonical_ip(plain)
        return (IntelType.IP, ip) if ip else (kind, normalise_domain_value(plain))
    if kind is IntelType.IP or kind is IntelType.CIDR:
        ip = canonical_ip(plain)
        if ip is not None:
            return IntelType.IP, ip
        try:
            network = ipaddress.ip_network(plain.strip(), strict=False)
        except ValueError:
            raise ValueError(f"not an IP address or CIDR range: {_show(value)}") from None
        if network.num_addresses == 1:
            return IntelType.IP, str(network.network_address)
        return IntelType.CIDR, str(network)
    if kind is IntelType.EMAIL:
        local, at, domain = plain.strip().strip("<>").rpartition("@")
        if not at or not local or any(c.isspace() for c in local):
            raise ValueError(f"not an email address: {_show(value)}")
        return kind, f"{local.lower()}@{normalise_domain_value(domain)}"
    raise ValueError(f"unsupported indicator type {kind!r}")  # pragma: no cover - enum is closed


def infer_type(value: str) -> IntelType | None:
    """Guess the type of a bare value (one-per-line lists); None if it looks like nothing."""
    plain = refang(value)
    digest = hash_kind(plain)
    if digest is not None:
        return IntelType(digest)
    if "://" in plain or (plain[:4].lower() == "www." and "/" in plain):
        return IntelType.URL
    if canonical_ip(plain) is not None:
        return IntelType.IP
    if "/" in plain:
        try:
            ipaddress.ip_network(plain, strict=False)
        except ValueError:
            return IntelType.URL if "." in plain.partition("/")[0] else None
        return IntelType.CIDR
    if "@" in plain:
        return IntelType.EMAIL
    if "." in plain:
        return IntelType.DOMAIN
    return None


def parse_type(name: str) -> IntelType | None:
    """The IntelType a type column names (`hash` means "infer from the length"), else None."""
    name = name.strip().lower().replace("-", "")
    aliases = {
        "hash": None,
        "sha1": IntelType.SHA1,
        "hostname": IntelType.DOMAIN,
        "domainname": IntelType.DOMAIN,
        "ipv4": IntelType.IP,
        "ipv6": IntelType.IP,
        "ipaddress": IntelType.IP,
        "uri": IntelType.URL,
        "emailaddress": IntelType.EMAIL,
        "network": IntelType.CIDR,
    }
    if name in aliases:
        return aliases[name]
    try:
        return IntelType(name)
    except ValueError:
        return None


def is_type_name(name: str) -> bool:
    """Whether a CSV type column holds a type we know (including `hash`)."""
    cleaned = name.strip().lower().replace("-", "")
    return cleaned == "hash" or parse_type(name) is not None


def _show(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")
