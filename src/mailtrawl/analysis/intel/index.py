"""`IntelIndex`: every list's indicators, built once, looked up in constant time per value.

- hashes, e-mail addresses and IPs: dictionary lookups;
- domains: a listed domain covers its subdomains, so a host is looked up label by label
  ("a.b.example.com", "b.example.com", "example.com", "com");
- CIDR ranges: grouped by prefix length, so an address is masked once per distinct length and
  looked up (overlapping ranges all report);
- URLs: by the normalised URL without its scheme (http and https name the same resource for
  a list), exactly or as a prefix ending at a path boundary ("/", "?");
- URL and domain literals written in text or HTML: one multi-pattern scan (`LiteralMatcher`),
  then each candidate is confirmed at host-name boundaries ("evil.com" must not match
  "notevil.com" or "evil.com.au").
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from mailtrawl.analysis.intel.values import (
    HASH_TYPES,
    IntelIndicator,
    IntelList,
    IntelType,
    canonical_ip,
)
from mailtrawl.matching.literals import LiteralMatcher, normalise_literal
from mailtrawl.matching.urls import normalise_domain, normalise_url

MAX_LABELS = 127
MAX_PATH_PREFIXES = 64
# Text confirmation bounds: a hostile body cannot make us walk every occurrence of every literal.
MAX_LITERALS_CONFIRMED = 200
MAX_OCCURRENCES_CHECKED = 1_000


@dataclass(frozen=True, slots=True)
class IntelHit:
    """A listed indicator that matched, and the list it is on."""

    list_name: str
    indicator: IntelIndicator


@dataclass(frozen=True, slots=True)
class LiteralHit:
    """A listed URL or domain written in a text; `literal` is the form that was found."""

    hit: IntelHit
    literal: str


@dataclass(frozen=True, slots=True)
class _Literal:
    folded: str
    hits: tuple[IntelHit, ...]
    is_domain: bool


class IntelIndex:
    """Lookups over all lists at once; build it once per change of the lists."""

    def __init__(self, lists: Iterable[IntelList], *, literal_backend: str | None = None) -> None:
        self.list_names: tuple[str, ...] = ()
        self._hashes: dict[str, list[IntelHit]] = {}
        self._domains: dict[str, list[IntelHit]] = {}
        self._ips: dict[str, list[IntelHit]] = {}
        self._emails: dict[str, list[IntelHit]] = {}
        self._urls: dict[str, list[IntelHit]] = {}
        # version -> prefix length -> network address as int -> hits
        self._networks: dict[int, dict[int, dict[int, list[IntelHit]]]] = {4: {}, 6: {}}
        self._size = 0
        names: list[str] = []
        for intel_list in lists:
            names.append(intel_list.name)
            for indicator in intel_list.indicators:
                self._add(IntelHit(intel_list.name, indicator))
        self.list_names = tuple(names)
        self._literals, self._matcher = self._build_literals(literal_backend)

    def __len__(self) -> int:
        return self._size

    def _add(self, hit: IntelHit) -> None:
        kind, value = hit.indicator.type, hit.indicator.value
        self._size += 1
        if kind in HASH_TYPES:
            self._hashes.setdefault(value, []).append(hit)
        elif kind is IntelType.DOMAIN:
            self._domains.setdefault(value, []).append(hit)
        elif kind is IntelType.IP:
            self._ips.setdefault(value, []).append(hit)
        elif kind is IntelType.EMAIL:
            self._emails.setdefault(value, []).append(hit)
        elif kind is IntelType.URL:
            self._urls.setdefault(_url_key(value), []).append(hit)
        elif kind is IntelType.CIDR:
            network = ipaddress.ip_network(value)
            by_length = self._networks[network.version].setdefault(network.prefixlen, {})
            by_length.setdefault(int(network.network_address), []).append(hit)

    def _build_literals(self, backend: str | None) -> tuple[list[_Literal], LiteralMatcher | None]:
        literals: dict[str, _Literal] = {}
        for domain, hits in self._domains.items():
            for form in _domain_forms(domain):
                _merge(literals, form, hits, is_domain=True)
        for key, hits in self._urls.items():
            # A site-root URL is written in text as its bare host name.
            _merge(literals, key.removesuffix("/") if key.count("/") == 1 else key, hits, False)
        ordered = list(literals.values())
        if not ordered:
            return ordered, None
        return ordered, LiteralMatcher([item.folded for item in ordered], backend=backend)

    # Lookups -----------------------------------------------------------------------------------

    def match_hash(self, digest: str) -> tuple[IntelHit, ...]:
        """Lists holding this hex digest (any algorithm)."""
        return tuple(self._hashes.get(digest.strip().lower(), ()))

    def match_domain(self, host: str) -> tuple[IntelHit, ...]:
        """Lists holding this host name or a domain it belongs to."""
        if not self._domains or not host:
            return ()
        labels = normalise_domain(host).split(".")[-MAX_LABELS:]
        found: list[IntelHit] = []
        for start in range(len(labels)):
            found.extend(self._domains.get(".".join(labels[start:]), ()))
        return tuple(found)

    def match_ip(self, address: str) -> tuple[IntelHit, ...]:
        """Lists holding this address, or a CIDR range containing it."""
        canonical = canonical_ip(address)
        if canonical is None:
            return ()
        found = list(self._ips.get(canonical, ()))
        ip = ipaddress.ip_address(canonical)
        bits = ip.max_prefixlen
        number = int(ip)
        for length, networks in self._networks[ip.version].items():
            masked = (number >> (bits - length)) << (bits - length) if length else 0
            found.extend(networks.get(masked, ()))
        return tuple(found)

    def match_email(self, address: str) -> tuple[IntelHit, ...]:
        """Lists holding this e-mail address (compared lower-case, punycode domain)."""
        local, at, domain = address.strip().rpartition("@")
        if not at:
            return ()
        return tuple(self._emails.get(f"{local.lower()}@{normalise_domain(domain)}", ()))

    def match_url(self, url: str) -> tuple[IntelHit, ...]:
        """Lists holding this URL exactly, or a URL it extends at a "/" or "?" boundary."""
        if not self._urls:
            return ()
        normalised = normalise_url(url)
        if normalised is None:
            return ()
        key = _url_key(normalised)
        found: list[IntelHit] = []
        for candidate in dict.fromkeys(_url_prefixes(key)):
            found.extend(self._urls.get(candidate, ()))
        return tuple(found)

    def match_text(self, text: str) -> list[LiteralHit]:
        """Listed domains and URLs written in `text`, each confirmed at host-name boundaries."""
        if self._matcher is None or not text:
            return []
        found = sorted(self._matcher.find(text))[:MAX_LITERALS_CONFIRMED]
        if not found:
            return []
        folded_text = normalise_literal(text)
        hits: list[LiteralHit] = []
        for index in found:
            literal = self._literals[index]
            if _occurs_at_boundary(folded_text, literal.folded, literal.is_domain):
                hits.extend(LiteralHit(hit, literal.folded) for hit in literal.hits)
        return hits


def _merge(literals: dict[str, _Literal], form: str, hits: list[IntelHit], is_domain: bool) -> None:
    folded = normalise_literal(form).strip()
    if not folded:
        return
    known = literals.get(folded)
    if known is None:
        literals[folded] = _Literal(folded, tuple(hits), is_domain)
    else:
        literals[folded] = _Literal(folded, known.hits + tuple(hits), known.is_domain or is_domain)


def _domain_forms(domain: str) -> list[str]:
    """The punycode form and, for IDNs, the Unicode form people read and write."""
    forms = [domain]
    if "xn--" in domain:
        with contextlib.suppress(UnicodeError):
            forms.append(domain.encode("ascii").decode("idna"))
    return forms


def _url_key(url: str) -> str:
    return url.partition("://")[2]


def _url_prefixes(key: str) -> list[str]:
    """The key itself and every prefix of it a listed URL may be: at "?" and at each "/"."""
    candidates = [key]
    path_and_query = key.partition("?")
    if path_and_query[1]:
        candidates.append(path_and_query[0])
    path = path_and_query[0]
    first_slash = path.find("/")
    if first_slash < 0:
        return candidates
    slash = first_slash
    count = 0
    while slash >= 0 and count < MAX_PATH_PREFIXES:
        candidates.append(path[: slash + 1])  # ".../dir/" as listed
        if slash > first_slash:
            candidates.append(path[:slash])  # ".../dir" as listed, continuing with "/"
        slash = path.find("/", slash + 1)
        count += 1
    return candidates


def _occurs_at_boundary(text: str, literal: str, is_domain: bool) -> bool:
    start = text.find(literal)
    checked = 0
    while start >= 0 and checked < MAX_OCCURRENCES_CHECKED:
        end = start + len(literal)
        if _starts_cleanly(text, start, is_domain) and _ends_cleanly(text, end):
            return True
        start = text.find(literal, start + 1)
        checked += 1
    return False


def _starts_cleanly(text: str, start: int, is_domain: bool) -> bool:
    if start == 0:
        return True
    before = text[start - 1]
    if before == ".":
        return is_domain  # a subdomain of a listed domain; another host for a listed URL
    return not (before.isalnum() or before in "-_")


def _ends_cleanly(text: str, end: int) -> bool:
    if end >= len(text):
        return True
    after = text[end]
    if after == ".":
        # "evil.com." ends a sentence; "evil.com.au" is another domain.
        following = text[end + 1 : end + 2]
        return not following or not (following.isalnum() or following in "-_")
    return not (after.isalnum() or after in "-_%")
