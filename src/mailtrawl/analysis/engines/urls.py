"""URL heuristics: raw IP hosts, punycode, shorteners, suspicious TLDs, credential-harvesting
paths, data: URIs, link text naming another site, redirect chains, and links in attachments.

Each kind of finding is one indicator however many links share it (the evidence gives the
count and the first link), so a message with fifty tracking links does not score fifty times.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote

import re2

from mailtrawl.analysis.domains import is_ip, registrable_domain
from mailtrawl.analysis.engines.base import indicator, shorten
from mailtrawl.analysis.model import (
    AnalysisContext,
    ExtractedUrl,
    Indicator,
    ParsedReport,
    Verdict,
)
from mailtrawl.matching.urls import url_host

NAME = "urls"
MAX_URLS = 1_000

SHORTENERS = frozenset(
    {
        "bit.ly", "bitly.com", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly",
        "rebrand.ly", "cutt.ly", "shorturl.at", "rb.gy", "t.ly", "tiny.cc", "bl.ink", "s.id",
        "v.gd", "qrco.de", "lnkd.in", "shorte.st", "adf.ly", "tiny.one", "urlz.fr", "x.gd",
        "shorturl.com", "u.to", "clck.ru", "soo.gd", "t2m.io", "short.gy", "surl.li", "gg.gg",
    }
)  # fmt: skip
SUSPICIOUS_TLDS = frozenset(
    {
        "tk", "ml", "ga", "cf", "gq", "xyz", "top", "zip", "mov", "click", "country", "kim",
        "work", "support", "rest", "cam", "icu", "buzz", "monster", "sbs", "cfd", "quest",
        "lol", "fit", "loan", "men", "date", "racing", "download", "review", "stream", "gdn",
        "bid", "win", "party", "science", "trade", "accountant", "cricket", "faith", "su",
        "beauty", "hair", "skin", "makeup", "boats", "autos", "bond", "lat", "ink", "pw",
    }
)  # fmt: skip
_CREDENTIAL_PATH = re2.compile(
    r"(?i)(?:log-?in|log-?on|sign-?in|signon|verif|account|passw|wp-admin|wp-login|webscr|"
    r"auth|credential|validate|confirm|unlock|recover|reset|owa|sso|mfa|2fa|billing|banking)"
)
_CREDENTIAL_TEXT = re2.compile(
    r"(?i)\b(?:password|passcode|sign[ -]?in|log[ -]?in|verify your|confirm your|"
    r"re-?activate|unusual (?:sign-in )?activity|account (?:is |has been |will be )?"
    r"(?:suspended|locked|disabled|closed|limited)|mailbox (?:is )?(?:full|quota))\b"
)
_PASSWORD_FIELD = re2.compile(r"(?i)<input\b[^>]*\btype\s*=\s*[\"']?password")
MAX_HTML_SCAN = 5_000_000
_EMBEDDED_URL = re2.compile(r"(?i)(?:https?|ftp)(?::|%3a)(?://|%2f%2f)")


class _AddFn(Protocol):
    def __call__(
        self, kind: str, verdict: Verdict, score: int, what: str, url: str, detail: str = ""
    ) -> None: ...


@dataclass(slots=True)
class _Group:
    kind: str
    verdict: Verdict
    score: int
    what: str  # completes "a link with ...", e.g. "a raw IP address as host"
    urls: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


class UrlHeuristicsEngine:
    """Offline URL heuristics over every link in the report."""

    name = NAME
    online = False

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        return list(url_indicators(report))


class _Groups(dict[str, _Group]):
    def add(
        self, kind: str, verdict: Verdict, score: int, what: str, url: str, detail: str = ""
    ) -> None:
        group = self.setdefault(kind, _Group(kind, verdict, score, what))
        if url not in group.urls:
            group.urls.append(url)
            if detail:
                group.details.append(detail)


def url_indicators(report: ParsedReport) -> Iterator[Indicator]:
    """One indicator per kind of URL finding in `report`."""
    groups = _Groups()
    credential_context = _asks_for_credentials(report)
    for url in report.urls[:MAX_URLS]:
        _examine(url, credential_context, groups.add)
    for group in groups.values():
        count = len(group.urls)
        first = shorten(group.urls[0], 160)
        detail = f" ({group.details[0]})" if group.details else ""
        many = f"{count} links with {group.what}" if count > 1 else f"a link with {group.what}"
        yield indicator(
            NAME,
            group.kind,
            group.verdict,
            group.score,
            f"{many}: {'e.g. ' if count > 1 else ''}{first}{detail}",
            group.urls[0],
        )


def _examine(url: ExtractedUrl, credential_context: bool, add: _AddFn) -> None:
    if url.url[:5].lower() == "data:":
        add("url.data_uri", Verdict.SUSPICIOUS, 45, "a document embedded as a data: URI", url.url)
        return
    host = url.host
    if not host:
        return
    if is_ip(host):
        add("url.ip_host", Verdict.SUSPICIOUS, 35, "a raw IP address as host", url.url)
    if any(label.startswith("xn--") for label in host.split(".")):
        add("url.punycode", Verdict.SUSPICIOUS, 25, "a punycode (IDN) host name", url.url)
    domain = url.domain or registrable_domain(host)
    if domain in SHORTENERS:
        add(
            "url.shortener",
            Verdict.UNDETECTED,
            15,
            "a URL shortener hiding the target",
            url.url,
        )
    tld = host.rpartition(".")[2]
    if not is_ip(host) and tld in SUSPICIOUS_TLDS:
        add(
            "url.suspicious_tld",
            Verdict.UNDETECTED,
            15,
            f"a top-level domain common in abuse (.{tld})",
            url.url,
        )
    path = url.url.partition("://")[2].partition("/")[2]
    if path and _CREDENTIAL_PATH.search(path[:2_000]):
        if credential_context:
            add(
                "url.credential_path",
                Verdict.SUSPICIOUS,
                35,
                "a sign-in or account path, in a message asking for credentials",
                url.url,
            )
        else:
            add(
                "url.account_path",
                Verdict.UNDETECTED,
                10,
                "a sign-in or account path",
                url.url,
            )
    if url.anchor_mismatch:
        shown = shorten(url.anchor_text or "", 80)
        add(
            "url.anchor_mismatch",
            Verdict.SUSPICIOUS,
            50,
            "visible text naming another site than the target",
            url.url,
            f"the text reads {shown!r}",
        )
    if _redirects_elsewhere(url.original, host):
        add("url.redirect", Verdict.SUSPICIOUS, 20, "a redirect to another site", url.url)
    if url.source == "attachment":
        add(
            "url.in_attachment",
            Verdict.SUSPICIOUS,
            20,
            "a location inside an attachment, out of reach of link scanners",
            url.url,
        )


def _redirects_elsewhere(original: str, host: str) -> bool:
    """Whether the link carries another site's URL in it (an open redirect), beyond what a
    mail gateway's rewrite (already unwrapped into `host`) explains."""
    text = unquote(original[:4_000])
    starts = [match.start() for match in _EMBEDDED_URL.finditer(text)]
    if len(starts) < 2:
        return False
    inner = url_host(text[starts[-1] :])
    return inner is not None and registrable_domain(inner) != registrable_domain(host)


def _asks_for_credentials(report: ParsedReport) -> bool:
    """Whether the message looks like it asks the reader to sign in or give a password."""
    if report.html and _PASSWORD_FIELD.search(report.html[:MAX_HTML_SCAN]):
        return True
    return _CREDENTIAL_TEXT.search(f"{report.subject}\n{report.text[:200_000]}") is not None
