"""Graph change notifications in the emulator: `/subscriptions` (create, validate, renew,
reauthorize, delete, limits, errors), delivery of created/updated/deleted notifications for
control-plane deliveries and Graph writes, batching, retries, expiry, lifecycle events and
the loopback-only rule. A small threaded HTTP server in the test process plays the webhook."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.graph_assertions import assert_graph_error

CLIENT_STATE = "s3cret-client-state"
WAIT = 5.0


class Webhook:
    """A loopback webhook: answers validation handshakes and records notification bodies.

    `validation` chooses how the handshake is answered ("echo", "wrong", "error");
    `failures` is how many notification POSTs to answer 500 before answering 202.
    """

    def __init__(self) -> None:
        self.validation = "echo"
        self.failures = 0
        self.validations: list[tuple[str, str, str]] = []  # (path, token, content type)
        self.posts: list[tuple[str, dict[str, Any]]] = []  # (path, body)
        self.attempts = 0
        self._changed = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                token = parse_qs(parts.query).get("validationToken")
                if token is not None:
                    hook._validation(self, parts.path, token[0])
                    return
                with hook._changed:
                    hook.attempts += 1
                    failing = hook.failures > 0
                    if failing:
                        hook.failures -= 1
                    else:
                        hook.posts.append((parts.path, json.loads(raw)))
                    hook._changed.notify_all()
                self.send_response(500 if failing else 202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _validation(self, handler: BaseHTTPRequestHandler, path: str, token: str) -> None:
        self.validations.append((path, token, handler.headers.get("Content-Type", "")))
        if self.validation == "error":
            handler.send_response(500)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        answer = (token if self.validation == "echo" else "not the token").encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.base}/notify"

    @property
    def lifecycle_url(self) -> str:
        return f"{self.base}/lifecycle"

    def items(self, path: str = "/notify") -> list[dict[str, Any]]:
        with self._changed:
            return [item for p, body in self.posts if p == path for item in body["value"]]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], path: str = "/notify"
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT
        with self._changed:
            while True:
                items = [i for p, body in self.posts if p == path for i in body["value"]]
                if predicate(items):
                    return items
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; {path} got {items}")
                self._changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


def _expiry(minutes: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _body(webhook: Webhook, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "changeType": "created,updated,deleted",
        "notificationUrl": webhook.url,
        "lifecycleNotificationUrl": webhook.lifecycle_url,
        "resource": "users/bob@contoso.com/mailFolders('inbox')/messages",
        "expirationDateTime": _expiry(),
        "clientState": CLIENT_STATE,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _subscribe(graph: httpx.Client, webhook: Webhook, **overrides: Any) -> dict[str, Any]:
    response = graph.post("subscriptions", json=_body(webhook, **overrides))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "news@fabrikam.example"
    msg["To"] = "bob@contoso.com"
    msg["Subject"] = subject
    msg.set_content(f"Body of {subject}")
    return msg.as_bytes()


def _deliver(
    emulator: EmulatorProcess, subject: str, mailbox: str = "bob@contoso.com", copies: int = 1
) -> list[dict[str, Any]]:
    body = {
        "mime": base64.b64encode(_mail(subject)).decode(),
        "recipients": [mailbox],
        "copies": copies,
    }
    return list(emulator.control("POST", "/deliver", body)["delivered"])


def _user_id(graph: httpx.Client, upn: str) -> str:
    return str(graph.get(f"users/{upn}").json()["id"])


# Creating and managing -------------------------------------------------------------------


def test_create_runs_the_validation_handshake_and_answers_the_subscription(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook)

    assert {p for p, _, _ in webhook.validations} == {"/notify", "/lifecycle"}
    for _, token, content_type in webhook.validations:
        assert token.startswith("Validation: ")  # spaces and colons: clients must decode
        assert content_type.startswith("text/plain")
    assert sub["@odata.context"].endswith("$metadata#subscriptions/$entity")
    assert sub["resource"] == "users/bob@contoso.com/mailFolders('inbox')/messages"
    assert sub["applicationId"] == emulator.info["client_id"]
    assert sub["changeType"] == "created,updated,deleted"
    assert sub["clientState"] == CLIENT_STATE
    assert sub["notificationUrl"] == webhook.url
    assert sub["lifecycleNotificationUrl"] == webhook.lifecycle_url
    assert sub["includeResourceData"] is False
    assert sub["latestSupportedTlsVersion"] == "v1_2"
    assert sub["notificationUrlAppId"] is None
    assert sub["creatorId"]
    assert sub["expirationDateTime"].endswith("Z")

    listed = graph.get("subscriptions").json()["value"]
    assert [s["id"] for s in listed] == [sub["id"]]
    got = graph.get(f"subscriptions/{sub['id']}").json()
    assert got["resource"] == sub["resource"]
    [control] = emulator.subscriptions()
    assert control["mailbox"] == "bob@contoso.com"
    assert emulator.notification_stats()["validations"] == 2


def test_renew_reauthorize_and_delete(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook, lifecycleNotificationUrl=None)
    later = _expiry(3 * 24 * 60)
    renewed = graph.patch(f"subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["expirationDateTime"][:19] == later[:19]

    answer = graph.post(f"subscriptions/{sub['id']}/reauthorize")
    assert answer.status_code == 204
    assert not answer.content

    assert graph.delete(f"subscriptions/{sub['id']}").status_code == 204
    assert graph.get("subscriptions").json()["value"] == []
    for response in (
        graph.get(f"subscriptions/{sub['id']}"),
        graph.patch(f"subscriptions/{sub['id']}", json={"expirationDateTime": later}),
        graph.delete(f"subscriptions/{sub['id']}"),
        graph.post(f"subscriptions/{sub['id']}/reauthorize"),
    ):
        error = assert_graph_error(response, 404, "ResourceNotFound")
        assert error["message"] == "The object was not found."


def test_renewal_beyond_the_limit_and_other_properties_are_refused(
    graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook)
    too_far = graph.patch(
        f"subscriptions/{sub['id']}", json={"expirationDateTime": _expiry(10_080)}
    )
    error = assert_graph_error(too_far, 400, "ExtensionError")
    assert error["message"] == "Subscription expiration can only be 10070 minutes in the future."
    assert_graph_error(
        graph.patch(f"subscriptions/{sub['id']}", json={"resource": "users/x/messages"}),
        400,
        "InvalidRequest",
    )


@pytest.mark.parametrize(
    ("overrides", "status", "code", "fragment"),
    [
        ({"changeType": "created,moved"}, 400, "InvalidRequest", "changeType"),
        ({"changeType": None}, 400, "InvalidRequest", "changeType"),
        ({"notificationUrl": None}, 400, "InvalidRequest", "notificationUrl"),
        ({"clientState": "x" * 129}, 400, "InvalidRequest", "clientState"),
        ({"expirationDateTime": None}, 400, "InvalidRequest", "expirationDateTime"),
        ({"expirationDateTime": "soon"}, 400, "InvalidRequest", "expirationDateTime"),
        ({"expirationDateTime": "2020-01-01T00:00:00Z"}, 400, "ExtensionError", "future"),
        ({"expirationDateTime": "+10081"}, 400, "ExtensionError", "10070 minutes"),
        ({"resource": "users/bob@contoso.com/events"}, 400, "InvalidRequest", "not supported"),
        ({"resource": "me/messages"}, 400, "BadRequest", "/me"),
        ({"resource": "users/nobody@contoso.com/messages"}, 404, "ErrorInvalidUser", "invalid"),
        (
            {"resource": "users/bob@contoso.com/mailFolders/nosuchfolder/messages"},
            404,
            "ErrorItemNotFound",
            "not found",
        ),
        ({"includeResourceData": True}, 400, "InvalidRequest", "encryptionCertificate"),
        ({"notificationUrl": "https://example.com/hook"}, 400, "InvalidRequest", "loopback"),
        (
            {"lifecycleNotificationUrl": "https://10.0.0.1/hook"},
            400,
            "InvalidRequest",
            "loopback",
        ),
        ({"notificationUrl": "ftp://127.0.0.1/hook"}, 400, "InvalidRequest", "https"),
        ({"notificationUrl": "https://u:p@127.0.0.1/x"}, 400, "InvalidRequest", "credentials"),
        ({"colour": "blue"}, 400, "BadRequest", "colour"),
    ],
)
def test_create_is_validated_like_graph(
    graph: httpx.Client,
    webhook: Webhook,
    overrides: dict[str, Any],
    status: int,
    code: str,
    fragment: str,
) -> None:
    if overrides.get("expirationDateTime") == "+10081":
        overrides = {**overrides, "expirationDateTime": _expiry(10_081)}
    body = _body(webhook)
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    error = assert_graph_error(graph.post("subscriptions", json=body), status, code)
    assert fragment in error["message"]
    assert graph.get("subscriptions").json()["value"] == []


def test_all_documented_resource_forms_are_accepted(graph: httpx.Client, webhook: Webhook) -> None:
    bob = _user_id(graph, "bob@contoso.com")
    inbox = graph.get("users/bob@contoso.com/mailFolders/inbox").json()["id"]
    for resource in (
        "users/bob@contoso.com/messages",
        f"/users/{bob}/messages",
        f"users/{bob}/mailFolders('Inbox')/messages",
        f"users/{bob}/mailFolders/{inbox}/messages",
        "users/bob@contoso.com/mailFolders/junkemail/messages",
    ):
        _subscribe(graph, webhook, resource=resource)
    assert len(graph.get("subscriptions").json()["value"]) == 5


def test_failed_validation_refuses_the_subscription(graph: httpx.Client, webhook: Webhook) -> None:
    webhook.validation = "wrong"
    error = assert_graph_error(
        graph.post("subscriptions", json=_body(webhook)), 400, "InvalidRequest"
    )
    assert error["message"] == (
        "Subscription validation request failed. Response must exactly match validationToken "
        "query parameter."
    )
    webhook.validation = "error"
    error = assert_graph_error(
        graph.post("subscriptions", json=_body(webhook)), 400, "InvalidRequest"
    )
    assert "must respond with 200 OK" in error["message"]
    closed = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there
    error = assert_graph_error(
        graph.post("subscriptions", json=_body(webhook, notificationUrl=closed)),
        400,
        "InvalidRequest",
    )
    assert error["message"].startswith("Subscription validation request failed.")
    assert graph.get("subscriptions").json()["value"] == []


def test_a_non_loopback_url_gets_no_traffic(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    for url in ("https://graph-hook.example/n", "http://192.168.1.10/n", "https://[2001:db8::1]/"):
        assert_graph_error(
            graph.post("subscriptions", json=_body(webhook, notificationUrl=url)),
            400,
            "InvalidRequest",
        )
    assert emulator.notification_stats()["validations"] == 0
    assert webhook.validations == []


def test_http_is_refused_when_the_emulator_is_told_to_be_strict(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    emulator.settings(notifications={"allow_http": False})
    error = assert_graph_error(
        graph.post("subscriptions", json=_body(webhook)), 400, "InvalidRequest"
    )
    assert "HTTPS" in error["message"]
    assert emulator.control("GET", "/settings")["notifications"]["allow_http"] is False


def test_permissions_access_policies_and_the_mailbox_limit(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    app = emulator.control(
        "POST", "/apps", {"displayName": "users only", "permissions": {"User.Read.All": True}}
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as other:
        assert_graph_error(
            other.post("subscriptions", json=_body(webhook)), 403, "ErrorAccessDenied"
        )
        # Another app neither sees nor manages this app's subscriptions.
        sub = _subscribe(graph, webhook)
        assert other.get("subscriptions").json()["value"] == []
        assert_graph_error(other.delete(f"subscriptions/{sub['id']}"), 404, "ResourceNotFound")

    emulator.control(
        "PUT",
        "/access-policies",
        [{"appId": emulator.info["client_id"], "group": "Sales Team", "mode": "DenyAccess"}],
    )
    error = assert_graph_error(
        graph.post("subscriptions", json=_body(webhook)), 403, "ErrorAccessDenied"
    )
    assert "AccessPolicy" in error["message"]
    emulator.control("PUT", "/access-policies", [])

    emulator.settings(notifications={"max_per_mailbox": 2})
    _subscribe(graph, webhook)
    assert_graph_error(graph.post("subscriptions", json=_body(webhook)), 403, "ExtensionError")
    # The limit is per mailbox: another mailbox still has room.
    _subscribe(graph, webhook, resource="users/alice@contoso.com/messages")


# Delivery --------------------------------------------------------------------------------------


def test_control_plane_delivery_notifies_created_with_graphs_payload(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook)
    [delivered] = _deliver(emulator, "Quarterly figures")

    [item] = webhook.wait_for(lambda items: len(items) >= 1)
    bob = _user_id(graph, "bob@contoso.com")
    path = f"Users/{bob}/Messages/{delivered['id']}"
    assert item["subscriptionId"] == sub["id"]
    assert item["subscriptionExpirationDateTime"] == sub["expirationDateTime"]
    assert item["changeType"] == "created"
    assert item["clientState"] == CLIENT_STATE
    assert item["tenantId"] == emulator.tenant_id
    assert item["resource"] == path
    data = item["resourceData"]
    assert data["@odata.type"] == "#Microsoft.Graph.Message"
    assert data["@odata.id"] == path
    assert data["id"] == delivered["id"]
    assert data["@odata.etag"].startswith('W/"')
    stats = emulator.notification_stats()
    assert stats["delivered"] == 1
    assert stats["failed"] == 0


def test_graph_writes_notify_updated_and_deleted(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    _subscribe(graph, webhook)
    [first, second] = _deliver(emulator, "Two of them", copies=2)
    webhook.wait_for(lambda items: len(items) >= 2)

    assert graph.patch(
        f"users/bob@contoso.com/messages/{first['id']}", json={"isRead": True}
    ).is_success
    items = webhook.wait_for(lambda items: len(items) >= 3)
    assert (items[2]["changeType"], items[2]["resourceData"]["id"]) == ("updated", first["id"])

    assert graph.delete(f"users/bob@contoso.com/messages/{first['id']}").status_code == 204
    moved = graph.post(
        f"users/bob@contoso.com/messages/{second['id']}/move", json={"destinationId": "junkemail"}
    )
    assert moved.status_code == 201
    items = webhook.wait_for(lambda items: len(items) >= 5)
    assert [(i["changeType"], i["resourceData"]["id"]) for i in items[3:]] == [
        ("deleted", first["id"]),
        ("deleted", second["id"]),
    ]
    # Items that are gone carry no etag.
    assert "@odata.etag" not in items[3]["resourceData"]


def test_mailbox_wide_subscription_sees_moves_but_not_the_dumpster(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    _subscribe(
        graph, webhook, resource="users/bob@contoso.com/messages", changeType="created,deleted"
    )
    [msg] = _deliver(emulator, "Moving around")
    webhook.wait_for(lambda items: len(items) >= 1)

    moved = graph.post(
        f"users/bob@contoso.com/messages/{msg['id']}/move", json={"destinationId": "archive"}
    ).json()
    items = webhook.wait_for(lambda items: len(items) >= 3)
    assert {(i["changeType"], i["resourceData"]["id"]) for i in items[1:3]} == {
        ("deleted", msg["id"]),
        ("created", moved["id"]),
    }
    assert graph.delete(f"users/bob@contoso.com/messages/{moved['id']}").status_code == 204
    items = webhook.wait_for(lambda items: len(items) >= 4)
    assert (items[3]["changeType"], items[3]["resourceData"]["id"]) == ("deleted", moved["id"])
    time.sleep(0.3)
    assert len(webhook.items()) == 4  # arriving in Recoverable Items is not a "created"


def test_change_types_and_folders_filter_notifications(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    _subscribe(graph, webhook, changeType="deleted")
    _subscribe(graph, webhook, resource="users/bob@contoso.com/mailFolders/junkemail/messages")
    [msg] = _deliver(emulator, "Only deletions count")
    graph.patch(f"users/bob@contoso.com/messages/{msg['id']}", json={"isRead": True})
    graph.delete(f"users/bob@contoso.com/messages/{msg['id']}")
    items = webhook.wait_for(lambda items: len(items) >= 1)
    time.sleep(0.3)
    assert [(i["changeType"], i["resourceData"]["id"]) for i in webhook.items()] == [
        ("deleted", msg["id"])
    ]
    assert items


def test_immutable_ids_when_subscribed_with_the_prefer_header(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    response = graph.post(
        "subscriptions", json=_body(webhook), headers={"Prefer": 'IdType="ImmutableId"'}
    )
    assert response.status_code == 201
    [msg] = _deliver(emulator, "Stable ids")
    [item] = webhook.wait_for(lambda items: len(items) >= 1)
    assert item["resourceData"]["id"] == msg["immutableId"]


def test_notifications_are_batched_per_url(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    _subscribe(graph, webhook)
    _deliver(emulator, "Broadcast", copies=6)
    webhook.wait_for(lambda items: len(items) >= 6)
    assert emulator.notification_stats()["requests"] < 6
    assert len(webhook.posts) < 6


def _stats_when(
    emulator: EmulatorProcess, ready: Callable[[dict[str, int]], bool]
) -> dict[str, int]:
    deadline = time.monotonic() + WAIT
    stats = emulator.notification_stats()
    while not ready(stats) and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = emulator.notification_stats()
    return stats


def test_failed_deliveries_are_retried_then_given_up(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    emulator.settings(notifications={"retry_base_seconds": 0.05, "retry_attempts": 3})
    _subscribe(graph, webhook)
    webhook.failures = 2
    _deliver(emulator, "Eventually")
    webhook.wait_for(lambda items: len(items) >= 1)
    # The webhook records the body before its 202 reaches the emulator: wait for the count.
    stats = _stats_when(emulator, lambda s: s["delivered"] >= 1)
    assert (stats["delivered"], stats["retried"], stats["failed"]) == (1, 2, 0)

    webhook.failures = 100
    _deliver(emulator, "Never")
    stats = _stats_when(emulator, lambda s: s["failed"] >= 1)
    assert (stats["delivered"], stats["retried"], stats["failed"]) == (1, 5, 1)
    assert webhook.attempts == 1 + 2 + 4  # bounded: first try plus three retries


def test_expired_subscriptions_stop_delivering_and_disappear(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook, lifecycleNotificationUrl=None)
    emulator.control("POST", "/clock", {"advanceSeconds": 2 * 3600})
    _deliver(emulator, "Too late")
    time.sleep(0.3)
    assert webhook.items() == []
    assert emulator.subscriptions() == []
    fresh = {"Authorization": f"Bearer {emulator.token()}"}  # the old token expired too
    assert_graph_error(
        graph.get(f"subscriptions/{sub['id']}", headers=fresh), 404, "ResourceNotFound"
    )
    assert emulator.notification_stats()["expired"] == 1


def test_force_expire_through_the_control_plane(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook)
    emulator.expire_subscription(sub["id"])
    _deliver(emulator, "Nobody listens")
    time.sleep(0.3)
    assert webhook.items() == []
    assert graph.get("subscriptions").json()["value"] == []


def test_reauthorization_required_is_sent_before_expiry(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook, expirationDateTime=_expiry(10))
    [event] = webhook.wait_for(lambda items: len(items) >= 1, path="/lifecycle")
    assert event["lifecycleEvent"] == "reauthorizationRequired"
    assert event["subscriptionId"] == sub["id"]
    assert event["clientState"] == CLIENT_STATE
    assert event["tenantId"] == emulator.tenant_id
    assert event["subscriptionExpirationDateTime"] == sub["expirationDateTime"]
    assert "changeType" not in event
    # Renewing past the warning window re-arms the warning rather than repeating it.
    graph.patch(f"subscriptions/{sub['id']}", json={"expirationDateTime": _expiry(120)})
    time.sleep(0.3)
    assert len(webhook.items("/lifecycle")) == 1


def test_lifecycle_events_from_the_control_plane(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook)
    emulator.lifecycle_event(sub["id"], "missed")
    [missed] = webhook.wait_for(lambda items: len(items) >= 1, path="/lifecycle")
    assert missed["lifecycleEvent"] == "missed"
    assert missed["subscriptionId"] == sub["id"]

    emulator.lifecycle_event(sub["id"], "subscriptionRemoved")
    events = webhook.wait_for(lambda items: len(items) >= 2, path="/lifecycle")
    assert events[1]["lifecycleEvent"] == "subscriptionRemoved"
    assert graph.get("subscriptions").json()["value"] == []

    no_lifecycle = _subscribe(graph, webhook, lifecycleNotificationUrl=None)
    with pytest.raises(AssertionError, match="409"):
        emulator.lifecycle_event(no_lifecycle["id"], "missed")
    with pytest.raises(AssertionError, match="400"):
        emulator.lifecycle_event(no_lifecycle["id"], "exploded")


def test_paused_subscription_drops_notifications(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook)
    assert emulator.pause_notifications(sub["id"])["paused"] is True
    _deliver(emulator, "Lost")
    deadline = time.monotonic() + WAIT
    while emulator.notification_stats()["dropped"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert webhook.items() == []
    [shown] = emulator.subscriptions()
    assert shown["dropped"] == 1

    emulator.pause_notifications(sub["id"], paused=False)
    [msg] = _deliver(emulator, "Heard")
    [item] = webhook.wait_for(lambda items: len(items) >= 1)
    assert item["resourceData"]["id"] == msg["id"]


def test_removing_the_mailbox_removes_its_subscriptions(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    sub = _subscribe(graph, webhook)
    emulator.control("PATCH", "/users/bob@contoso.com", {"hasMailbox": False})
    [event] = webhook.wait_for(lambda items: len(items) >= 1, path="/lifecycle")
    assert (event["lifecycleEvent"], event["subscriptionId"]) == ("subscriptionRemoved", sub["id"])
    assert emulator.subscriptions() == []


def test_reset_forgets_subscriptions(
    emulator: EmulatorProcess, graph: httpx.Client, webhook: Webhook
) -> None:
    _subscribe(graph, webhook)
    emulator.reset()
    assert emulator.subscriptions() == []
    assert emulator.notification_stats()["validations"] == 0


def test_expiring_a_mailboxs_delta_tokens_answers_410(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    path = "users/bob@contoso.com/mailFolders/inbox/messages/delta"
    link = graph.get(path).json()
    while "@odata.nextLink" in link:
        link = graph.get(link["@odata.nextLink"]).json()
    emulator.expire_delta(["bob@contoso.com"])
    error = assert_graph_error(graph.get(link["@odata.deltaLink"]), 410, "syncStateNotFound")
    assert error["message"]
