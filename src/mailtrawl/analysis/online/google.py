"""Google Safe Browsing v4 (Lookup API) and Google Cloud Web Risk: is a link on Google's lists?

Safe Browsing: `POST {base}/threatMatches:find?key=...` with up to 500 URLs in `threatInfo`
(threatTypes, platformTypes ANY_PLATFORM, threatEntryTypes URL); the answer lists `matches[]`
(`threatType`, `threat.url`, `cacheDuration`) and is `{}` when nothing matched. Google limits
the Lookup API to non-commercial use; commercial deployments use Web Risk.

Web Risk: `GET {base}/uris:search?threatTypes=...&uri=...&key=...`, one URL per request; the
answer is `{"threat": {"threatTypes": [...], "expireTime": ...}}`, or `{}` when not listed.
Neither answer may be cached past the time Google gives, which the cache honours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx

from mailtrawl import __version__
from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict
from mailtrawl.analysis.online.base import (
    Clock,
    Lookup,
    LookupCache,
    LookupFailure,
    LookupResult,
    LookupRun,
    OnlineEngine,
    report_urls,
)
from mailtrawl.analysis.online.config import SafeBrowsingConfig, WebRiskConfig

THREAT_VERDICTS: dict[str, tuple[Verdict, int]] = {
    "MALWARE": (Verdict.MALICIOUS, 90),
    "SOCIAL_ENGINEERING": (Verdict.PHISHING, 85),
    "SOCIAL_ENGINEERING_EXTENDED_COVERAGE": (Verdict.PHISHING, 70),
    "UNWANTED_SOFTWARE": (Verdict.SUSPICIOUS, 60),
    "POTENTIALLY_HARMFUL_APPLICATION": (Verdict.SUSPICIOUS, 60),
}
_THREAT_NAMES = {
    "MALWARE": "malware",
    "SOCIAL_ENGINEERING": "social engineering (phishing)",
    "SOCIAL_ENGINEERING_EXTENDED_COVERAGE": "social engineering (extended coverage)",
    "UNWANTED_SOFTWARE": "unwanted software",
    "POTENTIALLY_HARMFUL_APPLICATION": "a potentially harmful application",
}
MAX_SAFE_BROWSING_BATCH = 500  # the API's limit of threat entries per request


def _key_failure(status: int, document: Any) -> LookupFailure | None:
    """Google answers an invalid key with 400 INVALID_ARGUMENT, not 401."""
    error = document.get("error") if isinstance(document, dict) else None
    if status == 400 and isinstance(error, dict) and "API key" in str(error.get("message", "")):
        return LookupFailure("auth", "HTTP 400 API key not valid", stop=True)
    return None


def _finding(engine: str, title: str, url: str, threat: str) -> Indicator:
    verdict, score = THREAT_VERDICTS.get(threat, (Verdict.SUSPICIOUS, 50))
    return Indicator(
        engine,
        f"{engine}.{threat.lower()}",
        verdict,
        score,
        f"{title} lists {url} as {_THREAT_NAMES.get(threat, threat.lower())}.",
        url,
    )


class SafeBrowsingEngine(OnlineEngine):
    """Checks every link of a report against Safe Browsing in one request."""

    name = "safe_browsing"
    title = "Google Safe Browsing"

    def __init__(
        self,
        config: SafeBrowsingConfig,
        client: httpx.AsyncClient,
        *,
        cache: LookupCache | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        if config.api_key is None:
            raise ValueError("Safe Browsing needs an API key")
        super().__init__(config, cache=cache, clock=clock, sleep=sleep)
        self.sb = config
        self.client = client
        self.batch_size = min(MAX_SAFE_BROWSING_BATCH, config.max_lookups_per_report)

    def lookups(self, report: ParsedReport, context: AnalysisContext) -> list[Lookup]:
        return [Lookup("url", url) for url in report_urls(report, context)]

    async def lookup_batch(self, items: list[Lookup], run: LookupRun) -> dict[str, LookupResult]:
        assert self.sb.api_key is not None
        body = {
            "client": {"clientId": self.sb.client_id, "clientVersion": __version__},
            "threatInfo": {
                "threatTypes": list(self.sb.threat_types),
                "platformTypes": ["ANY_PLATFORM"],
                "threatEntryTypes": ["URL"],
                "threatEntries": [{"url": item.value} for item in items],
            },
        }
        status, document, _ = await self.request_json(
            self.client,
            run,
            "POST",
            f"{self.sb.base_url.rstrip('/')}/threatMatches:find",
            params=(("key", self.sb.api_key.get_secret_value()),),
            json=body,
        )
        failure = _key_failure(status, document)
        if failure is not None:
            raise failure
        if status != 200 or not isinstance(document, dict):
            raise LookupFailure("service", f"HTTP {status}")
        matches = document.get("matches", [])
        if not isinstance(matches, list):
            raise LookupFailure("response", "'matches' is not a list")
        found: dict[str, list[Indicator]] = {}
        ttls: dict[str, float] = {}
        for match in matches:
            if not isinstance(match, dict):
                continue
            threat = match.get("threat")
            url = threat.get("url") if isinstance(threat, dict) else None
            threat_type = match.get("threatType")
            if not isinstance(url, str) or not isinstance(threat_type, str):
                continue
            found.setdefault(url, []).append(_finding(self.name, self.title, url, threat_type))
            duration = _duration(match.get("cacheDuration"))
            if duration is not None:
                ttls[url] = min(ttls.get(url, duration), duration)
        return {
            item.key: LookupResult(tuple(found.get(item.value, ())), ttls.get(item.value))
            for item in items
        }


class WebRiskEngine(OnlineEngine):
    """Checks each link of a report with Web Risk `uris:search`."""

    name = "web_risk"
    title = "Google Web Risk"

    def __init__(
        self,
        config: WebRiskConfig,
        client: httpx.AsyncClient,
        *,
        cache: LookupCache | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        if config.api_key is None:
            raise ValueError("Web Risk needs an API key")
        super().__init__(config, cache=cache, clock=clock, sleep=sleep)
        self.wr = config
        self.client = client

    def lookups(self, report: ParsedReport, context: AnalysisContext) -> list[Lookup]:
        return [Lookup("url", url) for url in report_urls(report, context)]

    async def lookup(self, item: Lookup, run: LookupRun) -> LookupResult:
        assert self.wr.api_key is not None
        params = (
            *(("threatTypes", threat) for threat in self.wr.threat_types),
            ("uri", item.value),
            ("key", self.wr.api_key.get_secret_value()),
        )
        status, document, _ = await self.request_json(
            self.client, run, "GET", f"{self.wr.base_url.rstrip('/')}/uris:search", params=params
        )
        failure = _key_failure(status, document)
        if failure is not None:
            raise failure
        if status != 200:
            raise LookupFailure("service", f"HTTP {status}")
        threat = document.get("threat") if isinstance(document, dict) else None
        if not isinstance(threat, dict):
            return LookupResult()
        types = threat.get("threatTypes", [])
        findings = tuple(
            _finding(self.name, self.title, item.value, threat_type)
            for threat_type in (types if isinstance(types, list) else [])
            if isinstance(threat_type, str)
        )
        return LookupResult(findings, _until(threat.get("expireTime")))


def _duration(value: object) -> float | None:
    """Seconds of a protobuf Duration in JSON ("300s", "1.5s")."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(0.0, float(value[:-1]))
    except ValueError:
        return None


def _until(value: object) -> float | None:
    """Seconds from now until an RFC 3339 timestamp (0 if already past)."""
    if not isinstance(value, str):
        return None
    text = value.replace("Z", "+00:00")
    # Python before 3.11.? rejects more than six fractional digits; Google sends nine.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
