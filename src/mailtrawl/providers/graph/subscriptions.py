"""Graph change-notification subscriptions on a mailbox folder, over the shared `GraphClient`.

A subscription asks Graph to POST to `notification_url` when a message in one folder (or the
whole mailbox) is created, updated or deleted; the monitor then reads that folder's delta.
Every call goes through `GraphClient.request` (slots, retries, typed errors), like any
other Graph request, with immutable ids preferred, so notified message ids are the same
ids delta queries answer.

Graph's limits for Outlook messages: at most 10,070 minutes of lifetime (the docs say
10,080; the service refuses anything past 10,070), at most 1,000 subscriptions per mailbox,
a `clientState` of at most 128 characters, and an https `notification_url` that answers
the validation handshake within 10 seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mailtrawl.errors import NotFound
from mailtrawl.providers.errors import RequestRejected
from mailtrawl.providers.graph.client import JSON, WELL_KNOWN_FOLDERS, GraphClient, segment

# The permission mailtrawl holds that covers subscribing (Graph needs Mail.Read or more).
SUBSCRIPTION_ROLE = "Mail.ReadWrite"
MAX_LIFETIME = timedelta(minutes=10_070)
# Kept clear of the ceiling, so that clock skew between us and Graph never trips it.
LIFETIME_MARGIN = timedelta(minutes=5)
MAX_CLIENT_STATE = 128
CHANGE_TYPES: tuple[str, ...] = ("created", "updated", "deleted")


@dataclass(frozen=True, slots=True)
class GraphSubscription:
    """One Graph subscription on a mailbox folder (`folder` is None for the whole mailbox)."""

    id: str
    mailbox_id: str
    resource: str
    folder: str | None
    expires_at: datetime
    change_types: tuple[str, ...] = CHANGE_TYPES
    notification_url: str = ""
    lifecycle_url: str | None = None
    # The shared secret Graph echoes in every notification: never shown in logs or reprs.
    client_state: str | None = field(default=None, repr=False)


def subscription_resource(mailbox_id: str, folder: str | None) -> str:
    """The `resource` for messages in a folder (well-known name or id) or the whole mailbox."""
    if not mailbox_id:
        raise ValueError("a mailbox id is required")
    if folder is None:
        return f"users/{mailbox_id}/messages"
    if folder.lower() in WELL_KNOWN_FOLDERS:
        return f"users/{mailbox_id}/mailFolders('{folder.lower()}')/messages"
    return f"users/{mailbox_id}/mailFolders/{segment(folder)}/messages"


def parse_resource(resource: str) -> tuple[str, str | None] | None:
    """(mailbox id, folder or None) from a message subscription's resource, else None."""
    parts = [p for p in resource.strip().strip("/").split("/") if p]
    lowered = [p.lower() for p in parts]
    if len(parts) < 3 or lowered[0] != "users" or lowered[-1] != "messages":
        return None
    if len(parts) == 3:
        return parts[1], None
    if len(parts) == 4 and lowered[2].startswith("mailfolders(") and parts[2].endswith(")"):
        return parts[1], parts[2][len("mailFolders(") : -1].strip("'\"")
    if len(parts) == 5 and lowered[2] == "mailfolders":
        return parts[1], parts[3]
    return None


def clamp_expiry(expires_at: datetime, *, now: datetime | None = None) -> datetime:
    """`expires_at` (UTC), no later than Graph accepts for Outlook messages."""
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    current = now or datetime.now(UTC)
    latest = current + MAX_LIFETIME - LIFETIME_MARGIN
    return min(expires_at.astimezone(UTC), latest)


def _graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise RequestRejected(
            "Microsoft Graph answered a subscription without an expiration time.",
            code="UnexpectedAnswer",
        )
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise RequestRejected(
            f"Microsoft Graph answered an unreadable expiration time ({raw[:40]!r}).",
            code="UnexpectedAnswer",
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _from_json(item: JSON, *, client_state: str | None = None) -> GraphSubscription | None:
    resource = str(item.get("resource") or "")
    target = parse_resource(resource)
    sub_id = item.get("id")
    if target is None or not isinstance(sub_id, str) or not sub_id:
        return None
    change_types = tuple(
        c.strip() for c in str(item.get("changeType") or "").split(",") if c.strip()
    )
    lifecycle = item.get("lifecycleNotificationUrl")
    state = client_state if client_state is not None else item.get("clientState")
    return GraphSubscription(
        id=sub_id,
        mailbox_id=target[0],
        resource=resource,
        folder=target[1],
        expires_at=_parse_time(item.get("expirationDateTime")),
        change_types=change_types or CHANGE_TYPES,
        notification_url=str(item.get("notificationUrl") or ""),
        lifecycle_url=lifecycle if isinstance(lifecycle, str) else None,
        client_state=state if isinstance(state, str) else None,
    )


def _explain_validation(exc: RequestRejected, url: str) -> RequestRejected:
    """Graph's "validation request failed" refusals, as a sentence an administrator can act on."""
    text = str(exc)
    if "validation" not in text.lower():
        return exc
    return RequestRejected(
        f"Microsoft Graph could not validate the notification URL {url}: it must be reachable "
        "from Microsoft over HTTPS with a valid certificate and answer within 10 seconds "
        f"(check public_url). Graph said: {text}",
        status=exc.status,
        code=exc.code,
    )


async def create_subscription(
    client: GraphClient,
    *,
    mailbox_id: str,
    folder: str | None,
    notification_url: str,
    lifecycle_url: str | None,
    client_state: str,
    expires_at: datetime,
    change_types: tuple[str, ...] = CHANGE_TYPES,
) -> GraphSubscription:
    """Subscribe to changes of the messages in `folder` (None: the whole mailbox).

    `expires_at` is lowered to Graph's maximum lifetime when it is further away. Raises
    `RequestRejected` (validation handshake failed, bad URL, too many subscriptions on the
    mailbox), `PermissionMissing`, `MailboxUnavailable`/`AccessPolicyBlocked`, or
    `OutcomeUnknown` when the connection broke after sending (list to find out).
    """
    if not client_state or len(client_state) > MAX_CLIENT_STATE:
        raise ValueError(f"client_state must be 1 to {MAX_CLIENT_STATE} characters")
    unknown = [c for c in change_types if c not in CHANGE_TYPES]
    if unknown or not change_types:
        raise ValueError(f"change types must be among {', '.join(CHANGE_TYPES)}")
    resource = subscription_resource(mailbox_id, folder)
    body: JSON = {
        "changeType": ",".join(change_types),
        "notificationUrl": notification_url,
        "resource": resource,
        "expirationDateTime": _graph_time(clamp_expiry(expires_at)),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    if lifecycle_url:
        body["lifecycleNotificationUrl"] = lifecycle_url
    try:
        answer = await client.post(
            "subscriptions",
            json=body,
            mailbox=mailbox_id,
            role=SUBSCRIPTION_ROLE,
            what=f"The folder {folder or 'messages'} of mailbox {mailbox_id}",
        )
    except RequestRejected as exc:
        raise _explain_validation(exc, notification_url) from exc
    made = _from_json(answer, client_state=client_state)
    if made is None:
        raise RequestRejected(
            "Microsoft Graph answered the new subscription without an id or resource.",
            code="UnexpectedAnswer",
        )
    return replace(made, mailbox_id=mailbox_id, folder=folder)


async def renew_subscription(
    client: GraphClient, subscription: GraphSubscription, expires_at: datetime
) -> GraphSubscription:
    """Move the expiry (this also reauthorizes); `NotFound` means Graph removed it: recreate."""
    answer = await client.patch(
        f"subscriptions/{segment(subscription.id)}",
        json={"expirationDateTime": _graph_time(clamp_expiry(expires_at))},
        mailbox=subscription.mailbox_id,
        role=SUBSCRIPTION_ROLE,
        what=f"The subscription {subscription.id}",
    )
    return replace(subscription, expires_at=_parse_time(answer.get("expirationDateTime")))


async def reauthorize_subscription(client: GraphClient, subscription: GraphSubscription) -> None:
    """Answer a `reauthorizationRequired` challenge without moving the expiry."""
    await client.request(
        "POST",
        f"subscriptions/{segment(subscription.id)}/reauthorize",
        mailbox=subscription.mailbox_id,
        role=SUBSCRIPTION_ROLE,
        what=f"The subscription {subscription.id}",
        idempotent=True,  # repeating a reauthorization changes nothing
    )


async def delete_subscription(client: GraphClient, subscription_id: str) -> bool:
    """Delete a subscription; False when Graph no longer had it (expired or removed)."""
    try:
        await client.delete(
            f"subscriptions/{segment(subscription_id)}",
            role=SUBSCRIPTION_ROLE,
            what=f"The subscription {subscription_id}",
        )
    except NotFound:
        return False
    return True


async def list_subscriptions(
    client: GraphClient, *, mailbox_id: str | None = None
) -> list[GraphSubscription]:
    """This app's message subscriptions (of one mailbox when `mailbox_id` is given)."""
    found: list[GraphSubscription] = []
    async for item in client.paginate("subscriptions", role=SUBSCRIPTION_ROLE):
        sub = _from_json(item)
        if sub is None:
            continue
        if mailbox_id is None or sub.mailbox_id.lower() == mailbox_id.lower():
            found.append(sub)
    return found
