"""An async Microsoft Graph client: paging, `$batch`, concurrency caps, retries, typed errors.

Every request goes through the same path: take a slot for its mailbox (at most four in
flight per mailbox, Outlook's limit) and one of the global slots, attach a token, send, and
map the answer. Transient failures (429, 503, 504, broken connections, an expired token)
go to the `RetryPolicy`; everything else becomes a typed `mailtrawl.errors` exception.
Tokens and secrets are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import httpx

from mailtrawl import __version__
from mailtrawl.errors import (
    AuthFailed,
    MailboxUnavailable,
    NotFound,
    PermissionMissing,
    ProviderError,
    ProviderUnavailable,
)
from mailtrawl.providers.errors import (
    AccessPolicyBlocked,
    CursorExpired,
    OutcomeUnknown,
    RequestRejected,
)
from mailtrawl.providers.retry import (
    Failure,
    GiveUp,
    Retry,
    RetryableFailure,
    RetryPolicy,
    parse_retry_after,
)

log = logging.getLogger("mailtrawl.providers.graph")

JSON = dict[str, Any]
BATCH_LIMIT = 20
MAILBOX_CONCURRENCY = 4
IMMUTABLE_IDS = 'IdType="ImmutableId"'
_RETRYABLE_STATUS = {
    429: Failure.THROTTLED,
    503: Failure.UNAVAILABLE,
    502: Failure.GATEWAY_TIMEOUT,
    504: Failure.GATEWAY_TIMEOUT,
    500: Failure.GATEWAY_TIMEOUT,
}
# Answers that prove a request was refused before anything happened (safe to repeat).
_NOT_APPLIED = {429, 503}
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Graph's well-known mail folder names (addressable as /mailFolders/{name}).
WELL_KNOWN_FOLDERS = frozenset(
    {
        "archive",
        "clutter",
        "conflicts",
        "conversationhistory",
        "deleteditems",
        "drafts",
        "inbox",
        "junkemail",
        "localfailures",
        "msgfolderroot",
        "outbox",
        "recoverableitemsdeletions",
        "scheduled",
        "searchfolders",
        "sentitems",
        "serverfailures",
        "syncissues",
    }
)


class AccessTokens(Protocol):
    """What the client needs from the token source."""

    async def token(self) -> Any: ...  # an object with a `.value` string

    async def refresh(self, stale: str | None = None) -> Any: ...


def with_immutable_ids(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers with `Prefer: IdType="ImmutableId"` added: ids must not change when mail moves."""
    out = dict(headers or {})
    key = next((k for k in out if k.lower() == "prefer"), None)
    if key is None:
        out["Prefer"] = IMMUTABLE_IDS
    elif "idtype" not in out[key].lower():
        out[key] = f"{out[key]}, {IMMUTABLE_IDS}"
    return out


def segment(value: str) -> str:
    """A URL path segment: ids and user principal names, percent-encoded."""
    return quote(value, safe="@=")


# Statistics -----------------------------------------------------------------------------


@dataclass
class GraphStats:
    """Counters for progress reports and benchmarks (one per client)."""

    http_requests: int = 0  # HTTP exchanges attempted, batch envelopes included
    batches: int = 0
    subrequests: int = 0  # sub-requests sent inside batches (repeats included)
    retries: int = 0
    throttled: int = 0  # 429 answers, inside batches too
    unavailable: int = 0  # 5xx answers
    connection_errors: int = 0
    wait_seconds: float = 0.0  # time spent waiting before retries
    token_refreshes: int = 0
    fresh_connections: int = 0  # retries sent on a new connection (after a 503)
    by_status: Counter[int] = field(default_factory=Counter)

    @property
    def graph_requests(self) -> int:
        """Requests as Graph counts them: batch envelopes replaced by their sub-requests."""
        return self.http_requests - self.batches + self.subrequests

    def as_dict(self) -> dict[str, Any]:
        return {
            "graph_requests": self.graph_requests,
            "http_requests": self.http_requests,
            "batches": self.batches,
            "subrequests": self.subrequests,
            "retries": self.retries,
            "throttled": self.throttled,
            "unavailable": self.unavailable,
            "connection_errors": self.connection_errors,
            "wait_seconds": round(self.wait_seconds, 3),
            "token_refreshes": self.token_refreshes,
            "fresh_connections": self.fresh_connections,
            "by_status": dict(self.by_status),
        }


# Concurrency ----------------------------------------------------------------------------


class WeightedLimiter:
    """A first-come-first-served semaphore whose holders may take several slots at once."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.available = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def idle(self) -> bool:
        return self.available == self.capacity and not self._waiters

    async def acquire(self, slots: int = 1) -> int:
        slots = max(1, min(slots, self.capacity))
        if not self._waiters and self.available >= slots:
            self.available -= slots
            return slots
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (slots, future)
        self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(slots)  # granted just as we were cancelled: give it back
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                self._wake()
            raise
        return slots

    def release(self, slots: int) -> None:
        self.available = min(self.capacity, self.available + slots)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            slots, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.available < slots:
                return
            self.available -= slots
            self._waiters.popleft()
            future.set_result(None)


# Requests and answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer. `assumed` is True when a repeated request found the work done."""

    status: int
    headers: Mapping[str, str]
    body: Any
    content: bytes
    assumed: bool = False

    def json(self) -> JSON:
        return self.body if isinstance(self.body, dict) else {}


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One sub-request of a `$batch`: a path relative to the version root."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None
    mailbox: str | None = None
    role: str | None = None
    what: str | None = None

    def relative_url(self) -> str:
        url = "/" + self.path.lstrip("/")
        return url + ("?" + encode_params(self.params) if self.params else "")


@dataclass(frozen=True, slots=True)
class BatchResponse:
    request: BatchRequest
    status: int
    headers: Mapping[str, str]
    body: Any
    error: ProviderError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def json(self) -> JSON:
        return self.body if isinstance(self.body, dict) else {}

    def content(self) -> bytes:
        """A binary body (Graph base64-encodes non-JSON bodies inside batches)."""
        if isinstance(self.body, str):
            try:
                return base64.b64decode(self.body, validate=True)
            except binascii.Error:
                return self.body.encode()
        return b""


def encode_params(params: Mapping[str, str]) -> str:
    """OData query options, leaving `$`, quotes, commas and parentheses readable."""
    return urlencode(dict(params), quote_via=quote, safe="$'(),:/@*")


def graph_error_parts(body: Any) -> tuple[str, str]:
    """(code, message) from Graph's error body, empty strings when absent."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", ""


def error_for(
    status: int,
    body: Any,
    *,
    role: str | None = None,
    mailbox: str | None = None,
    what: str | None = None,
) -> ProviderError:
    """The typed error for a Graph error answer (non-transient statuses)."""
    code, message = graph_error_parts(body)
    detail = f"{code}: {message}" if code else (message or f"HTTP {status}")
    if status == 401:
        return AuthFailed(
            f"Microsoft Graph refused the access token ({detail}); test the mail configuration."
        )
    if status == 403:
        if "accesspolicy" in message.lower().replace(" ", ""):
            return AccessPolicyBlocked(mailbox=mailbox)
        return PermissionMissing(role=role or "required")
    if status == 404:
        if code in ("MailboxNotEnabledForRESTAPI", "MailboxNotSupportedForRESTAPI"):
            return MailboxUnavailable(
                f"{mailbox or 'The user'} has no Exchange Online mailbox (no licence, inactive, "
                "or hosted on-premises); leave it out of the scope.",
                mailbox=mailbox,
            )
        if code == "ErrorInvalidUser":
            return MailboxUnavailable(
                f"There is no user {mailbox or ''} in the tenant; it may have been deleted.",
                mailbox=mailbox,
            )
        return NotFound(what=what)
    if status == 410 or code in ("syncStateNotFound", "resyncRequired", "syncStateInvalid"):
        return CursorExpired()
    return RequestRejected(
        f"Microsoft Graph refused the request: {detail}", status=status, code=code or None
    )


# The client -------------------------------------------------------------------------------


class GraphClient:
    """Async Graph client over one httpx connection pool (HTTP/1.1)."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: AccessTokens,
        verify: Any = True,
        policy: RetryPolicy | None = None,
        max_concurrency: int = 32,
        mailbox_concurrency: int = MAILBOX_CONCURRENCY,
        timeout: float = 60.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}".lower()
        self.tokens = tokens
        self.policy = policy or RetryPolicy()
        self.mailbox_concurrency = mailbox_concurrency
        self.stats = GraphStats()
        self._verify = verify
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._global = WeightedLimiter(max_concurrency)
        self._mailboxes: dict[str, WeightedLimiter] = {}
        self._http = self._new_http(max_concurrency)

    def _new_http(self, connections: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            http1=True,
            http2=False,
            verify=self._verify,
            trust_env=False,  # proxies and CA variables from the environment do not apply
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            transport=self._transport,
            headers={"User-Agent": f"mailtrawl/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # Slots -----------------------------------------------------------------------------

    def _limiter(self, mailbox: str) -> WeightedLimiter:
        key = mailbox.lower()
        limiter = self._mailboxes.get(key)
        if limiter is None:
            limiter = self._mailboxes[key] = WeightedLimiter(self.mailbox_concurrency)
        return limiter

    async def _take(
        self, weights: Mapping[str, int], *, global_slot: bool = True
    ) -> list[tuple[str, int]]:
        taken: list[tuple[str, int]] = []
        try:
            normalised: Counter[str] = Counter()
            for key, slots in weights.items():
                normalised[key.lower()] += slots
            for key in sorted(normalised):  # one global order: no deadlock between batches
                taken.append((key, await self._limiter(key).acquire(normalised[key])))
            if global_slot:
                taken.append(("", await self._global.acquire(1)))
        except BaseException:
            self._give(taken)
            raise
        return taken

    def _give(self, taken: list[tuple[str, int]]) -> None:
        for key, slots in taken:
            if key == "":
                self._global.release(slots)
                continue
            limiter = self._mailboxes.get(key)
            if limiter is None:
                continue
            limiter.release(slots)
            if limiter.idle:
                del self._mailboxes[key]

    def in_flight(self, mailbox: str) -> int:
        limiter = self._mailboxes.get(mailbox.lower())
        return 0 if limiter is None else limiter.capacity - limiter.available

    # URLs ------------------------------------------------------------------------------

    def url(self, path_or_url: str, params: Mapping[str, str] | None = None) -> str:
        """An absolute URL; absolute inputs (nextLink, deltaLink) must stay on Graph's host."""
        if "://" in path_or_url:
            parts = urlsplit(path_or_url)
            if f"{parts.scheme}://{parts.netloc}".lower() != self._origin:
                raise RequestRejected(
                    "Refusing to send the access token to another host than the Graph endpoint "
                    f"({parts.netloc}).",
                    code="ForeignHost",
                )
            url = path_or_url
        else:
            url = f"{self.base_url}/{path_or_url.lstrip('/')}"
        if params:
            url += ("&" if "?" in url else "?") + encode_params(params)
        return url

    # One request -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        mailbox: str | None = None,
        role: str | None = None,
        what: str | None = None,
        idempotent: bool | None = None,
        tolerate: frozenset[str] = frozenset(),
        batch_items: int = 0,
    ) -> Reply:
        """Send one request with retries; answers the successful reply or raises a typed error.

        `mailbox` keys the per-mailbox concurrency cap; `role` names the permission the
        endpoint needs (for `PermissionMissing`). A request that is not `idempotent` (POST by
        default) is not repeated once it may have reached the server. `tolerate` lists Graph
        error codes that mean "already done" when they answer a repeated request.
        """
        method = method.upper()
        url = self.url(path, params)
        repeatable = method in _IDEMPOTENT_METHODS if idempotent is None else idempotent
        request_id = str(uuid.uuid4())
        sent_before = False  # an earlier attempt may have been applied

        async def attempt(previous: Retry | None) -> Reply:
            nonlocal sent_before
            if previous is not None:
                self.stats.retries += 1
            token = await self.tokens.token()
            if previous is not None and previous.refresh_token:
                token = await self.tokens.refresh(token.value)
                self.stats.token_refreshes += 1
            send_headers = {
                "Authorization": f"Bearer {token.value}",
                "client-request-id": request_id,
                "return-client-request-id": "true",
                **with_immutable_ids(headers),
            }
            weights = {mailbox: 1} if mailbox else {}
            taken = await self._take(weights)
            started = time.perf_counter()
            try:
                self.stats.http_requests += 1
                if batch_items:  # a $batch envelope: Graph counts its items, each time it is sent
                    self.stats.batches += 1
                    self.stats.subrequests += batch_items
                fresh = previous is not None and previous.new_connection
                response = await self._send(
                    method, url, send_headers, json, content, new_connection=fresh
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                self.stats.connection_errors += 1
                raise RetryableFailure(Failure.CONNECTION, detail=type(exc).__name__) from exc
            except httpx.TransportError as exc:
                self.stats.connection_errors += 1
                if not repeatable:
                    raise OutcomeUnknown() from exc
                sent_before = True  # the request may have been applied before the break
                raise RetryableFailure(Failure.CONNECTION, detail=type(exc).__name__) from exc
            finally:
                self._give(taken)
            status = response.status_code
            self.stats.by_status[status] += 1
            log.debug(
                "graph %s %s -> %s in %.0f ms (client-request-id %s)",
                method,
                urlsplit(url).path,
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
            )
            body: Any = None
            if response.content and "json" in response.headers.get("content-type", ""):
                try:
                    body = response.json()
                except ValueError:
                    body = None
            if status < 400:
                return Reply(status, response.headers, body, response.content)
            earlier = sent_before
            if status in _RETRYABLE_STATUS and status not in _NOT_APPLIED:
                sent_before = True  # a gateway timeout does not say whether it was applied
            return self._failed(
                status,
                response.headers,
                body,
                role,
                mailbox,
                what,
                repeatable,
                earlier,
                tolerate,
            )

        def on_wait(kind: Failure, delay: float) -> None:
            self.stats.wait_seconds += delay

        return await self.policy.run(attempt, sleep=self._sleep, rng=self._rng, on_wait=on_wait)

    def _failed(
        self,
        status: int,
        headers: Mapping[str, str],
        body: Any,
        role: str | None,
        mailbox: str | None,
        what: str | None,
        repeatable: bool,
        sent_before: bool,
        tolerate: frozenset[str],
    ) -> Reply:
        code, _ = graph_error_parts(body)
        if sent_before and code in tolerate:
            return Reply(status, headers, None, b"", assumed=True)
        if status == 401:
            raise RetryableFailure(
                Failure.UNAUTHORIZED, error=error_for(status, body, role=role, mailbox=mailbox)
            )
        if status in _RETRYABLE_STATUS:
            if status == 429:
                self.stats.throttled += 1
            else:
                self.stats.unavailable += 1
            if status not in _NOT_APPLIED and not repeatable:
                raise OutcomeUnknown(
                    f"Microsoft Graph answered {status} to a change that cannot safely be "
                    "repeated; check the item before trying again."
                )
            raise RetryableFailure(
                _RETRYABLE_STATUS[status],
                retry_after=parse_retry_after(headers.get("retry-after")),
                detail=f"HTTP {status} {code}",
            )
        raise error_for(status, body, role=role, mailbox=mailbox, what=what)

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        json: Any,
        content: bytes | None,
        *,
        new_connection: bool,
    ) -> httpx.Response:
        if not new_connection or self._transport is not None:
            return await self._http.request(
                method, url, headers=headers, json=json, content=content
            )
        # Graph asks that a request refused with 503 be repeated on a new connection.
        self.stats.fresh_connections += 1
        async with self._new_http(1) as fresh:
            return await fresh.request(method, url, headers=headers, json=json, content=content)

    # Shorthands ------------------------------------------------------------------------

    async def get(self, path: str, **kwargs: Any) -> JSON:
        return (await self.request("GET", path, **kwargs)).json()

    async def get_bytes(self, path: str, **kwargs: Any) -> bytes:
        return (await self.request("GET", path, **kwargs)).content

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> JSON:
        return (await self.request("POST", path, json=json, **kwargs)).json()

    async def patch(self, path: str, json: Any = None, **kwargs: Any) -> JSON:
        return (await self.request("PATCH", path, json=json, **kwargs)).json()

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("DELETE", path, **kwargs)

    # Paging ------------------------------------------------------------------------------

    async def pages(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[JSON]:
        """Each page of a collection, following `@odata.nextLink` as an opaque URL.

        Headers (Prefer, ConsistencyLevel) are sent again on every page: Graph does not
        carry them over. The last page is the one holding `@odata.deltaLink`, if any.
        """
        page = await self.get(path, params=params, **kwargs)
        while True:
            yield page
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            page = await self.get(str(next_link), **kwargs)

    async def paginate(
        self, path: str, params: Mapping[str, str] | None = None, **kwargs: Any
    ) -> AsyncIterator[JSON]:
        """Every item of a collection, page after page."""
        async for page in self.pages(path, params, **kwargs):
            for item in page.get("value") or ():
                if isinstance(item, dict):
                    yield item

    # $batch ----------------------------------------------------------------------------

    async def batch(
        self,
        requests: Sequence[BatchRequest],
        *,
        idempotent: bool | None = None,
        item_errors: bool = False,
    ) -> list[BatchResponse]:
        """Send sub-requests in `$batch` calls of at most 20; answers in the same order.

        Sub-requests answered 429/503/504 are sent again (only them) after the longest
        Retry-After, under the retry policy; each answer carries its typed error if it failed.
        When an envelope itself fails (retries exhausted, connection lost after sending), that
        error is raised, or with `item_errors` becomes the error of each of its sub-requests,
        so that the other envelopes' answers are kept.
        """
        if not requests:
            return []
        repeatable = (
            all(r.method.upper() in ("GET", "HEAD") for r in requests)
            if idempotent is None
            else idempotent
        )
        chunks = [
            list(range(start, min(start + BATCH_LIMIT, len(requests))))
            for start in range(0, len(requests), BATCH_LIMIT)
        ]
        results: dict[int, BatchResponse] = {}
        await asyncio.gather(
            *(
                self._batch_chunk(requests, chunk, results, repeatable, item_errors)
                for chunk in chunks
            )
        )
        return [results[i] for i in range(len(requests))]

    async def _batch_chunk(
        self,
        requests: Sequence[BatchRequest],
        indexes: list[int],
        results: dict[int, BatchResponse],
        repeatable: bool,
        item_errors: bool = False,
    ) -> None:
        state = self.policy.begin(self._rng)
        pending = indexes
        while pending:
            try:
                answers = await self._send_batch(requests, pending, repeatable)
            except ProviderError as exc:
                if not item_errors:
                    raise
                for index in pending:
                    results[index] = BatchResponse(requests[index], 0, {}, None, exc)
                return
            again: list[int] = []
            longest: float | None = None
            kind = Failure.THROTTLED
            for index in pending:
                req = requests[index]
                sub = answers.get(index)
                if sub is None:
                    unanswered = (
                        ProviderUnavailable("Graph left a batch item unanswered.")
                        if repeatable
                        else OutcomeUnknown("Graph left a change in a batch unanswered.")
                    )
                    results[index] = BatchResponse(req, 0, {}, None, unanswered)
                    continue
                status = int(sub.get("status") or 0)
                headers = {str(k).lower(): str(v) for k, v in (sub.get("headers") or {}).items()}
                body = sub.get("body")
                if status == 429:
                    self.stats.throttled += 1
                elif status >= 500:
                    self.stats.unavailable += 1
                if status in (429, 503, 504) and (repeatable or status in _NOT_APPLIED):
                    again.append(index)
                    wait = parse_retry_after(headers.get("retry-after"))
                    if wait is not None:
                        longest = wait if longest is None else max(longest, wait)
                    if status != 429:
                        kind = Failure.UNAVAILABLE if status == 503 else Failure.GATEWAY_TIMEOUT
                    continue
                error: ProviderError | None = None
                if status in _RETRYABLE_STATUS and not repeatable and status not in _NOT_APPLIED:
                    # A gateway error does not say whether the change was applied.
                    error = OutcomeUnknown(
                        f"Microsoft Graph answered {status} to a change that cannot safely be "
                        "repeated; check the item before trying again."
                    )
                elif status >= 400:
                    error = error_for(
                        status, body, role=req.role, mailbox=req.mailbox, what=req.what
                    )
                results[index] = BatchResponse(req, status, headers, body, error)
            if not again:
                return
            decision = state.decide(kind, longest)
            if isinstance(decision, GiveUp):
                for index in again:
                    results[index] = BatchResponse(requests[index], 429, {}, None, decision.error)
                return
            self.stats.wait_seconds += decision.delay
            self.stats.retries += len(again)
            if decision.delay > 0:
                await self._sleep(decision.delay)
            pending = again

    async def _send_batch(
        self, requests: Sequence[BatchRequest], indexes: list[int], repeatable: bool
    ) -> dict[int, JSON]:
        items = []
        for n, index in enumerate(indexes):
            req = requests[index]
            item: JSON = {"id": str(n + 1), "method": req.method.upper(), "url": req.relative_url()}
            sub_headers = with_immutable_ids(req.headers)
            if req.body is not None:
                sub_headers.setdefault("Content-Type", "application/json")
                item["body"] = req.body
            if sub_headers:
                item["headers"] = sub_headers
            items.append(item)
        weights: Counter[str] = Counter()
        for index in indexes:
            if requests[index].mailbox:
                weights[str(requests[index].mailbox).lower()] += 1
        # Outlook runs at most four sub-requests of a batch at once, so a batch holds at most
        # four of a mailbox's slots.
        reply = await self._batch_envelope(items, dict(weights), repeatable)
        answers: dict[int, JSON] = {}
        for sub in reply.json().get("responses") or ():
            try:
                position = int(sub.get("id")) - 1
            except (TypeError, ValueError):
                continue
            if 0 <= position < len(indexes):
                answers[indexes[position]] = sub
        return answers

    async def _batch_envelope(
        self, items: list[JSON], weights: dict[str, int], repeatable: bool
    ) -> Reply:
        # The envelope takes the mailbox slots its sub-requests will use, then goes through
        # the ordinary request path (retries of the envelope itself included).
        taken = await self._take(
            {k: min(v, self.mailbox_concurrency) for k, v in weights.items()}, global_slot=False
        )
        try:
            return await self.request(
                "POST",
                "$batch",
                json={"requests": items},
                idempotent=repeatable,
                batch_items=len(items),
            )
        finally:
            self._give(taken)
