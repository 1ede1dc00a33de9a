"""Change notifications into the watcher's schedule: the stored subscriptions and the sink.

A valid notification makes its mailbox due now (`monitor_mailboxes.next_poll_at`), in the
database, so a watcher in another process (`mailtrawl worker`) sees it on its next round;
the watcher of this process is also woken at once. The notification itself is never
trusted beyond that: the delta read decides what changed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.monitor.models import NotificationSubscription, WatchedMailbox
from mailtrawl.monitor.watcher import client_state_digest
from mailtrawl.monitor.webhooks import (
    ChangeType,
    LifecycleEvent,
    SubscriptionTarget,
)
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session

log = logging.getLogger(__name__)

_NO_DIGEST = "0" * 64


class StoredSubscriptions:
    """The `SubscriptionDirectory` of the webhook: subscriptions the watcher created."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def verify(self, subscription_id: str, client_state: str | None) -> SubscriptionTarget | None:
        with self.sessions() as session:
            row = session.get(NotificationSubscription, subscription_id[:128])
        expected = row.client_state_sha256 if row is not None else _NO_DIGEST
        presented = client_state_digest(client_state) if client_state is not None else ""
        # Compared even for unknown ids, so timing does not tell which ids exist.
        matches = hmac.compare_digest(expected, presented)
        if row is None or not matches:
            return None
        return SubscriptionTarget(row.configuration_id, row.mailbox_id, row.folder)


class ScheduleSink:
    """The `NotificationSink`: queues mailboxes to read now, written by one background task."""

    def __init__(
        self, sessions: sessionmaker[Session], wake: Callable[[], None] | None = None
    ) -> None:
        self.sessions = sessions
        self.wake = wake
        self._due: set[tuple[SubscriptionTarget, str | None]] = set()
        self._flusher: asyncio.Task[None] | None = None

    def notify(self, target: SubscriptionTarget, change_type: ChangeType, message_id: str) -> None:
        self._queue(target, None)

    def lifecycle(self, target: SubscriptionTarget, event: LifecycleEvent) -> None:
        # missed: read now (delta catches up); removed: forget it, the watcher subscribes
        # again; reauthorizationRequired: renew it on the next round.
        self._queue(target, event)

    def _queue(self, target: SubscriptionTarget, event: str | None) -> None:
        self._due.add((target, event))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._due:
            batch, self._due = self._due, set()
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception:
                log.exception("could not schedule reads after change notifications")
                return
            if self.wake is not None:
                self.wake()

    def _write(self, batch: set[tuple[SubscriptionTarget, str | None]]) -> None:
        now = utcnow()
        with write_session(self.sessions) as session:
            for target, event in batch:
                session.execute(
                    update(WatchedMailbox)
                    .where(
                        WatchedMailbox.configuration_id == target.configuration_id,
                        WatchedMailbox.mailbox_id == target.mailbox_id,
                    )
                    .values(next_poll_at=now)
                )
                if event is None or target.folder is None:
                    continue
                where = (
                    NotificationSubscription.configuration_id == target.configuration_id,
                    NotificationSubscription.mailbox_id == target.mailbox_id,
                    NotificationSubscription.folder == target.folder,
                )
                if event == "subscriptionRemoved":
                    session.execute(delete(NotificationSubscription).where(*where))
                elif event == "reauthorizationRequired":
                    # Due for renewal now (a renewal also reauthorizes).
                    session.execute(
                        update(NotificationSubscription).where(*where).values(expires_at=now)
                    )

    def pending(self) -> int:
        return len(self._due)
