"""End to end: the real webhook router under uvicorn on 127.0.0.1, subscriptions made through
`GraphProvider` against the emulator, mail delivered through the emulator's control plane,
and the sink hearing of it within Graph's 3 seconds."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import anyio
import pytest
import uvicorn
from fastapi import FastAPI

from mailtrawl.core import MailboxRef
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.errors import NotFound
from mailtrawl.monitor.webhooks import (
    InMemorySubscriptionDirectory,
    SubscriptionTarget,
    WebhookStats,
    notifications_router,
)
from mailtrawl.providers.errors import RequestRejected
from mailtrawl.providers.graph.provider import GraphProvider
from mailtrawl.providers.graph.subscriptions import MAX_LIFETIME, GraphSubscription
from tests.providers.conftest import m365_settings

pytestmark = pytest.mark.anyio

CONFIGURATION = uuid.UUID("3f0a1d7e-5b2c-4e8f-9a6d-1c2b3a4d5e6f")
DEADLINE = 3.0  # Graph's own answer budget, reused as the end-to-end budget


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class QueueSink:
    """Records what the webhook hands over (from the server's thread)."""

    def __init__(self) -> None:
        self.changes: list[tuple[SubscriptionTarget, str, str]] = []
        self.events: list[tuple[SubscriptionTarget, str]] = []
        self._lock = threading.Lock()

    def notify(self, target: SubscriptionTarget, change_type: str, message_id: str) -> None:
        with self._lock:
            self.changes.append((target, change_type, message_id))

    def lifecycle(self, target: SubscriptionTarget, event: str) -> None:
        with self._lock:
            self.events.append((target, event))

    def snapshot(self) -> tuple[list[Any], list[Any]]:
        with self._lock:
            return list(self.changes), list(self.events)


class WebhookServer:
    """The mailtrawl webhook router served by uvicorn in a thread, on a free loopback port."""

    def __init__(self) -> None:
        self.sink = QueueSink()
        self.directory = InMemorySubscriptionDirectory()
        self.stats = WebhookStats()
        app = FastAPI()
        app.include_router(notifications_router(self.sink, self.directory, stats=self.stats))
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the webhook server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"

    @property
    def notification_url(self) -> str:
        return f"{self.base}/api/v1/graph/notifications"

    @property
    def lifecycle_url(self) -> str:
        return f"{self.base}/api/v1/graph/lifecycle"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def provider(emulator: EmulatorProcess) -> AsyncIterator[GraphProvider]:
    made = GraphProvider(m365_settings(emulator))
    try:
        yield made
    finally:
        await made.aclose()


def _mail(subject: str, to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Payroll <payroll@fabrikam-payments.example>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Please confirm your bank details.")
    return msg.as_bytes()


async def _within(seconds: float, condition: Callable[[], bool]) -> float:
    """Wait until `condition()` holds; answers the time it took (fails after `seconds`)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        await anyio.sleep(0.02)
    return time.monotonic() - started


async def _subscribe(
    provider: GraphProvider,
    webhook: WebhookServer,
    mailbox: MailboxRef,
    client_state: str,
    registered_state: str | None = None,
) -> GraphSubscription:
    sub = await provider.subscribe(
        mailbox,
        "inbox",
        webhook.notification_url,
        webhook.lifecycle_url,
        client_state,
        datetime.now(UTC) + timedelta(hours=2),
    )
    webhook.directory.register(
        sub.id,
        registered_state or client_state,
        SubscriptionTarget(CONFIGURATION, mailbox.id, "inbox"),
    )
    return sub


async def test_a_delivered_message_reaches_the_sink_within_three_seconds(
    emulator: EmulatorProcess, provider: GraphProvider, webhook: WebhookServer
) -> None:
    bob = await provider.get_mailbox("bob@contoso.com")
    sub = await _subscribe(provider, webhook, bob, "bob-secret-" + uuid.uuid4().hex)
    assert sub.mailbox_id == bob.id
    assert sub.folder == "inbox"
    assert webhook.stats.validations == 2  # notification and lifecycle URLs

    [delivered] = emulator.deliver(_mail("Update your payroll", bob.upn), [bob.upn])
    took = await _within(DEADLINE, lambda: bool(webhook.sink.snapshot()[0]))
    assert took < DEADLINE
    [(target, change_type, message_id)] = webhook.sink.snapshot()[0]
    assert target == SubscriptionTarget(CONFIGURATION, bob.id, "inbox")
    assert change_type == "created"
    # The provider prefers immutable ids, so the notification names the id delta answers.
    assert message_id == delivered["immutableId"]
    batch = await provider.changes(bob, "inbox")
    assert message_id in {m.ref.message_id for m in batch.changed}


async def test_a_wrong_client_state_is_dropped(
    emulator: EmulatorProcess, provider: GraphProvider, webhook: WebhookServer
) -> None:
    alice = await provider.get_mailbox("alice@contoso.com")
    await _subscribe(provider, webhook, alice, "what-graph-sends", registered_state="we-expect")
    emulator.deliver(_mail("Forged?", alice.upn), [alice.upn])
    await _within(DEADLINE, lambda: webhook.stats.rejected >= 1)
    assert webhook.sink.snapshot()[0] == []
    assert webhook.stats.accepted == 0


async def test_a_missed_lifecycle_event_reaches_the_sink(
    emulator: EmulatorProcess, provider: GraphProvider, webhook: WebhookServer
) -> None:
    bob = await provider.get_mailbox("bob@contoso.com")
    sub = await _subscribe(provider, webhook, bob, "lifecycle-" + uuid.uuid4().hex)
    emulator.lifecycle_event(sub.id, "missed")
    await _within(DEADLINE, lambda: bool(webhook.sink.snapshot()[1]))
    assert webhook.sink.snapshot()[1] == [
        (SubscriptionTarget(CONFIGURATION, bob.id, "inbox"), "missed")
    ]


async def test_renew_reauthorize_list_and_delete(
    emulator: EmulatorProcess, provider: GraphProvider, webhook: WebhookServer
) -> None:
    bob = await provider.get_mailbox("bob@contoso.com")
    secret = "manage-" + uuid.uuid4().hex
    sub = await _subscribe(provider, webhook, bob, secret)
    assert secret not in repr(sub)

    # Far beyond Graph's ceiling: the request is lowered to what Graph accepts.
    renewed = await provider.renew_subscription(sub, datetime.now(UTC) + timedelta(days=30))
    assert renewed.id == sub.id
    assert sub.expires_at < renewed.expires_at <= datetime.now(UTC) + MAX_LIFETIME
    await provider.reauthorize_subscription(renewed)

    listed = await provider.list_subscriptions(bob)
    assert [(s.id, s.mailbox_id, s.folder) for s in listed] == [(sub.id, bob.id, "inbox")]
    assert await provider.list_subscriptions(await provider.get_mailbox("carol@contoso.com")) == []

    assert await provider.delete_subscription(sub.id) is True
    assert await provider.delete_subscription(sub.id) is False
    with pytest.raises(NotFound):
        await provider.renew_subscription(sub, datetime.now(UTC) + timedelta(hours=1))
    assert emulator.subscriptions() == []
    assert provider.capabilities.notifications is True


async def test_an_unreachable_notification_url_is_explained(
    provider: GraphProvider, webhook: WebhookServer
) -> None:
    bob = await provider.get_mailbox("bob@contoso.com")
    with pytest.raises(RequestRejected, match="public_url") as caught:
        await provider.subscribe(
            bob,
            "inbox",
            "http://127.0.0.1:9/api/v1/graph/notifications",  # nothing listens there
            None,
            "unreachable",
            datetime.now(UTC) + timedelta(hours=1),
        )
    assert caught.value.status == 400
    with pytest.raises(ValueError, match="client_state"):
        await provider.subscribe(
            bob, "inbox", webhook.notification_url, None, "x" * 129, datetime.now(UTC)
        )
