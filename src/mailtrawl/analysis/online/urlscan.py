"""urlscan.io: verdicts of existing scans of a link's domain; submitting is opt-in.

    GET  {base}/search/?q=page.domain:<domain>&size=<n>   existing public scans, newest first
    GET  {base}/result/<uuid>/                            a scan's `verdicts.overall`
    POST {base}/scan/  {"url": ..., "visibility": ...}    only with `submit` switched on

with the key in the `API-Key` header. The search asks for `page.domain` (the page the scan
started on) rather than `domain`, which also matches every page that merely loaded a resource
from that domain. Search hits carry no verdict, so the newest `results_per_lookup` results are
fetched to read `verdicts.overall.malicious` and `score`. A submission makes urlscan.io visit
the link (which can tell the attacker it was opened), so it is off by default and private.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import re2

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
)
from mailtrawl.analysis.online.config import UrlscanConfig

MAX_RESULT_BYTES = 32 * 1024 * 1024  # a full result document can run to megabytes
_DOMAIN = re2.compile(r"^[a-z0-9][a-z0-9.-]{0,252}$")
_UUID = re2.compile(r"^[0-9a-fA-F-]{36}$")


class UrlscanEngine(OnlineEngine):
    """Reads urlscan.io verdicts for the domains a report links to."""

    name = "urlscan"
    title = "urlscan.io"

    def __init__(
        self,
        config: UrlscanConfig,
        client: httpx.AsyncClient,
        *,
        cache: LookupCache | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        if config.api_key is None:
            raise ValueError("urlscan.io needs an API key")
        super().__init__(config, cache=cache, clock=clock, sleep=sleep)
        self.us = config
        self.client = client

    def lookups(self, report: ParsedReport, context: AnalysisContext) -> list[Lookup]:
        items: list[Lookup] = []
        for url in report.urls:
            domain = url.host.lower()
            if _DOMAIN.match(domain) and not is_own(domain, context):
                items.append(Lookup("domain", domain, context=url.url))
        return items

    def _headers(self) -> dict[str, str]:
        assert self.us.api_key is not None
        return {"API-Key": self.us.api_key.get_secret_value(), "accept": "application/json"}

    async def lookup(self, item: Lookup, run: LookupRun) -> LookupResult:
        base = self.us.base_url.rstrip("/")
        status, document, _ = await self.request_json(
            self.client,
            run,
            "GET",
            f"{base}/search/",
            headers=self._headers(),
            params=(("q", f"page.domain:{item.value}"), ("size", str(self.us.results_per_lookup))),
        )
        if status != 200 or not isinstance(document, dict):
            raise LookupFailure("service", f"search answered HTTP {status}")
        results = document.get("results")
        if not isinstance(results, list):
            raise LookupFailure("response", "the search answer has no results list")
        findings: list[Indicator] = []
        seen = 0
        for result in results[: self.us.results_per_lookup]:
            if not isinstance(result, dict):
                continue
            uuid = str(result.get("_id", ""))
            if not _UUID.match(uuid):
                continue
            seen += 1
            overall = _overall(result) or await self._verdict(base, uuid, run)
            if overall is not None and overall.get("malicious") is True:
                findings.append(self._malicious(item.value, uuid, overall))
        if findings:
            return LookupResult(tuple(findings))
        allowance = self.us.max_submissions_per_report if self.us.submit else 0
        left = run.counters.setdefault("submissions", allowance)
        if seen == 0 and left > 0:
            run.counters["submissions"] = left - 1
            # Not cached: the verdict comes later, found by a new search.
            return LookupResult((await self._submit(base, item, run),), ttl_s=0)
        return LookupResult()

    async def _verdict(self, base: str, uuid: str, run: LookupRun) -> dict[str, Any] | None:
        status, document, _ = await self.request_json(
            self.client,
            run,
            "GET",
            f"{base}/result/{uuid}/",
            headers=self._headers(),
            max_bytes=MAX_RESULT_BYTES,
        )
        if status == 404:  # still running, or deleted
            return None
        if status != 200:
            raise LookupFailure("service", f"result answered HTTP {status}")
        return _overall(document)

    def _malicious(self, domain: str, uuid: str, overall: dict[str, Any]) -> Indicator:
        score = overall.get("score")
        rated = f" (score {score})" if isinstance(score, int) else ""
        return Indicator(
            self.name,
            "urlscan.malicious",
            Verdict.PHISHING,
            75,
            f"urlscan.io judged a scan of {domain} malicious{rated}: "
            f"https://urlscan.io/result/{uuid}/",
            domain,
        )

    async def _submit(self, base: str, item: Lookup, run: LookupRun) -> Indicator:
        domain, url = item.value, item.context or f"https://{item.value}/"
        status, document, _ = await self.request_json(
            self.client,
            run,
            "POST",
            f"{base}/scan/",
            headers=self._headers(),
            json={"url": url, "visibility": self.us.submit_visibility},
        )
        uuid = document.get("uuid") if isinstance(document, dict) else None
        if status != 200 or not isinstance(uuid, str) or not _UUID.match(uuid):
            raise LookupFailure("service", f"the submission answered HTTP {status}")
        return Indicator(
            self.name,
            "urlscan.submitted",
            Verdict.UNDETECTED,
            0,
            f"urlscan.io had no scan of {domain}; {url} was submitted "
            f"({self.us.submit_visibility}): https://urlscan.io/result/{uuid}/",
            url,
        )


def _overall(document: Any) -> dict[str, Any] | None:
    """`verdicts.overall` of a search hit (when the plan includes it) or a result document."""
    if not isinstance(document, dict):
        return None
    verdicts = document.get("verdicts")
    overall = verdicts.get("overall") if isinstance(verdicts, dict) else None
    return overall if isinstance(overall, dict) else None
