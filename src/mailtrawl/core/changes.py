"""One round of changes in a folder since a cursor (Graph delta, Gmail history, IMAP MODSEQ)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailtrawl.core.mail import MailboxRef, MessageMeta


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """Messages created or updated, ids that left the folder, and where to continue.

    `cursor` is opaque: store it and pass it back. When `resync_required` is True the old
    cursor is dead: call again with no cursor for a full synchronisation.
    """

    changed: tuple[MessageMeta, ...] = ()
    removed: tuple[str, ...] = ()
    cursor: str | None = None
    resync_required: bool = False
    # True for the first round (no cursor given): `changed` holds the whole folder.
    initial: bool = False
    # Why the folder could not be read this round (the cursor stays as it was).
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """One folder to read changes of: from `cursor`, or a first round from `since` on."""

    mailbox: MailboxRef
    folder: str
    cursor: str | None = None
    since: datetime | None = None
