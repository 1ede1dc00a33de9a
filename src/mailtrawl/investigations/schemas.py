"""What the API and CLI accept and show for investigations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from mailtrawl.configurations.schemas import ScopeSpec

T = TypeVar("T")

# What an active investigation may do by itself with each new copy it finds.
AutoAction = Literal["warn", "junk", "trash", "delete", "purge"]


class InvestigationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    configuration: str = Field(min_length=1, max_length=200, description="name or id")
    # None: the configuration's default scope.
    scope: ScopeSpec | None = None
    query: dict[str, Any] = Field(
        default_factory=dict,
        description="the query document: match, received, folders, attached_emails "
        "(schema at GET /api/v1/investigations/query-schema)",
    )
    duration: str | None = Field(
        default=None,
        max_length=16,
        description='one search when absent; "1h", "24h", "7d" (any number of m, h, d or w) '
        'to keep acting on new mail for that long after it starts, or "continuous" (until '
        "stopped)",
    )
    action: AutoAction | None = Field(
        default=None,
        description="what to do with each new copy found while the investigation is active "
        "(through the same approvals, journal and audit as a manual action); none by default",
    )


class DuplicateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)


class Progress(BaseModel):
    mailboxes_total: int
    mailboxes_done: int
    mailboxes_failed: int
    mailboxes_skipped: int
    mailboxes_pending: int
    messages_examined: int
    hits: int
    requests: int
    throttled: int
    throttle_wait_seconds: float
    percent: float
    eta_seconds: float | None


class InvestigationView(BaseModel):
    id: uuid.UUID
    name: str
    status: str
    configuration_id: uuid.UUID | None
    configuration: str
    scope: dict[str, Any]
    query: dict[str, Any]
    plan: dict[str, Any] | None
    progress: Progress
    error: str | None
    created_by: str | None
    duplicated_from: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Present when the investigation has a duration (it watches new mail).
    watch: WatchView | None = None


class WatchView(BaseModel):
    """An investigation acting on new mail: active until a time (or continuous), expired or ended."""

    state: Literal["active", "expired", "ended"]
    duration: str
    active_until: datetime | None  # None: continuous
    action: str | None
    new_hits: int  # copies found after the first search, by watching
    started_at: datetime | None
    ended_at: datetime | None


class HitView(BaseModel):
    id: uuid.UUID
    mailbox: str
    mailbox_id: str
    folder: str | None
    folder_id: str | None
    message_id: str
    internet_message_id: str
    subject: str
    sender: str
    sender_name: str
    recipients: str
    received: datetime | None
    has_attachments: bool
    attachment_names: str
    matched: list[str]
    via_attached_email: bool
    # The last remediation applied to this copy ("junk", "purge", ...), None when untouched.
    remediation: str | None = None


class CampaignView(BaseModel):
    internet_message_id: str
    subject: str
    sender: str
    copies: int
    mailboxes: int
    first_received: datetime | None
    last_received: datetime | None


class MailboxView(BaseModel):
    mailbox: str
    mailbox_id: str
    display_name: str
    status: str
    reason: str | None
    messages_examined: int
    hits: int
    search_cap_fallback: bool
    finished_at: datetime | None


class Page(BaseModel, Generic[T]):
    total: int
    offset: int
    limit: int
    items: list[T]


HitSort = Literal[
    "received",
    "-received",
    "mailbox",
    "-mailbox",
    "sender",
    "-sender",
    "subject",
    "-subject",
    "folder",
    "-folder",
]
