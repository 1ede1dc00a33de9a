"""The one interface every mail platform implements, and what it reports about itself.

Nothing here is specific to a platform: the investigation engine, remediation and the
connection test speak only these types. A provider is an async context manager; create it
through `mailtrawl.providers.registry`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from mailtrawl.core import (
    Action,
    ActionResult,
    ChangeBatch,
    ChangeRequest,
    FetchedMessage,
    ListingParts,
    MailboxRef,
    MessageLocation,
    MessageMeta,
    MessageParts,
    MessageRef,
    MessageSnapshot,
    NewMessage,
    ScanItem,
    Scope,
    ScopeResolution,
    ServerQuery,
)
from mailtrawl.errors import ProviderError


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do, so callers plan around it instead of catching failures."""

    server_side_search: bool  # full-text search on the server (KQL, Gmail q=, IMAP SEARCH)
    server_side_filter: bool  # structured filters (sender, dates, subject) on the server
    search_result_cap: int | None  # server search stops after this many results
    delta: bool  # changes since a cursor
    batch: bool  # several requests in one round trip
    immutable_ids: bool  # message ids survive moves
    purge: bool  # permanent delete
    soft_delete: bool  # delete to a place the user can recover from
    categories: bool  # per-message categories/labels and a master list
    create_message: bool  # place a (non-draft) message into a mailbox
    mime: bool  # the raw message is available
    max_concurrency_per_mailbox: int
    max_page_size: int
    notifications: bool = False  # push notifications of new mail (webhooks) besides polling


class CategoryChange(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"  # existed with another colour
    UNCHANGED = "unchanged"


# The connection test ----------------------------------------------------------------------

CheckStatus = Literal["ok", "failed", "warning", "skipped"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One step of the connection test, with a sentence a non-expert can act on."""

    name: str
    title: str
    status: CheckStatus
    message: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    duration_ms: float | None = None
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
            "details": dict(self.details),
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The whole connection test: `ok` when no required check failed."""

    checks: tuple[CheckResult, ...]
    started_at: str  # ISO 8601, UTC
    duration_ms: float

    @property
    def ok(self) -> bool:
        return not any(c.required and c.status == "failed" for c in self.checks)

    def check(self, name: str) -> CheckResult:
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "checks": [c.as_dict() for c in self.checks],
        }


# Directory search (search-as-you-type in the investigation form) -------------------------

MAX_SEARCH_PREFIX = 100  # characters of a directory search prefix sent to the platform


@dataclass(frozen=True, slots=True)
class DirectoryGroup:
    """A group found by a directory search: what to show and what names it in a scope."""

    id: str
    display_name: str
    mail: str | None = None


# The provider -----------------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    """A connected mail platform. All methods are async; errors are `mailtrawl.errors` types."""

    name: str
    capabilities: Capabilities

    async def __aenter__(self) -> Provider: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def aclose(self) -> None: ...

    async def check(
        self, *, new_configuration: bool = False, test_mailbox: str | None = None
    ) -> CheckReport:
        """Run the connection test; never raises for a failing step (it is reported)."""
        ...

    def list_users(self, scope: Scope) -> AsyncIterator[MailboxRef]:
        """Directory users in a scope (nested groups expanded), without any filtering."""
        ...

    async def resolve_scope(
        self, scope: Scope, *, verify_mailboxes: bool = False
    ) -> ScopeResolution:
        """The mailboxes to work on, and the users left out with the reason.

        Disabled accounts, users without a mailbox and mailboxes outside the authorized
        domains are skipped; with `verify_mailboxes` each mailbox is also probed (one
        request each, batched) so that mailboxes the app cannot reach are skipped too.
        """
        ...

    async def get_mailbox(self, name: str) -> MailboxRef:
        """One user by id, user principal name or address (`MailboxUnavailable` if unknown)."""
        ...

    async def search_users(self, prefix: str, limit: int = 20) -> list[MailboxRef]:
        """Up to `limit` users whose display name, user principal name or address starts
        with `prefix` (case-insensitive), by display name; outside the authorized domains
        left out."""
        ...

    async def search_groups(self, prefix: str, limit: int = 20) -> list[DirectoryGroup]:
        """Up to `limit` groups whose display name starts with `prefix` (case-insensitive)."""
        ...

    async def search_departments(self, prefix: str, limit: int = 20) -> list[str]:
        """Up to `limit` distinct departments of users that start with `prefix`."""
        ...

    def search(
        self,
        mailbox: MailboxRef,
        query: ServerQuery,
        select: Iterable[str] | None = None,
    ) -> AsyncIterator[MessageMeta]:
        """Exactly the messages matching `query` (server-side where possible), streamed."""
        ...

    def scan(
        self,
        mailboxes: Sequence[MailboxRef],
        query: ServerQuery,
        parts: ListingParts = ListingParts(),  # noqa: B008 - frozen, immutable
        *,
        select: Iterable[str] | None = None,
    ) -> AsyncIterator[ScanItem]:
        """Every message matching `query` in each mailbox, with `parts`, then one
        MailboxScanned or MailboxFailed per mailbox."""
        ...

    async def folder_names(
        self, mailboxes: Sequence[MailboxRef], names: Sequence[str] = ...
    ) -> dict[str, dict[str, str]]:
        """Mailbox id → (folder id → well-known name) for the given well-known `names`."""
        ...

    async def fetch(
        self,
        ref: MessageRef,
        parts: MessageParts = MessageParts.ALL,
        *,
        body_format: Literal["html", "text"] | None = None,
    ) -> FetchedMessage:
        """Metadata plus the parts asked for."""
        ...

    async def act(self, ref: MessageRef, action: Action) -> ActionResult:
        """Apply one action; repeating it after a lost answer is safe."""
        ...

    async def act_many(
        self, refs: Sequence[MessageRef], action: Action
    ) -> list[ActionResult | ProviderError]:
        """Apply one action to many messages (any mailboxes), batched where the platform can.

        Answers in the order of `refs`; a message that failed gets its typed error instead of
        raising, so one bad message never hides the outcome of the others. Repeating it after
        a lost answer is safe, as with `act`.
        """
        ...

    async def snapshot_many(
        self, refs: Sequence[MessageRef]
    ) -> list[MessageSnapshot | ProviderError]:
        """The raw MIME and the state (folder, categories, read, flag, importance, received
        time) of each message, for the undo vault; in the order of `refs`."""
        ...

    async def locate_many(
        self, refs: Sequence[MessageRef]
    ) -> list[MessageLocation | ProviderError]:
        """Find each message again by its Internet message id (verification after acting);
        in the order of `refs`."""
        ...

    async def changes(
        self,
        mailbox: MailboxRef,
        folder: str,
        cursor: str | None = None,
        *,
        since: datetime | None = None,
    ) -> ChangeBatch:
        """Changes in one folder since `cursor` (None: a first round of messages received
        since `since`, or of the whole folder)."""
        ...

    async def changes_many(self, requests: Sequence[ChangeRequest]) -> list[ChangeBatch]:
        """`changes` for many folders at once; a folder that fails carries its error."""
        ...

    async def ensure_category(
        self, mailbox: MailboxRef, name: str, color: str = "red"
    ) -> CategoryChange:
        """Make sure the mailbox's master category list has `name` with `color`."""
        ...

    async def create_message(
        self, mailbox: MailboxRef, folder: str, message: NewMessage, *, draft: bool = False
    ) -> MessageRef:
        """Place a message into a folder, as received mail unless `draft`."""
        ...

    def stats(self) -> dict[str, Any]:
        """Request, retry and throttling counters since the provider was created."""
        ...
