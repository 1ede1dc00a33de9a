"""Lookalike and homoglyph domains of the organisation's own domains and of common brands, in
the sender's addresses and in links. The real domains are never flagged (see `domains`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mailtrawl.analysis.domains import BRANDS, Lookalike, find_lookalike
from mailtrawl.analysis.engines.base import indicator
from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict

NAME = "lookalike"
MAX_HOSTS = 300

# (score, verdict) by what is imitated and how.
_OWN = {
    "homoglyph": (80, Verdict.PHISHING),
    "other_suffix": (70, Verdict.PHISHING),
    "edit_distance": (70, Verdict.PHISHING),
    "embedded": (55, Verdict.SUSPICIOUS),
}
_BRAND = {
    "homoglyph": (70, Verdict.PHISHING),
    "edit_distance": (55, Verdict.SUSPICIOUS),
    "embedded": (45, Verdict.SUSPICIOUS),
}


class LookalikeDomainEngine:
    """Flags domains that imitate your own domains or well-known brands (offline)."""

    name = NAME
    online = False

    def __init__(self, brands: dict[str, tuple[str, ...]] | None = None) -> None:
        self.brands = BRANDS if brands is None else brands

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        return list(self.indicators(report, context))

    def indicators(self, report: ParsedReport, context: AnalysisContext) -> Iterator[Indicator]:
        seen: set[str] = set()
        for host, where, value in _hosts(report):
            if host in seen:
                continue
            seen.add(host)
            if len(seen) > MAX_HOSTS:
                break
            found = find_lookalike(host, context.own_domains, brands=self.brands)
            if found is not None:
                yield _finding(found, where, value)


def _hosts(report: ParsedReport) -> Iterator[tuple[str, str, str]]:
    """(host, where it was seen, the value it concerns): sender addresses first, then links."""
    addresses = [("From", report.sender.address)]
    addresses += [("Reply-To", a.address) for a in report.reply_to]
    if report.return_path:
        addresses.append(("Return-Path", report.return_path))
    for where, address in addresses:
        _, at, host = address.rpartition("@")
        if at and host:
            yield host.lower(), f"the {where} address {address}", address
    for url in report.urls:
        if url.host:
            yield url.host, f"a link to {url.url[:200]}", url.url


def _finding(found: Lookalike, where: str, value: str) -> Indicator:
    own = found.own
    score, verdict = (_OWN if own else _BRAND).get(found.how, (40, Verdict.SUSPICIOUS))
    if where.startswith("the From") and not own:
        score += 10  # a brand impersonated in the sender's own address
    kind = f"lookalike.{'own_domain' if own else 'brand'}.{found.how}"
    return indicator(NAME, kind, verdict, score, f"{found.detail}, in {where}", value)
