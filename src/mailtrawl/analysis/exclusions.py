"""Exclusions: values an organisation trusts, whose findings analysis suppresses.

- domains: `example.com` (the domain and its subdomains) or a glob (`*.example.com`,
  `mail?.example.*`), matched against hosts, address domains and registrable domains;
- URLs: globs over the normalised URL (`https://example.com/safe/*`);
- IPs: addresses or CIDR ranges (`203.0.113.0/24`);
- attachment extensions: `pdf`, `.xlsx`.

Globs are compiled to RE2 by `matching.attachments.compile_glob` (never `fnmatch`, whose
regexes backtrack). `filter_report` drops excluded links, attachments and addresses from a
report before the engines see it; `suppresses` drops any indicator whose value is excluded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from mailtrawl.analysis.domains import is_ip, registrable_domain
from mailtrawl.analysis.model import Indicator, ParsedReport
from mailtrawl.matching.attachments import Glob, compile_glob, extension
from mailtrawl.matching.received import IPNetwork, ip_matches, parse_ip_spec
from mailtrawl.matching.urls import host_in_domain, normalise_url, url_host


@dataclass(frozen=True)
class Exclusions:
    """Trusted domains, URLs, IP ranges and attachment extensions; invalid entries raise
    ValueError when the object is built, with the entry named."""

    domains: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    _domain_globs: tuple[Glob, ...] = field(init=False, repr=False, compare=False)
    _plain_domains: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _url_globs: tuple[Glob, ...] = field(init=False, repr=False, compare=False)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)
    _extensions: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        globs = [d.strip().lower() for d in self.domains if any(c in d for c in "*?[")]
        plain = [
            d.strip().lower().rstrip(".") for d in self.domains if d.strip() and d not in globs
        ]
        set_ = object.__setattr__  # frozen: the compiled forms are set once here
        set_(self, "_domain_globs", tuple(compile_glob(g) for g in globs))
        set_(self, "_plain_domains", tuple(plain))
        set_(self, "_url_globs", tuple(compile_glob(u.strip()) for u in self.urls if u.strip()))
        set_(self, "_networks", tuple(parse_ip_spec(ip) for ip in self.ips if ip.strip()))
        set_(
            self,
            "_extensions",
            frozenset(e.strip().lower().lstrip(".") for e in self.extensions if e.strip()),
        )

    @property
    def empty(self) -> bool:
        return not (self.domains or self.urls or self.ips or self.extensions)

    def domain_excluded(self, host: str) -> bool:
        host = host.strip().lower().rstrip(".")
        if not host:
            return False
        if any(host_in_domain(host, plain) for plain in self._plain_domains):
            return True
        domain = registrable_domain(host)
        return any(glob.matches(host) or glob.matches(domain) for glob in self._domain_globs)

    def url_excluded(self, url: str) -> bool:
        normalised = normalise_url(url) or url
        if any(glob.matches(normalised) or glob.matches(url) for glob in self._url_globs):
            return True
        host = url_host(url)
        return host is not None and (self.domain_excluded(host) or self.ip_excluded(host))

    def ip_excluded(self, ip: str) -> bool:
        return any(ip_matches(ip, str(network)) for network in self._networks)

    def extension_excluded(self, name: str) -> bool:
        return bool(self._extensions) and extension(name) in self._extensions

    def value_excluded(self, value: str, *, attachment: bool = False) -> bool:
        """Whether an indicator's value (URL, address, domain, IP or file name) is excluded."""
        value = value.strip()
        if not value:
            return False
        if is_ip(value):
            return self.ip_excluded(value)
        if "://" in value or value[:4].lower() == "www.":
            return self.url_excluded(value)
        if "@" in value:
            return self.domain_excluded(value.rpartition("@")[2])
        if attachment and self.extension_excluded(value):
            return True
        return "." in value and " " not in value and self.domain_excluded(value)

    def suppresses(self, found: Indicator) -> bool:
        """Whether `found` concerns an excluded value."""
        if found.value is None or self.empty:
            return False
        return self.value_excluded(found.value, attachment=found.kind.startswith("attachment."))

    def filter_indicators(self, indicators: Iterable[Indicator]) -> list[Indicator]:
        return [found for found in indicators if not self.suppresses(found)]

    def filter_report(self, report: ParsedReport) -> ParsedReport:
        """The report without excluded links, attachments, domains and IPs."""
        if self.empty:
            return report
        return replace(
            report,
            urls=tuple(u for u in report.urls if not (u.host and self.url_excluded(u.url))),
            attachments=tuple(
                a for a in report.attachments if not (a.name and self.extension_excluded(a.name))
            ),
            domains=tuple(d for d in report.domains if not self.domain_excluded(d)),
            ips=tuple(ip for ip in report.ips if not self.ip_excluded(ip)),
        )
