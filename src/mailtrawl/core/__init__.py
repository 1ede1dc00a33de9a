"""Plain value types shared by every layer: mailboxes, messages, actions, scopes, queries.

Nothing here does I/O or knows a mail platform; providers translate to and from these.
"""

from __future__ import annotations

from mailtrawl.core.actions import (
    Action,
    ActionKind,
    ActionResult,
    MessageLocation,
    MessageSnapshot,
)
from mailtrawl.core.changes import ChangeBatch, ChangeRequest
from mailtrawl.core.mail import (
    AttachmentContent,
    Body,
    EmailAddress,
    FetchedMessage,
    Header,
    MailboxRef,
    MessageMeta,
    MessageParts,
    MessageRef,
    NewMessage,
)
from mailtrawl.core.query import SearchTerm, ServerQuery
from mailtrawl.core.scan import ListingParts, MailboxFailed, MailboxScanned, ScanItem
from mailtrawl.core.scope import (
    Scope,
    ScopeKind,
    ScopeResolution,
    SkippedMailbox,
    SkipReason,
    domain_authorized,
)

__all__ = [
    "Action",
    "ActionKind",
    "ActionResult",
    "AttachmentContent",
    "Body",
    "ChangeBatch",
    "ChangeRequest",
    "EmailAddress",
    "FetchedMessage",
    "Header",
    "ListingParts",
    "MailboxFailed",
    "MailboxRef",
    "MailboxScanned",
    "MessageLocation",
    "MessageMeta",
    "MessageParts",
    "MessageRef",
    "MessageSnapshot",
    "NewMessage",
    "ScanItem",
    "Scope",
    "ScopeKind",
    "ScopeResolution",
    "SearchTerm",
    "ServerQuery",
    "SkipReason",
    "SkippedMailbox",
    "domain_authorized",
]
