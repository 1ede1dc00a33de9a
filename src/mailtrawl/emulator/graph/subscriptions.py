"""Change notifications: `/subscriptions`, the validation handshake, and webhook delivery.

Graph side: `POST /subscriptions` validates the body the way Graph does (change types, an
Outlook message resource, URLs, `clientState` length, the expiration window, the caller's
Mail permission and the mailbox's application access policy), then runs the validation
handshake against `notificationUrl` and `lifecycleNotificationUrl` before answering 201.
`GET`, `PATCH` (expirationDateTime), `DELETE` and `POST …/reauthorize` manage them.

Delivery: every change in a mailbox already takes the next sequence number (`Mailbox.seq`,
the same numbering delta queries read). A `NotificationHub` per emulator remembers, for each
subscription, the sequence it has seen; a background task compares that with the mailbox's
sequence a few times a second and turns what changed since into notifications (created,
updated, deleted), whatever made the change: control-plane deliveries, Graph writes,
`$batch`. Nothing is done inside the request that caused the change, so it is never slowed.
Several changes made between two looks are reported once each, in sequence order; changes
to one message within one look collapse, as Exchange may collapse them too.

Notifications are POSTed in batches per URL (at most one request in flight per URL, the
others wait and join the next batch); a 2xx answer within 3 seconds is success, anything
else is retried with exponential backoff up to `NotificationSettings.retry_attempts` times
(default 4: waits of 1, 2, 4 and 8 seconds, each capped at `retry_max_seconds`), then
counted as failed. Graph itself keeps trying for up to 4 hours; the emulator's bound keeps
tests short.

Safety: the emulator only ever sends traffic to loopback addresses. A notification or
lifecycle URL whose host is not `localhost` or a loopback IP literal is refused with 400 at
creation (no DNS lookups, so no rebinding). Graph requires https; the emulator also accepts
http for these loopback URLs while `allow_http` is true (the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson

from mailtrawl.emulator.errors import GraphError, access_denied, item_not_found
from mailtrawl.emulator.graph.core import (
    MAIL_READ_BASIC,
    ROUTER,
    GraphRequest,
    GraphResponse,
    no_content,
    ok,
    resolve_user_for_mail,
)
from mailtrawl.emulator.runtime import EmulatorState
from mailtrawl.emulator.state import Mailbox, Message, User

log = logging.getLogger("mailtrawl.emulator.notifications")

CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("missed", "reauthorizationRequired", "subscriptionRemoved")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
MAX_CLIENT_STATE = 128
MAX_URL_LENGTH = 2048
MAX_RESOURCE_LENGTH = 1024
VALIDATION_TIMEOUT = 10.0  # Graph waits this long for the handshake answer
DELIVERY_TIMEOUT = 3.0  # and this long for a notification's 2xx
_VALIDATION_READ_LIMIT = 64 * 1024

NotificationKind = Literal["change", "lifecycle"]


# Settings and statistics ------------------------------------------------------------------


@dataclass
class NotificationSettings:
    """Run-time knobs of delivery, changed through `PATCH /_emulator/settings`
    (`{"notifications": {...}}`)."""

    # Plain http to loopback URLs (Graph itself requires https).
    allow_http: bool = True
    # Verify https webhooks against the system CAs plus the emulator's own CA; switch off
    # for a loopback endpoint with a self-signed certificate.
    verify_tls: bool = True
    retry_attempts: int = 4
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    batch_size: int = 50  # notifications per POST at most
    scan_interval_seconds: float = 0.05
    # reauthorizationRequired goes out once when less than this remains before expiry.
    reauthorize_before_seconds: float = 900.0
    # Graph's live ceiling for Outlook resources (the docs round it to 10,080).
    max_lifetime_minutes: float = 10_070.0
    max_per_mailbox: int = 1000

    def update(self, changes: Any) -> None:
        """Apply a partial update; unknown names and wrong types raise ValueError."""
        if not isinstance(changes, dict):
            raise ValueError("notifications must be an object")
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting notifications.{name}")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"notifications.{name} must be true or false")
                setattr(self, name, value)
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"notifications.{name} must be a non-negative number")
            setattr(self, name, int(value) if isinstance(current, int) else float(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeliveryStats:
    delivered: int = 0  # change notifications answered 2xx
    lifecycle_delivered: int = 0
    requests: int = 0  # POSTs sent, retries included
    retried: int = 0  # POSTs repeated after a failure
    failed: int = 0  # notifications given up after the last retry
    dropped: int = 0  # notifications not sent because the subscription was paused
    expired: int = 0  # subscriptions removed at expiry
    validations: int = 0
    validation_failures: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "lifecycleDelivered": self.lifecycle_delivered,
            "requests": self.requests,
            "retried": self.retried,
            "failed": self.failed,
            "dropped": self.dropped,
            "expired": self.expired,
            "validations": self.validations,
            "validationFailures": self.validation_failures,
        }


# Subscriptions ------------------------------------------------------------------------------


@dataclass
class Subscription:
    id: str
    app_id: str
    creator_id: str
    user_id: str
    resource: str
    folder_id: str | None  # None: the whole mailbox (`users/{id}/messages`)
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    tls_version: str
    immutable_ids: bool
    seen_seq: int
    paused: bool = False
    dropped: int = 0
    reauthorization_sent: bool = False
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": graph_time(self.expires),
            "creatorId": self.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


@dataclass(slots=True)
class _Pending:
    item: dict[str, Any]
    subscription_id: str
    kind: NotificationKind


@dataclass(slots=True)
class _Change:
    seq: int
    change_type: str
    folder_id: str
    rest_id: str
    immutable_id: str
    etag: str | None


def graph_time(value: datetime) -> str:
    """Graph's subscription time format: seven fractional digits and `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


# The hub --------------------------------------------------------------------------------------


class NotificationHub:
    """Subscriptions of one emulator, and the task that finds changes and delivers them."""

    def __init__(self, state: EmulatorState) -> None:
        self._state_ref = weakref.ref(state)
        self.settings = NotificationSettings()
        self.stats = DeliveryStats()
        self.subscriptions: dict[str, Subscription] = {}
        self._pending: dict[str, list[_Pending]] = {}
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._clients: dict[bool, httpx.AsyncClient] = {}

    @property
    def state(self) -> EmulatorState:
        state = self._state_ref()
        if state is None:  # pragma: no cover - the hub never outlives its emulator
            raise RuntimeError("the emulator state is gone")
        return state

    # Bookkeeping ----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every subscription, queued notification, setting and counter."""
        for task in list(self._tasks):
            task.cancel()
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self._tasks.clear()
        self.subscriptions.clear()
        self._pending.clear()
        self._in_flight.clear()
        self.settings = NotificationSettings()
        self.stats = DeliveryStats()

    def for_mailbox(self, user_id: str) -> int:
        return sum(1 for s in self.subscriptions.values() if s.user_id == user_id)

    def add(self, sub: Subscription) -> None:
        self.subscriptions[sub.id] = sub
        self._ensure_worker()

    def remove(self, sub_id: str) -> Subscription | None:
        return self.subscriptions.pop(sub_id, None)

    def lifecycle(self, sub: Subscription, event: str) -> bool:
        """Queue a lifecycle notification (when the subscription has a lifecycle URL)."""
        if not sub.lifecycle_url:
            return False
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": graph_time(sub.expires),
            "tenantId": self.state.tenant.id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        self._queue(sub.lifecycle_url, _Pending(item, sub.id, "lifecycle"))
        return True

    def poke(self) -> None:
        """Look for changes now rather than at the next tick (after a control-plane delivery)."""
        if self._wake is not None and self.subscriptions:
            self._wake.set()

    def _queue(self, url: str, pending: _Pending) -> None:
        self._pending.setdefault(url, []).append(pending)
        self._ensure_worker()
        if self._wake is not None:
            self._wake.set()

    def _ensure_worker(self) -> None:
        if self._worker is not None and not self._worker.done():
            return
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._worker = loop.create_task(self._run())

    def _idle(self) -> bool:
        return not self.subscriptions and not self._in_flight and not any(self._pending.values())

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        try:
            while True:
                wake.clear()
                try:
                    self.scan()
                except Exception:  # a bug here must not stop notifications for good
                    log.exception("change notification scan failed")
                self._dispatch()
                if self._idle():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        wake.wait(), timeout=max(0.005, self.settings.scan_interval_seconds)
                    )
        finally:
            if self._worker is asyncio.current_task():
                self._worker = None

    # Finding changes ------------------------------------------------------------------

    def scan(self) -> None:
        """Expire, warn before expiry, and queue notifications for changes since last look."""
        state = self.state
        now = state.now()
        by_user: dict[str, list[Subscription]] = {}
        for sub in list(self.subscriptions.values()):
            if sub.expires <= now:
                self.remove(sub.id)
                self.stats.expired += 1
                continue
            remaining = (sub.expires - now).total_seconds()
            if (
                not sub.reauthorization_sent
                and remaining < self.settings.reauthorize_before_seconds
            ):
                sub.reauthorization_sent = True
                self.lifecycle(sub, "reauthorizationRequired")
            by_user.setdefault(sub.user_id, []).append(sub)
        for user_id, subs in by_user.items():
            user = state.tenant.users.get(user_id)
            if user is None or not user.has_mailbox:
                self._remove_all(subs)
                continue
            reachable = [s for s in subs if state.app_may_access(s.app_id, user)]
            self._remove_all([s for s in subs if s not in reachable])
            if reachable:
                self._scan_mailbox(state.mailbox(user), reachable)

    def _remove_all(self, subs: Iterable[Subscription]) -> None:
        """The mailbox went away or the app lost access: Graph removes the subscription."""
        for sub in subs:
            self.lifecycle(sub, "subscriptionRemoved")
            self.remove(sub.id)

    def _scan_mailbox(self, box: Mailbox, subs: list[Subscription]) -> None:
        for sub in subs:
            if box.seq < sub.seen_seq:  # the mailbox was rebuilt from scratch
                sub.seen_seq = box.seq
        since = min(s.seen_seq for s in subs)
        if box.seq <= since:
            return
        changes = _changes_since(box, since)
        for sub in subs:
            for change in changes:
                if change.seq <= sub.seen_seq or change.change_type not in sub.change_types:
                    continue
                if sub.folder_id is not None:
                    if change.folder_id != sub.folder_id:
                        continue
                elif box.is_dumpster(change.folder_id):
                    continue  # `/users/{id}/messages` does not see Recoverable Items
                if sub.paused:
                    sub.dropped += 1
                    self.stats.dropped += 1
                    continue
                self._queue(sub.notification_url, self._change_item(sub, box, change))
            sub.seen_seq = box.seq

    def _change_item(self, sub: Subscription, box: Mailbox, change: _Change) -> _Pending:
        message_id = change.immutable_id if sub.immutable_ids else change.rest_id
        path = f"Users/{box.user_id}/Messages/{message_id}"
        resource_data: dict[str, Any] = {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": path,
        }
        if change.etag is not None:
            resource_data["@odata.etag"] = f'W/"{change.etag}"'
        resource_data["id"] = message_id
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": graph_time(sub.expires),
            "changeType": change.change_type,
            "resource": path,
            "resourceData": resource_data,
            "clientState": sub.client_state,
            "tenantId": self.state.tenant.id,
        }
        return _Pending(item, sub.id, "change")

    # Delivering -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        for url, queue in self._pending.items():
            if url in self._in_flight or not queue:
                continue
            # Changes for subscriptions deleted meanwhile are not sent; lifecycle events are.
            live = [
                p for p in queue if p.kind == "lifecycle" or p.subscription_id in self.subscriptions
            ]
            size = max(1, self.settings.batch_size)
            batch, rest = live[:size], live[size:]
            self._pending[url] = rest
            if not batch:
                continue
            self._in_flight.add(url)
            task = asyncio.get_running_loop().create_task(self._deliver(url, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for url in [u for u, q in self._pending.items() if not q and u not in self._in_flight]:
            del self._pending[url]

    async def _deliver(self, url: str, batch: list[_Pending]) -> None:
        body = orjson.dumps({"value": [p.item for p in batch]})
        attempt = 0
        try:
            while True:
                if await self._post(url, body):
                    changes = sum(1 for p in batch if p.kind == "change")
                    self.stats.delivered += changes
                    self.stats.lifecycle_delivered += len(batch) - changes
                    return
                if attempt >= self.settings.retry_attempts:
                    self.stats.failed += len(batch)
                    log.warning("gave up delivering %d notification(s) to %s", len(batch), url)
                    return
                delay = min(
                    self.settings.retry_base_seconds * (2**attempt), self.settings.retry_max_seconds
                )
                attempt += 1
                self.stats.retried += 1
                await asyncio.sleep(delay)
        finally:
            self._in_flight.discard(url)
            if self._wake is not None:
                self._wake.set()

    async def _post(self, url: str, body: bytes) -> bool:
        self.stats.requests += 1
        client = self._client()
        try:
            response = await asyncio.wait_for(
                client.post(
                    url,
                    content=body,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                ),
                timeout=DELIVERY_TIMEOUT,
            )
        except (TimeoutError, httpx.HTTPError):
            return False
        return 200 <= response.status_code < 300

    def _client(self) -> httpx.AsyncClient:
        verify = self.settings.verify_tls
        client = self._clients.get(verify)
        if client is None:
            client = httpx.AsyncClient(
                verify=self._ssl_context() if verify else False,
                trust_env=False,  # never through a proxy: loopback only
                follow_redirects=False,
                timeout=httpx.Timeout(VALIDATION_TIMEOUT),
                headers={"User-Agent": "mailtrawl-emulator-notifications"},
            )
            self._clients[verify] = client
        return client

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        own_ca = self.state.state_dir / "tls" / "ca.pem"
        if own_ca.exists():
            context.load_verify_locations(cafile=str(own_ca))
        return context

    async def validate(self, url: str) -> None:
        """Graph's handshake: POST `?validationToken=…`, expect 200 and the token back."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        self.stats.validations += 1
        try:
            response = await asyncio.wait_for(
                self._client().post(
                    url,
                    params={"validationToken": token},
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                ),
                timeout=VALIDATION_TIMEOUT,
            )
        except TimeoutError:
            self.stats.validation_failures += 1
            raise _invalid("Subscription validation request timeout.") from None
        except httpx.HTTPError as exc:
            self.stats.validation_failures += 1
            raise _invalid(
                f"Subscription validation request failed. HTTP request failed: {type(exc).__name__}."
            ) from None
        if response.status_code != 200:
            self.stats.validation_failures += 1
            raise _invalid(
                "Subscription validation request failed. Notification endpoint must respond "
                "with 200 OK to validation request."
            )
        if response.content[:_VALIDATION_READ_LIMIT].decode("utf-8", "replace") != token:
            self.stats.validation_failures += 1
            raise _invalid(
                "Subscription validation request failed. Response must exactly match "
                "validationToken query parameter."
            )


def _changes_since(box: Mailbox, since: int) -> list[_Change]:
    """Changes after sequence `since`, oldest first: arrivals in a folder, in-place updates,
    and departures (tombstones)."""
    changes: list[_Change] = []
    for msg in box.messages.values():
        if msg.seq <= since:
            continue
        if msg.folder_seq > since:
            changes.append(_change(msg.folder_seq, "created", msg))
        if msg.seq > msg.folder_seq:
            changes.append(_change(msg.seq, "updated", msg))
    for tomb in reversed(box.tombstones):  # appended in sequence order
        if tomb.seq <= since:
            break
        changes.append(
            _Change(tomb.seq, "deleted", tomb.folder_id, tomb.rest_id, tomb.immutable_id, None)
        )
    changes.sort(key=lambda c: c.seq)
    return changes


def _change(seq: int, change_type: str, msg: Message) -> _Change:
    return _Change(seq, change_type, msg.folder_id, msg.rest_id, msg.immutable_id, msg.change_key)


_HUBS: weakref.WeakKeyDictionary[EmulatorState, NotificationHub] = weakref.WeakKeyDictionary()


def hub_for(state: EmulatorState) -> NotificationHub:
    """The emulator's notification hub (created on first use)."""
    hub = _HUBS.get(state)
    if hub is None:
        hub = _HUBS[state] = NotificationHub(state)
    return hub


# Validation of requests ---------------------------------------------------------------------


def _invalid(message: str, code: str = "InvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def _not_found() -> GraphError:
    return GraphError(404, "ResourceNotFound", "The object was not found.")


def _parse_time(raw: Any) -> datetime:
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("The 'expirationDateTime' property is required.")
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _invalid(f"Invalid expirationDateTime '{raw[:64]}'.") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _check_expiry(hub: NotificationHub, expires: datetime, now: datetime) -> None:
    if expires <= now:
        raise _invalid("Subscription expiration time must be in the future.", code="ExtensionError")
    limit = hub.settings.max_lifetime_minutes
    if expires - now > timedelta(minutes=limit):
        raise GraphError(
            400,
            "ExtensionError",
            f"Subscription expiration can only be {limit:g} minutes in the future.",
        )


def _check_url(hub: NotificationHub, raw: Any, name: str, *, required: bool) -> str | None:
    if raw is None and not required:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid(f"The '{name}' property is required.")
    url = raw.strip()
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"The '{name}' is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise _invalid(f"The '{name}' is not a valid URL.") from None
    if parts.scheme not in ("https", "http") or not host:
        raise _invalid(f"The '{name}' must be an absolute https URL.")
    if parts.username is not None or parts.password is not None:
        raise _invalid(f"The '{name}' must not carry credentials.")
    if not _is_loopback(host):
        raise _invalid(
            f"The emulator only delivers to loopback addresses (127.0.0.1, ::1, localhost); "
            f"'{name}' points at '{host[:100]}'."
        )
    if parts.scheme == "http" and not hub.settings.allow_http:
        raise _invalid(f"The '{name}' must use the HTTPS protocol.")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class _Target:
    user: User
    folder_id: str | None


def _target(request: GraphRequest, state: EmulatorState, raw: Any) -> _Target:
    """The mailbox (and folder) an Outlook message resource names."""
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("The 'resource' property is required.")
    if len(raw) > MAX_RESOURCE_LENGTH:
        raise _invalid("The 'resource' property is too long.")
    parts = [p for p in raw.strip().strip("/").split("/") if p]
    lowered = [p.lower() for p in parts]
    if lowered and lowered[0] == "me":
        raise GraphError(
            400, "BadRequest", "/me request is only valid with delegated authentication flow."
        )
    folder_ref: str | None = None
    if len(parts) == 3 and lowered[0] == "users" and lowered[2] == "messages":
        pass
    elif (
        len(parts) == 4
        and lowered[0] == "users"
        and lowered[2].startswith("mailfolders(")
        and parts[2].endswith(")")
        and lowered[3] == "messages"
    ):
        folder_ref = parts[2][len("mailFolders(") : -1].strip("'\"")
    elif (
        len(parts) == 5
        and lowered[0] == "users"
        and lowered[2] == "mailfolders"
        and lowered[4] == "messages"
    ):
        folder_ref = parts[3]
    else:
        raise _invalid(
            f"The resource '{raw[:200]}' is not supported: the emulator models "
            "users/{id}/messages and users/{id}/mailFolders/{id}/messages."
        )
    user = resolve_user_for_mail(request, state, parts[1])
    if folder_ref is None:
        return _Target(user, None)
    if not folder_ref:
        raise item_not_found()
    folder = state.mailbox(user).folder(folder_ref)
    if folder is None:
        raise item_not_found()
    return _Target(user, folder.id)


def _change_types(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("The 'changeType' property is required.")
    found: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if name not in CHANGE_TYPES:
            raise _invalid(
                f"Invalid changeType '{name[:40]}'; supported values are created, updated, deleted."
            )
        if name not in found:
            found.append(name)
    return tuple(found)


def _own(request: GraphRequest, state: EmulatorState) -> Subscription:
    """The subscription named in the path, if the calling app created it."""
    sub = hub_for(state).subscriptions.get(request.params["id"])
    if sub is None or sub.app_id != request.app_id:
        raise _not_found()
    return sub


def _reauthorize(request: GraphRequest, state: EmulatorState, sub: Subscription) -> None:
    """Renewing or reauthorizing checks the app's access again, as Graph does."""
    if not request.roles & MAIL_READ_BASIC:
        raise access_denied()
    user = state.tenant.users.get(sub.user_id)
    if user is None:
        raise _not_found()
    resolve_user_for_mail(request, state, user.id)


# Routes -----------------------------------------------------------------------------------------

_CREATE_FIELDS = frozenset(
    {
        "@odata.type",
        "changeType",
        "notificationUrl",
        "lifecycleNotificationUrl",
        "resource",
        "expirationDateTime",
        "clientState",
        "latestSupportedTlsVersion",
        "includeResourceData",
        "notificationUrlAppId",
    }
)


@ROUTER.add("POST", "subscriptions", frozenset(), "subscriptions")
async def create_subscription(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    hub = hub_for(state)
    # Subscribing to messages needs read access to them (Mail.ReadBasic or more).
    if not request.roles & MAIL_READ_BASIC:
        raise access_denied()
    payload = request.json()
    if not isinstance(payload, dict):
        raise _invalid("The request body must be a subscription object.")
    unknown = sorted(k for k in payload if k not in _CREATE_FIELDS)
    if unknown:
        raise GraphError(
            400,
            "BadRequest",
            f"The property '{unknown[0][:64]}' does not exist on type 'microsoft.graph.subscription'.",
        )
    change_types = _change_types(payload.get("changeType"))
    notification_url = _check_url(
        hub, payload.get("notificationUrl"), "notificationUrl", required=True
    )
    assert notification_url is not None
    lifecycle_url = _check_url(
        hub, payload.get("lifecycleNotificationUrl"), "lifecycleNotificationUrl", required=False
    )
    client_state = payload.get("clientState")
    if client_state is not None and (
        not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE
    ):
        raise _invalid(
            f"The 'clientState' property must be a string of at most {MAX_CLIENT_STATE} characters."
        )
    if payload.get("includeResourceData"):
        raise _invalid(
            "includeResourceData requires an encryptionCertificate; rich notifications are "
            "not modelled by the emulator."
        )
    tls_version = payload.get("latestSupportedTlsVersion") or "v1_2"
    if tls_version not in TLS_VERSIONS:
        raise _invalid(f"Invalid latestSupportedTlsVersion '{str(tls_version)[:16]}'.")
    expires = _parse_time(payload.get("expirationDateTime"))
    _check_expiry(hub, expires, state.now())
    target = _target(request, state, payload.get("resource"))
    if hub.for_mailbox(target.user.id) >= hub.settings.max_per_mailbox:
        raise GraphError(
            403,
            "ExtensionError",
            "Operation: Create; Exception: [Status Code: Forbidden; Reason: The maximum number "
            f"of subscriptions ({hub.settings.max_per_mailbox}) for this mailbox has been reached.]",
        )
    await hub.validate(notification_url)
    if lifecycle_url is not None:
        await hub.validate(lifecycle_url)
    app = state.tenant.apps.get(request.app_id)
    box = state.mailbox(target.user)  # fetched after the awaits: the cache may have moved
    sub = Subscription(
        id=str(uuid.uuid4()),
        app_id=request.app_id,
        creator_id=app.object_id if app is not None and app.object_id else request.app_id,
        user_id=target.user.id,
        resource=str(payload["resource"]).strip(),
        folder_id=target.folder_id,
        change_types=change_types,
        notification_url=notification_url,
        lifecycle_url=lifecycle_url,
        client_state=client_state,
        expires=expires,
        tls_version=str(tls_version),
        immutable_ids=request.immutable_ids,
        seen_seq=box.seq,
    )
    hub.add(sub)
    body = {
        "@odata.context": f"{request.base_url}/v1.0/$metadata#subscriptions/$entity",
        **sub.to_json(),
    }
    return ok(body, status=201)


@ROUTER.add("GET", "subscriptions", frozenset(), "subscriptions")
def list_subscriptions(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    hub = hub_for(state)
    now = state.now()
    mine = [
        s.to_json()
        for s in hub.subscriptions.values()
        if s.app_id == request.app_id and s.expires > now
    ]
    return ok({"@odata.context": f"{request.base_url}/v1.0/$metadata#subscriptions", "value": mine})


@ROUTER.add("GET", "subscriptions/{id}", frozenset(), "subscriptions")
def get_subscription(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    sub = _own(request, state)
    if sub.expires <= state.now():
        raise _not_found()
    return ok(
        {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#subscriptions/$entity",
            **sub.to_json(),
        }
    )


@ROUTER.add("PATCH", "subscriptions/{id}", frozenset(), "subscriptions")
def update_subscription(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    hub = hub_for(state)
    sub = _own(request, state)
    now = state.now()
    if sub.expires <= now:
        raise _not_found()
    payload = request.json()
    if not isinstance(payload, dict) or "expirationDateTime" not in payload:
        raise _invalid(
            "Subscription must contain either the 'expirationDateTime' or 'notificationUrl' "
            "property and its value."
        )
    other = sorted(k for k in payload if k not in ("expirationDateTime", "@odata.type"))
    if other:
        raise _invalid(f"Only expirationDateTime can be updated; got '{other[0][:64]}'.")
    expires = _parse_time(payload["expirationDateTime"])
    _check_expiry(hub, expires, now)
    _reauthorize(request, state, sub)
    if expires != sub.expires:
        sub.reauthorization_sent = False
    sub.expires = expires
    return ok(
        {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#subscriptions/$entity",
            **sub.to_json(),
        }
    )


@ROUTER.add("DELETE", "subscriptions/{id}", frozenset(), "subscriptions")
def delete_subscription(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    sub = _own(request, state)
    hub_for(state).remove(sub.id)
    return no_content()


@ROUTER.add("POST", "subscriptions/{id}/reauthorize", frozenset(), "subscriptions")
def reauthorize_subscription(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    sub = _own(request, state)
    if sub.expires <= state.now():
        raise _not_found()
    _reauthorize(request, state, sub)
    return no_content()


# Control plane ------------------------------------------------------------------------------------


def control_json(state: EmulatorState, sub: Subscription) -> dict[str, Any]:
    """A subscription as the control plane shows it (mailbox, folder, delivery state)."""
    user = state.tenant.users.get(sub.user_id)
    return {
        **sub.to_json(),
        "mailbox": user.user_principal_name if user is not None else None,
        "userId": sub.user_id,
        "folderId": sub.folder_id,
        "paused": sub.paused,
        "dropped": sub.dropped,
        "immutableIds": sub.immutable_ids,
    }
