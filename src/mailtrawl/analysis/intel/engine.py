"""`IntelEngine`: the offline engine that looks a report up in the local threat-intel lists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anyio.to_thread

from mailtrawl.analysis.intel.index import IntelHit, IntelIndex
from mailtrawl.analysis.intel.values import IntelType
from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict

# Bodies larger than this are scanned in a worker thread so the event loop stays responsive.
_THREAD_THRESHOLD = 256 * 1024


@dataclass(frozen=True)
class IntelScores:
    """The verdict weight of each kind of match (0-100)."""

    hash: int = 95  # an attachment that is a known sample
    url: int = 80
    domain: int = 80
    email: int = 80
    ip_in_link: int = 80  # a link to a listed address
    ip_in_headers: int = 50  # a listed address among the relays: suspicious, not proof
    text: int = 70  # a listed domain or URL written (not linked) in the body


class IntelEngine:
    """Matches attachments, links, addresses, relays and body text against an IntelIndex."""

    online = False

    def __init__(
        self, index: IntelIndex, *, name: str = "intel", scores: IntelScores | None = None
    ) -> None:
        self.name = name
        self.index = index
        self.scores = scores or IntelScores()

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        """Indicators for every listed value found in the report (one per list entry)."""
        if len(self.index) == 0:
            return []
        body_size = len(report.text) + len(report.html or "")
        if body_size > _THREAD_THRESHOLD:
            return await anyio.to_thread.run_sync(self.match, report)
        return self.match(report)

    def match(self, report: ParsedReport) -> list[Indicator]:
        """The synchronous matching behind `analyze`."""
        found = _Findings(self.name)
        scores = self.scores
        for attachment in report.attachments:
            lists_matched: set[str] = set()  # one hash finding per attachment and list
            for algorithm in ("sha256", "sha1", "md5", "sha512"):
                digest = getattr(attachment, algorithm)
                for hit in self.index.match_hash(digest):
                    if hit.list_name in lists_matched:
                        continue
                    lists_matched.add(hit.list_name)
                    found.add(
                        hit,
                        "intel.hash",
                        Verdict.MALICIOUS,
                        scores.hash,
                        f"Attachment {attachment.name!r} has {algorithm.upper()} {digest}, "
                        f"which {_listed(hit)}.",
                        digest,
                    )
        for url in report.urls:
            for hit in self.index.match_url(url.url):
                exact = hit.indicator.value == url.url
                how = "" if exact else f" (under the listed {hit.indicator.value})"
                found.add(
                    hit,
                    "intel.url",
                    Verdict.PHISHING,
                    scores.url,
                    f"Link {url.url}{how} {_listed(hit)}.",
                    url.url,
                )
            for hit in self.index.match_ip(url.host):
                found.add(
                    hit,
                    "intel.ip",
                    Verdict.PHISHING,
                    scores.ip_in_link,
                    f"Link {url.url} points at {url.host}, which {_listed(hit)}.",
                    url.host,
                )
            for hit in self.index.match_domain(url.host):
                found.add(
                    hit,
                    "intel.domain",
                    Verdict.PHISHING,
                    scores.domain,
                    f"Link {url.url} is on {url.host}, {_within(hit, url.host)}.",
                    url.host,
                )
        for role, address in _addresses(report):
            for hit in self.index.match_email(address):
                found.add(
                    hit,
                    "intel.email",
                    Verdict.PHISHING,
                    scores.email,
                    f"The {role} address {address} {_listed(hit)}.",
                    address,
                )
            domain = address.rpartition("@")[2]
            for hit in self.index.match_domain(domain):
                found.add(
                    hit,
                    "intel.domain",
                    Verdict.PHISHING,
                    scores.domain,
                    f"The {role} address {address} is on {domain}, {_within(hit, domain)}.",
                    domain,
                )
        for domain in report.domains:
            for hit in self.index.match_domain(domain):
                found.add(
                    hit,
                    "intel.domain",
                    Verdict.PHISHING,
                    scores.domain,
                    f"The message names {domain}, {_within(hit, domain)}.",
                    domain,
                )
        for ip in _relay_ips(report):
            for hit in self.index.match_ip(ip):
                found.add(
                    hit,
                    "intel.ip",
                    Verdict.SUSPICIOUS,
                    scores.ip_in_headers,
                    f"The message passed through {ip}, which {_listed(hit)}.",
                    ip,
                )
        for part, text in (("text", report.text), ("HTML", report.html or "")):
            for literal_hit in self.index.match_text(text):
                hit = literal_hit.hit
                found.add(
                    hit,
                    "intel.text",
                    Verdict.PHISHING,
                    scores.text,
                    f"The message {part} mentions {literal_hit.literal}, and the "
                    f"{hit.indicator.type} {hit.indicator.value} {_listed(hit)}.",
                    literal_hit.literal,
                )
        return found.indicators


class _Findings:
    """One indicator per listed entry per list: the first (strongest) place it was seen."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.indicators: list[Indicator] = []
        self._seen: set[tuple[str, IntelType, str]] = set()

    def add(
        self, hit: IntelHit, kind: str, verdict: Verdict, score: int, evidence: str, value: str
    ) -> None:
        key = (hit.list_name, hit.indicator.type, hit.indicator.value)
        if key in self._seen:
            return
        self._seen.add(key)
        self.indicators.append(Indicator(self.engine, kind, verdict, score, evidence, value))


def _listed(hit: IntelHit) -> str:
    return f"is on the threat list {hit.list_name!r}{_detail(hit)}"


def _within(hit: IntelHit, host: str) -> str:
    listed = hit.indicator.value
    what = "which" if listed == host else f"within {listed}, which"
    return f"{what} {_listed(hit)}"


def _detail(hit: IntelHit) -> str:
    parts = [part for part in (hit.indicator.source, hit.indicator.description) if part]
    return f" ({': '.join(parts)})" if parts else ""


def _addresses(report: ParsedReport) -> Iterable[tuple[str, str]]:
    if report.sender.address:
        yield "sender", report.sender.address
    for reply_to in report.reply_to:
        if reply_to.address:
            yield "Reply-To", reply_to.address
    if report.return_path and "@" in report.return_path:
        yield "Return-Path", report.return_path.strip("<>").lower()


def _relay_ips(report: ParsedReport) -> list[str]:
    ips = dict.fromkeys(report.ips)
    if report.originating_ip:
        ips.setdefault(report.originating_ip, None)
    return list(ips)
