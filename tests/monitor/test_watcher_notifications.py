"""Change notifications drive an active investigation end to end: the application under
uvicorn on 127.0.0.1 (webhook and watcher in one process), subscriptions made by the
watcher in the emulator, messages delivered through the emulator's control plane.

Polling is slowed to once a minute (a 10-minute backstop once subscribed), so a hit within
seconds can only come from a notification.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from pydantic import AnyHttpUrl

from mailtrawl.web.app import create_app
from tests.monitor.conftest import Watching, phishing, wait_for

ALICE = "alice@contoso.com"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(watching: Watching) -> Iterator[Watching]:
    port = _free_port()
    settings = watching.settings.model_copy(
        update={
            "public_url": AnyHttpUrl(f"http://127.0.0.1:{port}"),
            "monitor_poll_seconds": 60.0,
            "monitor_backstop_seconds": 600.0,
        }
    )
    app = create_app(settings, worker=True)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, what="the application")
    try:
        yield watching
    finally:
        server.should_exit = True
        thread.join(20)


def _alice_subscriptions(w: Watching) -> dict[str, str]:
    return {
        s["resource"]: s["id"]
        for s in w.emulator.subscriptions()
        if s.get("mailbox", "").lower() == ALICE
    }


def test_a_notification_brings_new_mail_in_seconds_and_missed_ones_are_recovered(
    served: Watching,
) -> None:
    w = served
    investigation_id = w.create(duration="1h", users=[ALICE])
    w.ready(investigation_id, ALICE)
    subscriptions = wait_for(
        lambda: len(_alice_subscriptions(w)) == 2 and _alice_subscriptions(w),
        what="subscriptions on Alice's inbox and junk email",
    )

    w.emulator.deliver(phishing("Notified"), [ALICE])
    started = time.monotonic()
    wait_for(lambda: w.hit_subjects(investigation_id) == ["Notified"], timeout=10, what="hit")
    assert time.monotonic() - started < 10

    # A gap: Graph drops the inbox's notifications, then says it missed some.
    inbox = next(i for f, i in subscriptions.items() if "inbox" in f.lower())
    w.emulator.pause_notifications(inbox)
    w.emulator.deliver(phishing("Missed"), [ALICE])
    time.sleep(2.0)
    assert w.hit_subjects(investigation_id) == ["Notified"]
    w.emulator.lifecycle_event(inbox, "missed")
    wait_for(
        lambda: w.hit_subjects(investigation_id) == ["Missed", "Notified"],
        timeout=10,
        what="the missed message, recovered by delta",
    )
