"""What the watcher is doing, for `mailtrawl watch`, the API and the dashboard."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailtrawl.config import Settings
from mailtrawl.investigations.models import Investigation, WatchState
from mailtrawl.monitor.models import DeltaCursor, NotificationSubscription, WatchedMailbox
from mailtrawl.monitor.schedule import PollPolicy
from mailtrawl.storage.base import utcnow


class ActiveInvestigation(BaseModel):
    id: uuid.UUID
    name: str
    configuration: str
    duration: str
    active_until: datetime | None  # None: continuous
    action: str | None
    new_hits: int
    hits: int
    status: str  # of its first search


class WatchStatus(BaseModel):
    active: list[ActiveInvestigation]
    mailboxes_watched: int
    mailboxes_due: int  # waiting for their read now
    mailboxes_failing: int
    folders_synced: int
    subscriptions: int
    oldest_read_seconds: float | None  # how long ago the least recently read mailbox was read
    poll_seconds: float
    budget_share_per_mailbox: float  # share of Graph's per-mailbox budget polling uses
    notifications: bool


def watch_status(session: Session, settings: Settings) -> WatchStatus:
    """Active investigations and the watcher's schedule, from the database (any process)."""
    now = utcnow()
    records = session.scalars(
        select(Investigation)
        .where(Investigation.watch_state == WatchState.ACTIVE.value)
        .order_by(Investigation.created_at.desc())
    ).all()
    count = func.count()
    watched = session.scalar(select(count).select_from(WatchedMailbox)) or 0
    due = (
        session.scalar(
            select(count).select_from(WatchedMailbox).where(WatchedMailbox.next_poll_at <= now)
        )
        or 0
    )
    failing = (
        session.scalar(select(count).select_from(WatchedMailbox).where(WatchedMailbox.failures > 0))
        or 0
    )
    oldest = session.scalar(select(func.min(WatchedMailbox.last_polled_at)))
    if isinstance(oldest, str):  # an aggregate bypasses the column type on SQLite
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    policy = PollPolicy(
        interval_s=settings.monitor_poll_seconds,
        backstop_s=settings.monitor_backstop_seconds,
        budget_share=settings.monitor_budget_share,
        folders=len(settings.monitor_folders),
    )
    interval = max(policy.floor_s, settings.monitor_poll_seconds)
    return WatchStatus(
        active=[
            ActiveInvestigation(
                id=r.id,
                name=r.name,
                configuration=r.configuration_name,
                duration=r.duration or "",
                active_until=r.active_until,
                action=r.auto_action,
                new_hits=r.new_hits,
                hits=r.hits,
                status=r.status,
            )
            for r in records
        ],
        mailboxes_watched=watched,
        mailboxes_due=due,
        mailboxes_failing=failing,
        folders_synced=session.scalar(
            select(count).select_from(DeltaCursor).where(DeltaCursor.cursor != "")
        )
        or 0,
        subscriptions=session.scalar(select(count).select_from(NotificationSubscription)) or 0,
        oldest_read_seconds=None if oldest is None else round((now - oldest).total_seconds(), 1),
        poll_seconds=interval,
        budget_share_per_mailbox=round(policy.budget_used(interval), 4),
        notifications=settings.public_url is not None,
    )
