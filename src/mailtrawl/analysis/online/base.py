"""What every online engine shares: a cache, a rate limit, a budget, and failing softly.

An engine lists the lookups a report calls for (de-duplicated, capped), answers each from the
cache when it can, and otherwise asks the service, taking a token from its bucket before every
request. Quota, credential and network failures never raise out of `analyze`: they become one
score-0 indicator per kind of failure saying what was not checked and why. After a quota error
the engine pauses (for the service's Retry-After, or a minute) instead of hammering it.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx
import orjson

from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict
from mailtrawl.analysis.online.config import OnlineEngineConfig
from mailtrawl.matching.urls import host_in_domain

Clock = Callable[[], float]
DEFAULT_PAUSE_S = 60.0
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Lookup:
    """One question for a service; `key` identifies it in the cache and for de-duplication."""

    kind: str  # "file" | "url" | "domain" | "ip"
    value: str  # what is sent: a SHA-256, a URL, a domain, an address
    context: str = ""  # not part of the key: e.g. the first link seen on a domain

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The findings for one lookup; `ttl_s` shortens the cache time when the service asks."""

    indicators: tuple[Indicator, ...] = ()
    ttl_s: float | None = None


class LookupFailure(Exception):
    """A lookup could not be answered; `stop` ends the engine's lookups for this report."""

    def __init__(
        self, reason: str, detail: str, *, stop: bool = False, retry_after: float | None = None
    ) -> None:
        self.reason = reason  # "auth" | "quota" | "network" | "service" | "response" | "budget"
        self.detail = detail
        self.stop = stop
        self.retry_after = retry_after
        super().__init__(detail)


class LookupCache(Protocol):
    """Where answers are kept between reports; a persistent store can implement the same two
    methods (Indicator is a plain dataclass of strings, ints and a str enum)."""

    async def get(self, key: str) -> tuple[Indicator, ...] | None: ...

    async def set(self, key: str, value: tuple[Indicator, ...], ttl_s: float) -> None: ...


class MemoryTtlCache:
    """An in-process cache with per-entry expiry and least-recently-used eviction."""

    def __init__(self, *, max_entries: int = 10_000, clock: Clock = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, tuple[Indicator, ...]]] = OrderedDict()

    async def get(self, key: str) -> tuple[Indicator, ...] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: tuple[Indicator, ...], ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        self._entries[key] = (self._clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class TokenBucket:
    """`rate_per_minute` tokens a minute, at most `burst` saved up; waits only within a deadline."""

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: int | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        self.rate_per_second = rate_per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, math.floor(rate_per_minute)))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = anyio.Lock()

    async def acquire(self, deadline: float) -> bool:
        """Take a token, waiting for one if it comes before `deadline`; False if it would not."""
        async with self._lock:
            now = self._refill()
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate_per_second
                if now + wait > deadline:
                    return False
                await self._sleep(wait)
                self._refill()
            self._tokens = max(0.0, self._tokens - 1)
            return True

    def _refill(self) -> float:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_second)
        self._updated = now
        return now


class LookupRun:
    """One report's lookups: the deadline, and the token taken before each request."""

    def __init__(self, bucket: TokenBucket, deadline: float) -> None:
        self.bucket = bucket
        self.deadline = deadline
        self.counters: dict[str, int] = {}  # per-report allowances (e.g. submissions left)

    async def permit(self) -> None:
        if not await self.bucket.acquire(self.deadline):
            raise LookupFailure("budget", "the rate limit left no time for it within the budget")


class OnlineEngine:
    """Base of the online engines: subclasses list lookups and answer one (or a batch)."""

    online = True
    name = "online"
    title = "the service"  # how evidence names the service
    batch_size = 1  # lookups answered by one `lookup_batch` call

    def __init__(
        self,
        config: OnlineEngineConfig,
        *,
        cache: LookupCache | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        self.config = config
        self.cache: LookupCache = cache or MemoryTtlCache(clock=clock)
        self._clock = clock
        self.bucket = TokenBucket(
            config.rate_per_minute, burst=config.burst, clock=clock, sleep=sleep
        )
        self._paused_until = 0.0

    # What subclasses provide -------------------------------------------------------------------

    def lookups(self, report: ParsedReport, context: AnalysisContext) -> list[Lookup]:
        """The lookups this report calls for, most telling first (de-duplicated by the base)."""
        raise NotImplementedError

    async def lookup(self, item: Lookup, run: LookupRun) -> LookupResult:
        """Answer one lookup (batch engines override `lookup_batch` instead)."""
        raise NotImplementedError

    async def lookup_batch(self, items: list[Lookup], run: LookupRun) -> dict[str, LookupResult]:
        return {items[0].key: await self.lookup(items[0], run)}

    # The run -----------------------------------------------------------------------------------

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        """Findings from the service, or score-0 notes saying what could not be checked."""
        try:
            return await self._analyze(report, context)
        except Exception as exc:  # a bug or an unforeseen answer must not fail the analysis
            # Only the type: a message could quote a request URL holding an API key.
            reason = type(exc).__name__
            return [self.note("error", f"{self.title} lookups failed unexpectedly ({reason}).")]

    async def _analyze(self, report: ParsedReport, context: AnalysisContext) -> list[Indicator]:
        unique: dict[str, Lookup] = {}
        for item in self.lookups(report, context):
            unique.setdefault(item.key, item)
        planned = list(unique.values())
        limit = self.config.max_lookups_per_report
        indicators: list[Indicator] = []
        failures: dict[str, tuple[LookupFailure, int]] = {}
        if len(planned) > limit:
            indicators.append(
                self.note(
                    "capped",
                    f"Only the first {limit} of {len(planned)} lookups were sent to {self.title}.",
                )
            )
            planned = planned[:limit]
        pending: list[Lookup] = []
        for item in planned:
            cached = await self.cache.get(self._cache_key(item))
            if cached is None:
                pending.append(item)
            else:
                indicators.extend(cached)
        now = self._clock()
        if pending and now < self._paused_until:
            failure = LookupFailure(
                "quota", f"paused for {math.ceil(self._paused_until - now)} s after a quota error"
            )
            failures["quota"] = (failure, len(pending))
            pending = []
        run = LookupRun(self.bucket, now + self.config.budget_s)
        batches = [
            pending[start : start + self.batch_size]
            for start in range(0, len(pending), self.batch_size)
        ]
        stopped = False
        limiter = anyio.Semaphore(self.config.concurrency)

        async def one(batch: list[Lookup]) -> None:
            nonlocal stopped
            async with limiter:
                if stopped:
                    _count(failures, failures_stop_reason(failures), len(batch))
                    return
                try:
                    with anyio.fail_after(self.config.budget_s + self.config.timeout_s):
                        answers = await self.lookup_batch(batch, run)
                except LookupFailure as failure:
                    _record(failures, failure, len(batch))
                    if failure.stop:
                        stopped = True
                    if failure.reason == "quota":
                        self._paused_until = self._clock() + (
                            failure.retry_after or DEFAULT_PAUSE_S
                        )
                    return
                except TimeoutError:
                    _record(failures, LookupFailure("network", "the budget ran out"), len(batch))
                    return
                for item in batch:
                    result = answers.get(item.key, LookupResult())
                    indicators.extend(result.indicators)
                    ttl = self.config.cache_ttl_s
                    if result.ttl_s is not None:
                        ttl = min(ttl, result.ttl_s)
                    await self.cache.set(self._cache_key(item), result.indicators, ttl)

        async with anyio.create_task_group() as group:
            for batch in batches:
                group.start_soon(one, batch)
        for reason, (failure, count) in failures.items():
            indicators.append(self._failure_note(reason, failure, count))
        return indicators

    def _cache_key(self, item: Lookup) -> str:
        return f"{self.name}:{item.key}"

    def _failure_note(self, reason: str, failure: LookupFailure, count: int) -> Indicator:
        lookups = "lookup was" if count == 1 else "lookups were"
        what = {
            "auth": "refused the credentials",
            "quota": "is over its quota",
            "network": "could not be reached",
            "service": "failed",
            "response": "answered something unexpected",
            "budget": "was rate-limited",
        }.get(reason, "failed")
        return self.note(
            f"unavailable.{reason}",
            f"{self.title} {what} ({failure.detail}); {count} {lookups} not checked.",
        )

    def note(self, kind: str, evidence: str) -> Indicator:
        """A score-0 indicator that explains a gap in the analysis."""
        return Indicator(self.name, f"{self.name}.{kind}", Verdict.UNDETECTED, 0, evidence)

    # HTTP helpers ------------------------------------------------------------------------------

    async def request_json(
        self,
        client: httpx.AsyncClient,
        run: LookupRun,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: tuple[tuple[str, str], ...] | None = None,
        json: Any = None,
        max_bytes: int = MAX_RESPONSE_BYTES,
    ) -> tuple[int, Any, httpx.Headers]:
        """Send one request after taking a token; (status, decoded JSON or None, headers).

        401/403, 429 and 204 (the old quota answer), 5xx and transport errors raise
        LookupFailure; other statuses are returned for the engine to read.
        """
        await run.permit()
        request = client.build_request(
            method,
            url,
            headers=headers,
            params=params,
            json=json,
            timeout=httpx.Timeout(self.config.timeout_s),
        )
        try:
            response = await client.send(request, stream=True)
            try:
                body = await _read_bounded(response, max_bytes)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise LookupFailure(
                "network", f"no answer within {self.config.timeout_s:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise LookupFailure("network", type(exc).__name__) from None
        status = response.status_code
        document = _decode(body)
        error = _error_code(document)
        if status in (401, 403):
            raise LookupFailure("auth", f"HTTP {status}{error}", stop=True)
        if status in (204, 429):
            raise LookupFailure(
                "quota", f"HTTP {status}{error}", stop=True, retry_after=_retry_after(response)
            )
        if status >= 500:
            raise LookupFailure("service", f"HTTP {status}{error}")
        return status, document, response.headers


async def _read_bounded(response: httpx.Response, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise LookupFailure("response", f"the answer is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _error_code(document: Any) -> str:
    """ " WrongCredentialsError" style detail from VirusTotal's or Google's error object."""
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        error = document["error"]
        code = error.get("code") if isinstance(error.get("code"), str) else error.get("status")
        if isinstance(code, str) and code:
            return f" {code[:60]}"
    return ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 < seconds <= 86_400 else None


def _record(failures: dict[str, tuple[LookupFailure, int]], failure: LookupFailure, n: int) -> None:
    known = failures.get(failure.reason)
    failures[failure.reason] = (known[0] if known else failure, (known[1] if known else 0) + n)


def failures_stop_reason(failures: dict[str, tuple[LookupFailure, int]]) -> str:
    for reason in ("auth", "quota"):
        if reason in failures:
            return reason
    return next(iter(failures), "service")


def _count(failures: dict[str, tuple[LookupFailure, int]], reason: str, n: int) -> None:
    failure, count = failures.get(reason, (LookupFailure(reason, "stopped"), 0))
    failures[reason] = (failure, count + n)


def is_own(host: str, context: AnalysisContext) -> bool:
    """Whether a host belongs to the organisation (never sent to outside services)."""
    return any(host_in_domain(host, own) for own in context.own_domains)


def report_urls(report: ParsedReport, context: AnalysisContext) -> list[str]:
    """The report's distinct URLs, minus those on the organisation's own domains."""
    return list(dict.fromkeys(u.url for u in report.urls if not is_own(u.host, context)))


def report_domains(report: ParsedReport, context: AnalysisContext) -> list[str]:
    """Registrable domains of links, then of the rest of the message; own domains excluded."""
    found = [u.domain for u in report.urls if u.domain and not _is_ip(u.domain)]
    found.extend(d for d in report.domains if not _is_ip(d))
    return [d for d in dict.fromkeys(found) if not is_own(d, context)]


def _is_ip(value: str) -> bool:
    return value.replace(".", "").isdigit() or ":" in value
