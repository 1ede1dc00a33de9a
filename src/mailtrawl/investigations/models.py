"""Tables of investigations: the query and its progress, each mailbox's status, the hits."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailtrawl.storage.base import Base, Timestamps, UTCDateTime, UUIDPrimaryKey
from mailtrawl.storage.models import one_of

SUBJECT_KEY_LENGTH = 400


class InvestigationStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for a worker to resolve its scope
    RUNNING = "running"
    STOPPING = "stopping"  # asked to stop; workers finish the request in flight
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"  # could not run at all (configuration gone, credentials refused, ...)


FINISHED = frozenset(
    {InvestigationStatus.STOPPED, InvestigationStatus.COMPLETED, InvestigationStatus.FAILED}
)


class WatchState(enum.StrEnum):
    """Whether an investigation with a duration is watching new mail.

    Kept apart from `status` (the first search): an investigation can be "completed" (its
    search done) and "active" (still watching) at once.
    """

    ACTIVE = "active"
    EXPIRED = "expired"  # its period ended
    ENDED = "ended"  # stopped, or its configuration is gone


class MailboxStatus(enum.StrEnum):
    PENDING = "pending"
    SCANNING = "scanning"
    DONE = "done"
    SKIPPED = "skipped"  # never read: reason says why (disabled, no mailbox, outside domains)
    FAILED = "failed"  # reason says why (throttled past budget, access denied, unavailable)


class Investigation(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "investigations"
    __table_args__ = (
        CheckConstraint(one_of("status", InvestigationStatus), name="status"),
        Index("ix_investigations_created_at", "created_at"),
        Index("ix_investigations_watch_state", "watch_state"),
    )

    name: Mapped[str] = mapped_column(String(200))
    configuration_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("mail_configurations.id", ondelete="SET NULL")
    )
    configuration_name: Mapped[str] = mapped_column(String(200))
    # The canonical query document (see investigations.query) and the scope.
    query: Mapped[dict[str, Any]] = mapped_column()
    scope: Mapped[dict[str, Any]] = mapped_column()
    plan: Mapped[dict[str, Any] | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=InvestigationStatus.QUEUED.value)
    created_by: Mapped[str | None] = mapped_column(String(200))
    duplicated_from: Mapped[uuid.UUID | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Progress, updated with each finished mailbox (counters, never recomputed from rows).
    mailboxes_total: Mapped[int] = mapped_column(Integer, default=0)
    mailboxes_done: Mapped[int] = mapped_column(Integer, default=0)
    mailboxes_failed: Mapped[int] = mapped_column(Integer, default=0)
    mailboxes_skipped: Mapped[int] = mapped_column(Integer, default=0)
    messages_examined: Mapped[int] = mapped_column(BigInteger, default=0)
    hits: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    throttled: Mapped[int] = mapped_column(Integer, default=0)
    throttle_wait_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # Watching new mail (monitor/): the duration asked for ("24h", "continuous"; None for a
    # one-shot search), until when, the action taken on each new copy, and how it stands.
    duration: Mapped[str | None] = mapped_column(String(16))
    active_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    auto_action: Mapped[str | None] = mapped_column(String(16))
    watch_state: Mapped[str | None] = mapped_column(String(16))  # WatchState
    watch_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    watch_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    new_hits: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"Investigation(id={self.id!s}, name={self.name!r}, status={self.status!r})"


class InvestigationMailbox(UUIDPrimaryKey, Base):
    __tablename__ = "investigation_mailboxes"
    __table_args__ = (
        CheckConstraint(one_of("status", MailboxStatus), name="status"),
        UniqueConstraint("investigation_id", "mailbox_id", name="uq_investigation_mailbox"),
        Index("ix_investigation_mailboxes_batch", "investigation_id", "batch", "status"),
    )

    investigation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("investigations.id", ondelete="CASCADE")
    )
    mailbox_id: Mapped[str] = mapped_column(String(128))  # the directory id (or the name given)
    upn: Mapped[str] = mapped_column(String(320))
    address: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(256), default="")
    batch: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=MailboxStatus.PENDING.value)
    reason: Mapped[str | None] = mapped_column(Text)
    messages_examined: Mapped[int] = mapped_column(Integer, default=0)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    search_cap_fallback: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InvestigationHit(UUIDPrimaryKey, Base):
    """One copy of a matching message in one mailbox (unique per mailbox and message)."""

    __tablename__ = "investigation_hits"
    __table_args__ = (
        UniqueConstraint(
            "investigation_id", "mailbox_id", "message_id", name="uq_investigation_hit"
        ),
        # Refreshes the campaign counters of the emails a batch touched (hits.py).
        Index(
            "ix_investigation_hits_campaign",
            "investigation_id",
            "internet_message_id",
            "mailbox_id",
            "received",
            "sender_address",
        ),
        # The hits table's sorts, each ending in the id so a page is read from the index alone
        # (service.list_hits). The subject sorts and filters on `subject_key`, a bounded,
        # lower-cased prefix: PostgreSQL refuses B-tree rows over 2,704 bytes.
        Index("ix_investigation_hits_received", "investigation_id", "received", "id"),
        Index("ix_investigation_hits_mailbox", "investigation_id", "mailbox_upn", "id"),
        Index("ix_investigation_hits_sender", "investigation_id", "sender_address", "id"),
        Index("ix_investigation_hits_folder", "investigation_id", "folder", "received", "id"),
        Index("ix_investigation_hits_subject", "investigation_id", "subject_key", "id"),
    )

    investigation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("investigations.id", ondelete="CASCADE")
    )
    mailbox_id: Mapped[str] = mapped_column(String(128))
    mailbox_upn: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(512))  # immutable where the platform has one
    folder_id: Mapped[str | None] = mapped_column(String(512))
    folder: Mapped[str | None] = mapped_column(String(64))  # a well-known name when known
    internet_message_id: Mapped[str] = mapped_column(String(998), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    # The subject lower-cased and cut to SUBJECT_KEY_LENGTH: what the table sorts and filters on.
    subject_key: Mapped[str] = mapped_column(String(SUBJECT_KEY_LENGTH), default="")
    # Addresses are stored lower-cased (mailbox_upn too), so filters compare them in an index.
    sender_address: Mapped[str] = mapped_column(String(320), default="")
    sender_name: Mapped[str] = mapped_column(String(256), default="")
    recipients: Mapped[str] = mapped_column(Text, default="")
    received: Mapped[datetime | None] = mapped_column(UTCDateTime())
    has_attachments: Mapped[bool] = mapped_column(Boolean, default=False)
    attachment_names: Mapped[str] = mapped_column(Text, default="")
    matched: Mapped[list[str]] = mapped_column(default=list)
    via_attached_email: Mapped[bool] = mapped_column(Boolean, default=False)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The last remediation applied to this copy ("junk", "purge", ...); None when untouched
    # or restored. `message_id` and the folder follow the message when an action moves it.
    remediation: Mapped[str | None] = mapped_column(String(16))


class InvestigationCampaign(Base):
    """One email of an investigation (by Internet message id) and its copies, kept up to date.

    Counted when hits are stored (hits.store_hits), so the campaigns table of an
    investigation with 100,000 hits is a read of a few rows rather than a GROUP BY.
    """

    __tablename__ = "investigation_campaigns"
    __table_args__ = (
        Index(
            "ix_investigation_campaigns_size",
            "investigation_id",
            "copies",
            "internet_message_id",
        ),
    )

    investigation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("investigations.id", ondelete="CASCADE"), primary_key=True
    )
    internet_message_id: Mapped[str] = mapped_column(String(998), primary_key=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    sender_address: Mapped[str] = mapped_column(String(320), default="")
    copies: Mapped[int] = mapped_column(Integer, default=0)
    mailboxes: Mapped[int] = mapped_column(Integer, default=0)
    first_received: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_received: Mapped[datetime | None] = mapped_column(UTCDateTime())


class KnownFolder(Base):
    """A mailbox folder id and its well-known name ("" for other folders), learnt once.

    Well-known folder ids do not change, so naming the folders of hits costs Graph
    requests only the first time a mailbox has hits.
    """

    __tablename__ = "known_folders"

    configuration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    mailbox_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    folder_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), default="")
