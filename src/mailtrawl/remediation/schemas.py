"""What the API and CLI accept and show for remediation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KindName = Literal["warn", "junk", "trash", "delete", "purge"]


class Selection(BaseModel):
    """Which hits of the investigation an action covers; empty means all of them.

    Different fields narrow together (AND); the values of one field add up (OR).
    """

    model_config = ConfigDict(extra="forbid")

    hits: list[uuid.UUID] = Field(default_factory=list, max_length=100_000)
    # Campaign rows: Internet message ids.
    campaigns: list[str] = Field(default_factory=list, max_length=10_000)
    # Mailboxes by user principal name or id.
    mailboxes: list[str] = Field(default_factory=list, max_length=100_000)
    # Folders the copies are in now, by well-known name ("inbox", "junkemail", ...).
    folders: list[str] = Field(default_factory=list, max_length=50)

    @property
    def everything(self) -> bool:
        return not (self.hits or self.campaigns or self.mailboxes or self.folders)


class NoticeOptions(BaseModel):
    """The warning notice `warn` may place in each inbox (defaults from the settings)."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=255)
    body: str | None = Field(default=None, max_length=100_000)


class ActionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: KindName
    selection: Selection = Field(default_factory=Selection)
    # warn only: also place a notice in the inbox of each mailbox with a warned copy.
    notify: bool = False
    notice: NoticeOptions | None = None
    dry_run: bool = Field(default=False, description="only preview: change nothing")
    note: str | None = Field(default=None, max_length=2000, description="why, for the approver")

    @model_validator(mode="after")
    def _notice_goes_with_warn(self) -> ActionCreate:
        if self.notify and self.action != "warn":
            raise ValueError("notify (a notice in the inbox) only goes with the warn action")
        if self.notice is not None and not self.notify:
            raise ValueError("a notice template needs notify: true")
        return self


class RestoreCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Only these mailboxes / items of the undone action; empty: all of it.
    mailboxes: list[str] = Field(default_factory=list, max_length=100_000)
    items: list[uuid.UUID] = Field(default_factory=list, max_length=100_000)
    dry_run: bool = False
    note: str | None = Field(default=None, max_length=2000)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


class FolderCount(BaseModel):
    folder: str
    messages: int


class MailboxPreview(BaseModel):
    mailbox: str
    messages: int
    folders: dict[str, int]


class Preview(BaseModel):
    """Exact counts of what an action would do, by mailbox and by folder."""

    action: str
    messages: int  # journal rows the action would have
    mailboxes: int
    will_change: int
    already_done: int  # already where the action would put them
    excluded: dict[str, int]  # copies the action cannot apply to, by reason
    by_folder: dict[str, int]
    by_mailbox: list[MailboxPreview]
    by_mailbox_truncated: bool
    requires_approval: bool
    approval_reason: str | None


class ActionCounts(BaseModel):
    total: int
    planned: int
    applied: int
    verified: int
    unchanged: int
    failed: int
    undone: int


class ActionView(BaseModel):
    id: uuid.UUID
    investigation_id: uuid.UUID
    action: str
    status: str
    undoes: uuid.UUID | None
    selection: dict[str, Any]
    options: dict[str, Any]
    preview: dict[str, Any]
    requires_approval: bool
    approval_reason: str | None
    requested_by: str
    requested_role: str | None
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    counts: ActionCounts
    requests: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ActionRequested(BaseModel):
    """The answer to a request: the preview, and the action unless it was a dry run."""

    preview: Preview
    action: ActionView | None


class ItemView(BaseModel):
    """One receipt row: a message under an action, and what became of it."""

    id: uuid.UUID
    action_id: uuid.UUID
    hit_id: uuid.UUID | None
    mailbox: str
    internet_message_id: str
    subject: str
    sender: str
    source_folder: str | None
    state: str
    changed: bool | None
    result_folder: str | None
    attempts: int
    error: str | None
    vaulted: bool
    applied_at: datetime | None
    verified_at: datetime | None
    undone_at: datetime | None


class ItemPage(BaseModel):
    items: list[ItemView]
    total: int
    offset: int
    limit: int


ItemStateName = Literal["planned", "applied", "verified", "failed", "undone"]
