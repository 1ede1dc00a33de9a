"""Remediation actions on one message and what became of it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from mailtrawl.core.mail import MessageRef


class ActionKind(enum.StrEnum):
    WARN = "warn"  # add the warning category to the message
    UNWARN = "unwarn"  # remove it again
    SET_CATEGORIES = "set-categories"  # replace the message's categories
    MOVE = "move"  # to any folder (junk and trash are moves to well-known folders)
    DELETE = "delete"  # soft delete: recoverable by the user (Recoverable Items)
    PURGE = "purge"  # permanent delete: out of the user's reach
    RESTORE = "restore"  # move back to where it was


# Provider-neutral folder names understood by every provider.
JUNK = "junkemail"
TRASH = "deleteditems"
INBOX = "inbox"


@dataclass(frozen=True, slots=True)
class Action:
    """What to do to a message. Build one with the class methods."""

    kind: ActionKind
    folder: str | None = None
    category: str | None = None
    categories: tuple[str, ...] = ()

    @classmethod
    def warn(cls, category: str) -> Action:
        return cls(ActionKind.WARN, category=category)

    @classmethod
    def unwarn(cls, category: str) -> Action:
        return cls(ActionKind.UNWARN, category=category)

    @classmethod
    def set_categories(cls, categories: tuple[str, ...] | list[str]) -> Action:
        return cls(ActionKind.SET_CATEGORIES, categories=tuple(categories))

    @classmethod
    def move(cls, folder: str) -> Action:
        """Move to a folder: a well-known name ("junkemail", "deleteditems", ...) or a folder id."""
        return cls(ActionKind.MOVE, folder=folder)

    @classmethod
    def junk(cls) -> Action:
        return cls.move(JUNK)

    @classmethod
    def trash(cls) -> Action:
        return cls.move(TRASH)

    @classmethod
    def delete(cls) -> Action:
        return cls(ActionKind.DELETE)

    @classmethod
    def purge(cls) -> Action:
        return cls(ActionKind.PURGE)

    @classmethod
    def restore(cls, folder: str) -> Action:
        """Move a message back to its original folder (id or well-known name)."""
        return cls(ActionKind.RESTORE, folder=folder)

    def __post_init__(self) -> None:
        if self.kind in (ActionKind.MOVE, ActionKind.RESTORE) and not self.folder:
            raise ValueError(f"a {self.kind} action needs a folder")
        if self.kind in (ActionKind.WARN, ActionKind.UNWARN) and not self.category:
            raise ValueError(f"a {self.kind} action needs a category")


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of an applied action.

    `after` is where the message is now (None once purged). `changed` is False when the
    message was already in the wanted state (an action repeated after a lost answer).
    """

    action: Action
    before: MessageRef
    after: MessageRef | None
    changed: bool = True
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MessageSnapshot:
    """What the undo vault keeps of a message before it is deleted or purged."""

    ref: MessageRef  # where it was (folder id and, when known, well-known name)
    mime: bytes  # the raw message as the platform serves it ($value)
    received: datetime | None
    categories: tuple[str, ...] = ()
    is_read: bool | None = None
    flag_status: str | None = None  # "notFlagged", "flagged" or "complete"
    importance: str | None = None


@dataclass(frozen=True, slots=True)
class MessageLocation:
    """Where a message is now, found again by its Internet message id.

    `found` is the copy with the asked-for stable id (None when that copy is no longer in the
    mailbox's folders); `others` are other copies with the same Internet message id.
    """

    ref: MessageRef
    found: MessageRef | None
    categories: tuple[str, ...] = ()
    others: tuple[MessageRef, ...] = ()
