"""The Graph webhook endpoints: validation handshake, bounded parsing, clientState checks,
hand-off to the sink, and mounting on the real application without session or CSRF."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailtrawl.config import Settings
from mailtrawl.monitor.webhooks import (
    InMemorySubscriptionDirectory,
    SubscriptionTarget,
    WebhookStats,
    client_state_matches,
    notifications_router,
)

SUB_ID = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
STATE = "a-long-random-client-state"
TARGET = SubscriptionTarget(uuid.uuid4(), "0c3b4d2e-1111-4222-8333-444455556666", "inbox")
MESSAGE_ID = "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AdkyhGbi4Nu2cCK_WX5PKnwAAAA=="


class RecordingSink:
    def __init__(self) -> None:
        self.changes: list[tuple[SubscriptionTarget, str, str]] = []
        self.events: list[tuple[SubscriptionTarget, str]] = []

    def notify(self, target: SubscriptionTarget, change_type: str, message_id: str) -> None:
        self.changes.append((target, change_type, message_id))

    def lifecycle(self, target: SubscriptionTarget, event: str) -> None:
        self.events.append((target, event))


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def stats() -> WebhookStats:
    return WebhookStats()


@pytest.fixture
def client(sink: RecordingSink, stats: WebhookStats) -> Iterator[TestClient]:
    directory = InMemorySubscriptionDirectory()
    directory.register(SUB_ID, STATE, TARGET)
    app = FastAPI()
    app.include_router(notifications_router(sink, directory, stats=stats, max_items=5))
    with TestClient(app) as test_client:
        yield test_client


def _change(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "subscriptionId": SUB_ID,
        "subscriptionExpirationDateTime": "2030-03-20T11:00:00.0000000Z",
        "changeType": "created",
        "resource": f"Users/{TARGET.mailbox_id}/Messages/{MESSAGE_ID}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": f"Users/{TARGET.mailbox_id}/Messages/{MESSAGE_ID}",
            "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
            "id": MESSAGE_ID,
        },
        "clientState": STATE,
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
    }
    item.update(overrides)
    return item


def _lifecycle(event: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "subscriptionId": SUB_ID,
        "subscriptionExpirationDateTime": "2030-03-20T11:00:00.0000000Z",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "clientState": STATE,
        "lifecycleEvent": event,
    }
    item.update(overrides)
    return item


@pytest.mark.parametrize("path", ["/api/v1/graph/notifications", "/api/v1/graph/lifecycle"])
def test_validation_handshake_echoes_the_decoded_token(client: TestClient, path: str) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 877cb92e-a60b-483b-8a39-79aa5f64f5a3"
    response = client.post(path, params={"validationToken": token})
    assert response.status_code == 200
    assert response.text == token
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("token", ["<script>alert(1)</script>", "x" * 1025, "line\nbreak", ""])
def test_suspicious_validation_tokens_are_refused(client: TestClient, token: str) -> None:
    response = client.post("/api/v1/graph/notifications", params={"validationToken": token})
    assert response.status_code == 400
    assert token not in response.text or not token


def test_a_valid_notification_reaches_the_sink(
    client: TestClient, sink: RecordingSink, stats: WebhookStats
) -> None:
    started = time.perf_counter()
    response = client.post("/api/v1/graph/notifications", json={"value": [_change()]})
    assert response.status_code == 202
    assert time.perf_counter() - started < 1.0
    assert sink.changes == [(TARGET, "created", MESSAGE_ID)]
    assert stats.accepted == 1


def test_message_id_falls_back_to_the_resource_path(
    client: TestClient, sink: RecordingSink
) -> None:
    item = _change(changeType="deleted")
    del item["resourceData"]
    assert client.post("/api/v1/graph/notifications", json={"value": [item]}).status_code == 202
    assert sink.changes == [(TARGET, "deleted", MESSAGE_ID)]


def test_wrong_or_missing_client_state_and_unknown_subscriptions_are_dropped(
    client: TestClient, sink: RecordingSink, stats: WebhookStats, caplog: pytest.LogCaptureFixture
) -> None:
    items = [
        _change(clientState="guessed"),
        _change(clientState=None),
        _change(subscriptionId="00000000-0000-0000-0000-000000000000"),
        _lifecycle("missed", clientState="guessed"),
        _change(changeType="updated"),
    ]
    response = client.post("/api/v1/graph/notifications", json={"value": items})
    assert response.status_code == 202  # Graph must not retry forged items
    assert sink.changes == [(TARGET, "updated", MESSAGE_ID)]
    assert sink.events == []
    assert stats.rejected == 4
    assert "guessed" not in caplog.text
    assert STATE not in caplog.text


def test_lifecycle_events_reach_the_sink_on_either_path(
    client: TestClient, sink: RecordingSink, stats: WebhookStats
) -> None:
    client.post("/api/v1/graph/lifecycle", json={"value": [_lifecycle("missed")]})
    client.post(
        "/api/v1/graph/notifications",
        json={"value": [_lifecycle("subscriptionRemoved"), _lifecycle("reauthorizationRequired")]},
    )
    assert sink.events == [
        (TARGET, "missed"),
        (TARGET, "subscriptionRemoved"),
        (TARGET, "reauthorizationRequired"),
    ]
    assert stats.lifecycle == 3


@pytest.mark.parametrize(
    "item",
    [
        "just a string",
        {"changeType": "created"},
        {**_change(), "changeType": "moved"},
        {**_change(), "lifecycleEvent": "exploded"},
        {**_change(), "resourceData": {"id": "../../etc/passwd"}, "resource": "x/y z"},
        {**_change(), "clientState": "s" * 256},
        {**_change(), "subscriptionId": 42},
    ],
)
def test_malformed_items_are_dropped(
    client: TestClient, sink: RecordingSink, stats: WebhookStats, item: Any
) -> None:
    response = client.post("/api/v1/graph/notifications", json={"value": [item, _change()]})
    assert response.status_code == 202
    assert sink.changes == [(TARGET, "created", MESSAGE_ID)]
    assert stats.malformed == 1


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"value": {}}', b'{"items": []}', b"\xff\xfe"]
)
def test_bodies_that_are_not_collections_answer_400(
    client: TestClient, sink: RecordingSink, body: bytes
) -> None:
    response = client.post(
        "/api/v1/graph/notifications", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert sink.changes == []


def test_bodies_and_item_counts_are_bounded(
    client: TestClient, sink: RecordingSink, stats: WebhookStats
) -> None:
    huge = orjson.dumps({"value": [_change()], "padding": "x" * (1024 * 1024)})
    response = client.post(
        "/api/v1/graph/notifications", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert sink.changes == []

    response = client.post("/api/v1/graph/notifications", json={"value": [_change()] * 8})
    assert response.status_code == 202
    assert len(sink.changes) == 5  # max_items
    assert stats.malformed == 1 + 3


def test_client_state_comparison() -> None:
    assert client_state_matches("abc", "abc")
    assert not client_state_matches("abc", "abd")
    assert not client_state_matches("abc", None)
    assert not client_state_matches(None, "abc")
    assert not client_state_matches("é", "e")


def test_directory_forgets(sink: RecordingSink) -> None:
    directory = InMemorySubscriptionDirectory()
    directory.register(SUB_ID, STATE, TARGET)
    assert directory.verify(SUB_ID, STATE) == TARGET
    directory.forget(SUB_ID)
    assert directory.verify(SUB_ID, STATE) is None
    assert len(directory) == 0


def test_mounted_on_the_real_app_it_needs_no_session_or_csrf(
    tmp_path: Path, sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailtrawl.web.app import create_app

    for name in ("MAILTRAWL_CONFIG", "MAILTRAWL_DATABASE_URL", "MAILTRAWL_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    directory = InMemorySubscriptionDirectory()
    directory.register(SUB_ID, STATE, TARGET)
    app = create_app(Settings(home=tmp_path), worker=False)
    app.include_router(notifications_router(sink, directory))
    try:
        with TestClient(app) as web:
            # A stray session cookie without a CSRF token changes nothing either.
            web.cookies.set("mailtrawl_session", "forged")
            response = web.post("/api/v1/graph/notifications", json={"value": [_change()]})
            assert response.status_code == 202
            handshake = web.post(
                "/api/v1/graph/lifecycle", params={"validationToken": "Validation: ok"}
            )
            assert handshake.text == "Validation: ok"
            assert handshake.headers["x-content-type-options"] == "nosniff"
    finally:
        app.state.ctx.sessions.kw["bind"].dispose()
    assert sink.changes == [(TARGET, "created", MESSAGE_ID)]
