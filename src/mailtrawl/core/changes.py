"""One round of changes in a folder since a cursor (Graph delta, Gmail history, IMAP MODSEQ)."""

from __future__ import annotations

from dataclasses import dataclass

from mailtrawl.core.mail import MessageMeta


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
