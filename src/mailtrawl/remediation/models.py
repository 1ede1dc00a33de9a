"""Tables of remediation: requested actions, the per-message journal, and the undo vault."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailtrawl.storage.base import Base, Ciphertext, Timestamps, UTCDateTime, UUIDPrimaryKey
from mailtrawl.storage.models import one_of

VAULT_PURPOSE = "vault-message"


class RemediationKind(enum.StrEnum):
    WARN = "warn"  # red category on the message (+ optional notice in the inbox)
    JUNK = "junk"  # move to Junk Email
    TRASH = "trash"  # move to Deleted Items
    DELETE = "delete"  # soft delete: Recoverable Items
    PURGE = "purge"  # permanent delete
    RESTORE = "restore"  # undo one of the above


DESTRUCTIVE = frozenset({RemediationKind.DELETE, RemediationKind.PURGE})


class ActionStatus(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"  # approved (or needing no approval), waiting for a worker
    RUNNING = "running"
    COMPLETED = "completed"  # every item reached a final state (some may have failed)
    REJECTED = "rejected"
    CANCELLED = "cancelled"


ACTION_FINISHED = frozenset({ActionStatus.COMPLETED, ActionStatus.REJECTED, ActionStatus.CANCELLED})


class ItemState(enum.StrEnum):
    PLANNED = "planned"  # in the journal, not yet applied (or its outcome is unknown)
    APPLIED = "applied"  # the platform accepted the change; not yet verified
    VERIFIED = "verified"  # re-read from the mailbox: the message is where it should be
    FAILED = "failed"  # gave up; `error` says why
    UNDONE = "undone"  # a later restore put it back


ITEM_FINAL = frozenset({ItemState.VERIFIED, ItemState.FAILED, ItemState.UNDONE})


class RemediationAction(UUIDPrimaryKey, Timestamps, Base):
    """One requested action over a selection of an investigation's hits."""

    __tablename__ = "remediation_actions"
    __table_args__ = (
        CheckConstraint(one_of("kind", RemediationKind), name="kind"),
        CheckConstraint(one_of("status", ActionStatus), name="status"),
        Index("ix_remediation_actions_investigation", "investigation_id", "created_at"),
        Index("ix_remediation_actions_status", "status"),
    )

    investigation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("investigations.id", ondelete="CASCADE")
    )
    configuration_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("mail_configurations.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(16))
    # For a restore: the action it undoes.
    undoes_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("remediation_actions.id", ondelete="SET NULL")
    )
    selection: Mapped[dict[str, Any]] = mapped_column()
    options: Mapped[dict[str, Any]] = mapped_column()
    # Counts by mailbox and folder, frozen when the action was requested.
    preview: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(24))
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    approval_reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_role: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_role: Mapped[str | None] = mapped_column(String(16))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_note: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Progress counters, updated in the same transaction as the journal rows they count.
    total: Mapped[int] = mapped_column(Integer, default=0)
    applied: Mapped[int] = mapped_column(Integer, default=0)  # applied or verified
    verified: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)  # already in the wanted state
    failed: Mapped[int] = mapped_column(Integer, default=0)
    undone: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)

    def __repr__(self) -> str:
        return f"RemediationAction(id={self.id!s}, kind={self.kind!r}, status={self.status!r})"


class RemediationItem(UUIDPrimaryKey, Base):
    """The journal: one message under one action, and everything that happened to it."""

    __tablename__ = "remediation_items"
    __table_args__ = (
        CheckConstraint(one_of("state", ItemState), name="state"),
        UniqueConstraint("action_id", "mailbox_id", "message_id", name="uq_remediation_item"),
        Index("ix_remediation_items_batch", "action_id", "batch", "state"),
        Index("ix_remediation_items_hit", "hit_id"),
    )

    action_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("remediation_actions.id", ondelete="CASCADE")
    )
    hit_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("investigation_hits.id", ondelete="SET NULL")
    )
    # For a restore: the item of the undone action.
    undoes_item_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("remediation_items.id", ondelete="SET NULL")
    )
    batch: Mapped[int] = mapped_column(Integer, default=0)
    mailbox_id: Mapped[str] = mapped_column(String(128))
    mailbox_upn: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(512))  # stable (immutable) id when planned
    internet_message_id: Mapped[str] = mapped_column(String(998), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    sender_address: Mapped[str] = mapped_column(String(320), default="")
    source_folder_id: Mapped[str | None] = mapped_column(String(512))
    source_folder: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=ItemState.PLANNED.value)
    changed: Mapped[bool | None] = mapped_column(Boolean)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Where the message is after the action (None once deleted or purged).
    result_message_id: Mapped[str | None] = mapped_column(String(512))
    result_folder_id: Mapped[str | None] = mapped_column(String(512))
    result_folder: Mapped[str | None] = mapped_column(String(64))
    categories_before: Mapped[list[str] | None] = mapped_column()
    notice_message_id: Mapped[str | None] = mapped_column(String(512))
    vaulted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class VaultEntry(Base):
    """A message kept before it was deleted or purged, so restore can bring it back.

    The MIME is compressed, then sealed with the credential key (`SecretBox`, purpose
    `vault-message`); it is erased (set to NULL) once `expires_at` has passed.
    """

    __tablename__ = "vault_entries"
    __table_args__ = (Index("ix_vault_entries_expires", "expires_at"),)

    item_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("remediation_items.id", ondelete="CASCADE"), primary_key=True
    )
    mailbox_id: Mapped[str] = mapped_column(String(128))
    internet_message_id: Mapped[str] = mapped_column(String(998), default="")
    folder_id: Mapped[str | None] = mapped_column(String(512))
    folder: Mapped[str | None] = mapped_column(String(64))
    received: Mapped[datetime | None] = mapped_column(UTCDateTime())
    categories: Mapped[list[str]] = mapped_column(default=list)
    is_read: Mapped[bool | None] = mapped_column(Boolean)
    flag_status: Mapped[str | None] = mapped_column(String(32))
    importance: Mapped[str | None] = mapped_column(String(16))
    mime: Mapped[bytes | None] = mapped_column(Ciphertext(purpose=VAULT_PURPOSE))
    mime_size: Mapped[int] = mapped_column(BigInteger, default=0)
    mime_sha256: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
