"""VirusTotal API v3: attachment hashes, URLs and domains (reports only, nothing uploaded).

    GET {base}/files/{sha256}        GET {base}/urls/{url id}        GET {base}/domains/{domain}

with the key in the `x-apikey` header. A URL's id is its unpadded URL-safe base64. The answer's
`data.attributes.last_analysis_stats` counts engines per category (malicious, suspicious,
harmless, undetected); 404 `NotFoundError` means VirusTotal has never seen it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict
from mailtrawl.analysis.online.base import (
    Clock,
    Lookup,
    LookupCache,
    LookupFailure,
    LookupResult,
    LookupRun,
    OnlineEngine,
    report_domains,
    report_urls,
)
from mailtrawl.analysis.online.config import VirusTotalConfig

# (verdict, score) when the malicious count reaches the threshold, per kind of lookup.
_LISTED = {
    "file": (Verdict.MALICIOUS, 90),
    "url": (Verdict.PHISHING, 80),
    "domain": (Verdict.PHISHING, 70),
}
_FLAGGED_SCORE = {"file": 40, "url": 40, "domain": 30}  # a few engines: suspicious only
_PATHS = {"file": "files", "url": "urls", "domain": "domains"}


def url_identifier(url: str) -> str:
    """VirusTotal's id for a URL: unpadded URL-safe base64 of the URL as written."""
    return base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


class VirusTotalEngine(OnlineEngine):
    """Looks attachments (by SHA-256), links and domains up in VirusTotal."""

    name = "virustotal"
    title = "VirusTotal"

    def __init__(
        self,
        config: VirusTotalConfig,
        client: httpx.AsyncClient,
        *,
        cache: LookupCache | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        if config.api_key is None:
            raise ValueError("VirusTotal needs an API key")
        super().__init__(config, cache=cache, clock=clock, sleep=sleep)
        self.vt = config
        self.client = client

    def lookups(self, report: ParsedReport, context: AnalysisContext) -> list[Lookup]:
        items: list[Lookup] = []
        if self.vt.check_files:
            items.extend(Lookup("file", a.sha256.lower()) for a in report.attachments if a.sha256)
        if self.vt.check_urls:
            items.extend(Lookup("url", url) for url in report_urls(report, context))
        if self.vt.check_domains:
            items.extend(Lookup("domain", domain) for domain in report_domains(report, context))
        return items

    async def lookup(self, item: Lookup, run: LookupRun) -> LookupResult:
        subject = url_identifier(item.value) if item.kind == "url" else item.value
        assert self.vt.api_key is not None
        status, document, _ = await self.request_json(
            self.client,
            run,
            "GET",
            f"{self.vt.base_url.rstrip('/')}/{_PATHS[item.kind]}/{subject}",
            headers={"x-apikey": self.vt.api_key.get_secret_value(), "accept": "application/json"},
        )
        if status == 404:
            if item.kind == "file":
                return LookupResult((self._unknown(item),))
            return LookupResult()
        if status != 200:
            raise LookupFailure("service", f"HTTP {status}")
        stats = _stats(document)
        if stats is None:
            raise LookupFailure("response", "no data.attributes.last_analysis_stats")
        return LookupResult((self._finding(item, stats),))

    def _finding(self, item: Lookup, stats: dict[str, int]) -> Indicator:
        malicious, suspicious = stats.get("malicious", 0), stats.get("suspicious", 0)
        total = sum(stats.values())
        what = _describe(item)
        counts = f"{malicious} of {total} engines call it malicious, {suspicious} suspicious"
        if malicious >= self.vt.malicious_threshold:
            verdict, base = _LISTED[item.kind]
            score = min(100, base + malicious // 5)
            return Indicator(
                self.name,
                f"virustotal.{item.kind}",
                verdict,
                score,
                f"VirusTotal: {what}: {counts}.",
                item.value,
            )
        if malicious or suspicious:
            return Indicator(
                self.name,
                f"virustotal.{item.kind}",
                Verdict.SUSPICIOUS,
                _FLAGGED_SCORE[item.kind],
                f"VirusTotal: {what}: {counts}.",
                item.value,
            )
        return Indicator(
            self.name,
            f"virustotal.{item.kind}",
            Verdict.UNDETECTED,
            0,
            f"VirusTotal: {what}: no engine flags it ({total} engines).",
            item.value,
        )

    def _unknown(self, item: Lookup) -> Indicator:
        return Indicator(
            self.name,
            "virustotal.file_unknown",
            Verdict.UNDETECTED,
            0,
            f"VirusTotal has never seen the attachment with SHA-256 {item.value}.",
            item.value,
        )


def _describe(item: Lookup) -> str:
    if item.kind == "file":
        return f"attachment SHA-256 {item.value}"
    return f"{item.kind} {item.value}"


def _stats(document: Any) -> dict[str, int] | None:
    try:
        stats = document["data"]["attributes"]["last_analysis_stats"]
    except (KeyError, TypeError):
        return None
    if not isinstance(stats, dict):
        return None
    return {
        str(name): count
        for name, count in stats.items()
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0
    }
