"""Spamhaus DBL (domains) and ZEN (addresses) over DNS.

    <domain>.dbl.spamhaus.org           <reversed address>.zen.spamhaus.org
    <domain>.<key>.dbl.dq.spamhaus.net  <reversed address>.<key>.zen.dq.spamhaus.net  (DQS)

An A record of 127.0.1.x (DBL) or 127.0.0.x (ZEN) is a listing; no such name means "not
listed". 127.255.255.252/254/255 are errors (a typo in the zone, a query through a public
resolver, too many queries), never listings: the engine reports them and stops querying.
IPv6 addresses are written as reversed nibbles. Private and reserved addresses are not sent.

DNS goes through the small `DnsResolver` interface: `DnspythonResolver` in production,
any object with the same method in tests.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict
from mailtrawl.analysis.online.base import (
    Clock,
    Lookup,
    LookupCache,
    LookupFailure,
    LookupResult,
    LookupRun,
    OnlineEngine,
    is_own,
    report_domains,
)
from mailtrawl.analysis.online.config import SpamhausConfig

DBL_CODES: dict[str, tuple[Verdict, int, str]] = {
    "127.0.1.2": (Verdict.SUSPICIOUS, 60, "a spam domain"),
    "127.0.1.4": (Verdict.PHISHING, 85, "a phishing domain"),
    "127.0.1.5": (Verdict.MALICIOUS, 90, "a malware domain"),
    "127.0.1.6": (Verdict.MALICIOUS, 90, "a botnet command-and-control domain"),
    "127.0.1.102": (Verdict.SUSPICIOUS, 30, "an abused legitimate domain (spam)"),
    "127.0.1.103": (Verdict.SUSPICIOUS, 40, "an abused legitimate domain (redirector)"),
    "127.0.1.104": (Verdict.PHISHING, 60, "an abused legitimate domain (phishing)"),
    "127.0.1.105": (Verdict.MALICIOUS, 60, "an abused legitimate domain (malware)"),
    "127.0.1.106": (Verdict.MALICIOUS, 60, "an abused legitimate domain (botnet C&C)"),
}
ZEN_CODES: dict[str, tuple[Verdict, int, str]] = {
    "127.0.0.2": (Verdict.SUSPICIOUS, 60, "SBL: a spam source or spam operation"),
    "127.0.0.3": (Verdict.SUSPICIOUS, 50, "CSS: a snowshoe spam source"),
    "127.0.0.4": (Verdict.SUSPICIOUS, 60, "XBL: an exploited or infected host"),
    "127.0.0.5": (Verdict.SUSPICIOUS, 60, "XBL: an exploited or infected host"),
    "127.0.0.6": (Verdict.SUSPICIOUS, 60, "XBL: an exploited or infected host"),
    "127.0.0.7": (Verdict.SUSPICIOUS, 60, "XBL: an exploited or infected host"),
    "127.0.0.9": (Verdict.SUSPICIOUS, 70, "DROP: a hijacked or criminal network"),
    # An end-user address sending directly; normal for the first hop of webmail, so weak.
    "127.0.0.10": (Verdict.SUSPICIOUS, 5, "PBL: an end-user address not meant to send mail"),
    "127.0.0.11": (Verdict.SUSPICIOUS, 5, "PBL: an end-user address not meant to send mail"),
}
ERROR_CODES = {
    "127.255.255.252": "the query was malformed (a typo in the zone name)",
    "127.255.255.254": "the query came through a public or open resolver, which Spamhaus refuses",
    "127.255.255.255": "too many queries from this resolver",
}


class DnsError(Exception):
    """A DNS query failed (timeout, SERVFAIL, no reachable server) rather than saying no."""


class DnsResolver(Protocol):
    """The one DNS question the engine asks."""

    async def resolve_a(self, name: str, *, timeout_s: float) -> tuple[str, ...]:
        """The A records of `name`; () when it does not exist or has none; DnsError on failure."""
        ...


class DnspythonResolver:
    """`DnsResolver` over dnspython's async resolver (the system's nameservers by default)."""

    def __init__(self, nameservers: tuple[str, ...] = (), *, port: int = 53) -> None:
        self.nameservers = nameservers
        self.port = port
        self._resolver: Any = None

    async def resolve_a(self, name: str, *, timeout_s: float) -> tuple[str, ...]:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        if self._resolver is None:  # reads /etc/resolv.conf: not at import, not at construction
            self._resolver = dns.asyncresolver.Resolver()
            if self.nameservers:
                self._resolver.nameservers = list(self.nameservers)
            self._resolver.port = self.port
        try:
            answer = await self._resolver.resolve(name, "A", lifetime=timeout_s)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return ()
        except dns.exception.DNSException as exc:
            raise DnsError(type(exc).__name__) from None
        return tuple(str(record.address) for record in answer)


def reverse_ip(address: str) -> str | None:
    """The DNSBL query label of an address ("d.c.b.a", or nibbles for IPv6); None if not global."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(ip.exploded.replace(":", "")))


class SpamhausEngine(OnlineEngine):
    """Looks link and sender domains up in the DBL and relay addresses in ZEN."""

    name = "spamhaus"
    title = "Spamhaus"

    def __init__(
        self,
        config: SpamhausConfig,
        resolver: DnsResolver | None = None,
        *,
        cache: LookupCache | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        super().__init__(config, cache=cache, clock=clock, sleep=sleep)
        self.sh = config
        self.resolver: DnsResolver = resolver or DnspythonResolver()
        key = config.api_key.get_secret_value().strip() if config.api_key else ""
        self.dbl_zone = f"{key}.dbl.dq.spamhaus.net" if key else "dbl.spamhaus.org"
        self.zen_zone = f"{key}.zen.dq.spamhaus.net" if key else "zen.spamhaus.org"

    def lookups(self, report: ParsedReport, context: AnalysisContext) -> list[Lookup]:
        items: list[Lookup] = []
        if self.sh.check_ips:
            relays = [report.originating_ip] if report.originating_ip else []
            relays.extend(report.ips)
            items.extend(Lookup("ip", ip) for ip in relays if reverse_ip(ip) is not None)
        if self.sh.check_domains:
            # The DBL lists abused host names as well as domains: ask for both.
            hosts = [u.host for u in report.urls if not is_own(u.host, context)]
            sender = report.sender.address.rpartition("@")[2]
            if sender and not is_own(sender, context):
                hosts.append(sender)
            hosts.extend(report_domains(report, context))
            items.extend(
                Lookup("domain", host.lower().rstrip("."))
                for host in hosts
                if host and reverse_ip(host) is None and "." in host and ":" not in host
            )
        return items

    async def lookup(self, item: Lookup, run: LookupRun) -> LookupResult:
        if item.kind == "ip":
            label, zone, codes, list_name = reverse_ip(item.value), self.zen_zone, ZEN_CODES, "ZEN"
        else:
            label, zone, codes, list_name = item.value, self.dbl_zone, DBL_CODES, "DBL"
        if not label:
            return LookupResult()
        await run.permit()
        try:
            answers = await self.resolver.resolve_a(f"{label}.{zone}", timeout_s=self.sh.timeout_s)
        except DnsError as exc:
            raise LookupFailure("network", f"DNS {exc}") from None
        findings: list[Indicator] = []
        for answer in answers:
            if answer in ERROR_CODES:
                raise LookupFailure("service", f"{answer}: {ERROR_CODES[answer]}", stop=True)
            known = codes.get(answer)
            if known is None:
                if not answer.startswith("127."):
                    continue  # a wildcarding resolver's answer, not Spamhaus'
                known = (Verdict.SUSPICIOUS, 40, f"listed with code {answer}")
            verdict, score, meaning = known
            findings.append(
                Indicator(
                    self.name,
                    f"spamhaus.{list_name.lower()}",
                    verdict,
                    score,
                    f"Spamhaus {list_name} lists {item.value} ({answer}): {meaning}.",
                    item.value,
                )
            )
        return LookupResult(tuple(findings))
