"""Microsoft Graph change-notification webhooks: the endpoints Graph POSTs to.

`notifications_router(sink, directory)` serves

* `POST /api/v1/graph/notifications` (the subscriptions' `notificationUrl`) and
* `POST /api/v1/graph/lifecycle` (their `lifecycleNotificationUrl`).

Both answer Graph's validation handshake (`?validationToken=…` → 200 `text/plain` with the
decoded token), and otherwise read a bounded JSON body of notifications. Each item must
name a subscription the `SubscriptionDirectory` knows, with its secret `clientState`
(compared in constant time); anything else is dropped, counted and logged, never processed.
Valid items go to the `NotificationSink`, which only queues them: the endpoint answers 202
at once, well inside Graph's 3 seconds, and the monitor reads the folder's delta later.
Change and lifecycle items are accepted on both paths (Graph allows one URL for both).

The endpoints carry no session or token (Graph cannot send one): they change nothing
themselves, and the router does not use the dashboard's session/CSRF dependency, so they
are exempt from it by construction. Mount the router on the application directly:

    app.include_router(notifications_router(sink, directory))
"""

from __future__ import annotations

import hmac
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("mailtrawl.monitor.webhooks")

NOTIFICATIONS_PATH = "/notifications"
LIFECYCLE_PATH = "/lifecycle"
DEFAULT_PREFIX = "/api/v1/graph"
# Graph batches notifications; a few hundred kilobytes is plenty, a megabyte is generous.
MAX_BODY_BYTES = 1024 * 1024
MAX_ITEMS = 1000
MAX_VALIDATION_TOKEN = 1024
MAX_ID_LENGTH = 512
MAX_CLIENT_STATE = 255  # Graph's own ceiling for the echoed value

ChangeType = Literal["created", "updated", "deleted"]
LifecycleEvent = Literal["missed", "reauthorizationRequired", "subscriptionRemoved"]
CHANGE_TYPES: frozenset[str] = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS: frozenset[str] = frozenset(
    {"missed", "reauthorizationRequired", "subscriptionRemoved"}
)
# Graph message ids are base64 (standard or URL-safe alphabet).
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_")


@dataclass(frozen=True, slots=True)
class SubscriptionTarget:
    """What a subscription watches: a folder of a mailbox, under a mail configuration."""

    configuration_id: uuid.UUID
    mailbox_id: str
    folder: str | None  # None: the whole mailbox


class SubscriptionDirectory(Protocol):
    """Where the webhook looks subscriptions up.

    `verify` answers the target when `subscription_id` is known and `client_state` equals its
    secret, compared in constant time (`client_state_matches`), else None. It is called in a
    worker thread, so it may read a database.
    """

    def verify(self, subscription_id: str, client_state: str | None) -> SubscriptionTarget | None:
        """The subscription's target, or None when unknown or the client state differs."""
        ...


class NotificationSink(Protocol):
    """Where valid notifications go. Both methods must only queue, never wait (the
    endpoint calls them on the event loop and answers Graph at once)."""

    def notify(self, target: SubscriptionTarget, change_type: ChangeType, message_id: str) -> None:
        """A message in the target folder was created, updated or deleted."""
        ...

    def lifecycle(self, target: SubscriptionTarget, event: LifecycleEvent) -> None:
        """Graph signalled `missed`, `reauthorizationRequired` or `subscriptionRemoved`."""
        ...


def client_state_matches(expected: str | None, presented: str | None) -> bool:
    """Whether a notification's `clientState` is the subscription's, in constant time."""
    if expected is None or presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8", "replace"))


class InMemorySubscriptionDirectory:
    """A `SubscriptionDirectory` kept in memory (tests, single-process tools)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[SubscriptionTarget, str]] = {}
        self._lock = threading.Lock()

    def register(self, subscription_id: str, client_state: str, target: SubscriptionTarget) -> None:
        with self._lock:
            self._entries[subscription_id] = (target, client_state)

    def forget(self, subscription_id: str) -> None:
        with self._lock:
            self._entries.pop(subscription_id, None)

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, subscription_id: str, client_state: str | None) -> SubscriptionTarget | None:
        with self._lock:
            entry = self._entries.get(subscription_id)
        # Compare even for unknown ids, so timing does not tell which ids exist.
        expected = entry[1] if entry is not None else "\x00" * 32
        matches = client_state_matches(expected, client_state)
        return entry[0] if entry is not None and matches else None


@dataclass
class WebhookStats:
    """What the endpoints received; read by health pages and tests."""

    validations: int = 0
    requests: int = 0
    accepted: int = 0  # change notifications handed to the sink
    lifecycle: int = 0  # lifecycle notifications handed to the sink
    rejected: int = 0  # unknown subscription or wrong clientState
    malformed: int = 0  # items (or bodies) that are not Graph notifications
    by_reason: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class _Item:
    subscription_id: str
    client_state: str | None
    change_type: ChangeType | None
    lifecycle_event: LifecycleEvent | None
    message_id: str | None


def _text(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _message_id(item: dict[str, Any]) -> str | None:
    data = item.get("resourceData")
    candidate = data.get("id") if isinstance(data, dict) else None
    if not isinstance(candidate, str):
        resource = item.get("resource")
        if isinstance(resource, str) and len(resource) <= 4 * MAX_ID_LENGTH:
            candidate = resource.rsplit("/", 1)[-1]
    if not isinstance(candidate, str) or not 0 < len(candidate) <= MAX_ID_LENGTH:
        return None
    return candidate if all(c in _ID_CHARS for c in candidate) else None


def _parse_item(raw: Any) -> _Item | str:
    """An item, or the reason it is not a Graph notification."""
    if not isinstance(raw, dict):
        return "not an object"
    subscription_id = _text(raw.get("subscriptionId"), 128)
    if subscription_id is None:
        return "no subscriptionId"
    client_state = raw.get("clientState")
    if client_state is not None and _text(client_state, MAX_CLIENT_STATE) is None:
        return "bad clientState"
    event = raw.get("lifecycleEvent")
    if event is not None:
        if event not in LIFECYCLE_EVENTS:
            return "unknown lifecycleEvent"
        return _Item(subscription_id, client_state, None, cast(LifecycleEvent, event), None)
    change_type = raw.get("changeType")
    if change_type not in CHANGE_TYPES:
        return "unknown changeType"
    message_id = _message_id(raw)
    if message_id is None:
        return "no message id"
    return _Item(subscription_id, client_state, cast(ChangeType, change_type), None, message_id)


def _validation_answer(token: str) -> Response:
    # Graph never sends markup; refusing it keeps this echo from ever reflecting HTML.
    if (
        not token
        or len(token) > MAX_VALIDATION_TOKEN
        or any(c in "<>" or (ord(c) < 32 and c != "\t") for c in token)
    ):
        return Response(status_code=400, headers={"X-Content-Type-Options": "nosniff"})
    return Response(
        content=token,
        status_code=200,
        media_type="text/plain",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is (or says it is) larger than `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def notifications_router(
    sink: NotificationSink,
    directory: SubscriptionDirectory,
    *,
    stats: WebhookStats | None = None,
    prefix: str = DEFAULT_PREFIX,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_items: int = MAX_ITEMS,
) -> APIRouter:
    """The webhook endpoints Graph calls, handing valid notifications to `sink`.

    Pass `stats` to read the counters (validations, accepted, rejected, malformed).
    """
    counters = stats if stats is not None else WebhookStats()
    router = APIRouter(prefix=prefix, tags=["graph notifications"], include_in_schema=False)

    def verify_all(items: Sequence[_Item]) -> list[SubscriptionTarget | None]:
        return [directory.verify(i.subscription_id, i.client_state) for i in items]

    async def receive(request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            counters.validations += 1
            return _validation_answer(token)
        counters.requests += 1
        body = await _read_bounded(request, max_body_bytes)
        if body is None:
            counters.malformed += 1
            counters.count("body too large")
            return Response(status_code=413)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        values = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(values, list):
            counters.malformed += 1
            counters.count("not a notification collection")
            log.warning("graph webhook: a body that is not a notification collection, dropped")
            return Response(status_code=400)
        if len(values) > max_items:
            counters.malformed += len(values) - max_items
            counters.count("too many items")
            values = values[:max_items]
        items: list[_Item] = []
        for raw in values:
            parsed = _parse_item(raw)
            if isinstance(parsed, str):
                counters.malformed += 1
                counters.count(parsed)
                continue
            items.append(parsed)
        targets = await run_in_threadpool(verify_all, items) if items else []
        for item, target in zip(items, targets, strict=True):
            if target is None:
                counters.rejected += 1
                counters.count("unknown subscription or clientState")
                # The id is bounded and from a fixed alphabet only when it is one of ours:
                # log its repr, never the client state.
                log.warning(
                    "graph webhook: dropped a notification for subscription %r "
                    "(unknown, or wrong clientState)",
                    item.subscription_id[:64],
                )
                continue
            if item.lifecycle_event is not None:
                counters.lifecycle += 1
                sink.lifecycle(target, item.lifecycle_event)
            elif item.change_type is not None and item.message_id is not None:
                counters.accepted += 1
                sink.notify(target, item.change_type, item.message_id)
        return Response(status_code=202)

    router.add_api_route(NOTIFICATIONS_PATH, receive, methods=["POST"], name="graph_notifications")
    router.add_api_route(LIFECYCLE_PATH, receive, methods=["POST"], name="graph_lifecycle")
    return router
