"""What the watcher keeps between rounds and restarts: schedules, delta cursors, subscriptions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailtrawl.storage.base import Base, UTCDateTime


class WatchedMailbox(Base):
    """One mailbox some active investigation watches, and when to read it next."""

    __tablename__ = "monitor_mailboxes"
    __table_args__ = (Index("ix_monitor_mailboxes_due", "configuration_id", "next_poll_at"),)

    configuration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    mailbox_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    upn: Mapped[str] = mapped_column(String(320))
    next_poll_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_hit_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class DeltaCursor(Base):
    """Where the last delta round of one folder ended (Graph's deltaLink)."""

    __tablename__ = "monitor_cursors"

    configuration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    mailbox_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    folder: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text)
    # When the round that produced the cursor started: a resync re-reads from a bit before.
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NotificationSubscription(Base):
    """A Graph change-notification subscription on one watched folder."""

    __tablename__ = "monitor_subscriptions"
    __table_args__ = (
        Index("ix_monitor_subscriptions_mailbox", "configuration_id", "mailbox_id", "folder"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # Graph's subscription id
    configuration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_configurations.id", ondelete="CASCADE")
    )
    mailbox_id: Mapped[str] = mapped_column(String(128))
    folder: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the clientState: enough to check a notification, useless to forge one.
    client_state_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
