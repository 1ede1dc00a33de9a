"""Mailboxes, messages and their parts, as every provider reports them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

BodyType = Literal["text", "html"]


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """A display name and an address; either may be empty in hostile mail."""

    address: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower() if "@" in self.address else ""


@dataclass(frozen=True, slots=True)
class MailboxRef:
    """A user and (maybe) their mailbox, as the directory describes them."""

    id: str
    upn: str
    display_name: str = ""
    mail: str | None = None
    department: str | None = None
    enabled: bool = True
    # False when the directory says there is no mailbox; True means "believed to have one".
    has_mailbox: bool = True

    @property
    def address(self) -> str:
        """The primary SMTP address, else the user principal name."""
        return self.mail or self.upn

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class MessageRef:
    """Where one message is: enough to fetch it or act on it again later."""

    mailbox: MailboxRef
    message_id: str
    # The id that survives moves between folders (Graph's ImmutableId); None if unsupported.
    immutable_id: str | None = None
    folder_id: str | None = None
    # A well-known folder name ("inbox", "junkemail", ...) when the provider knows it.
    folder_name: str | None = None
    internet_message_id: str | None = None

    @property
    def stable_id(self) -> str:
        return self.immutable_id or self.message_id


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """The cheap part of a message: what a listing returns without bodies or attachments."""

    ref: MessageRef
    subject: str | None = None
    from_: EmailAddress | None = None
    sender: EmailAddress | None = None
    to: tuple[EmailAddress, ...] = ()
    cc: tuple[EmailAddress, ...] = ()
    bcc: tuple[EmailAddress, ...] = ()
    reply_to: tuple[EmailAddress, ...] = ()
    received: datetime | None = None
    sent: datetime | None = None
    has_attachments: bool | None = None
    internet_message_id: str | None = None
    categories: tuple[str, ...] = ()
    is_read: bool | None = None
    is_draft: bool | None = None


class MessageParts(enum.Flag):
    """Which expensive parts `fetch` should bring back (metadata always comes)."""

    NONE = 0
    HEADERS = enum.auto()
    BODY = enum.auto()
    ATTACHMENTS = enum.auto()
    MIME = enum.auto()
    ALL = HEADERS | BODY | ATTACHMENTS | MIME


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Body:
    content_type: BodyType
    content: str


@dataclass(frozen=True, slots=True)
class AttachmentContent:
    """One attachment; `kind` is "file", "item" (an attached email, bytes = its MIME) or "reference"."""

    id: str
    name: str
    content_type: str | None
    size: int
    content: bytes | None
    is_inline: bool = False
    kind: Literal["file", "item", "reference"] = "file"
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """A message with the parts that were asked for; parts not asked for are None."""

    meta: MessageMeta
    headers: tuple[Header, ...] | None = None
    body: Body | None = None
    attachments: tuple[AttachmentContent, ...] | None = None
    mime: bytes | None = None

    def header_values(self, name: str) -> list[str]:
        """All values of a header (case-insensitive name), in order."""
        wanted = name.lower()
        return [h.value for h in self.headers or () if h.name.lower() == wanted]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to place into a mailbox (a warning notice, or a restored copy)."""

    subject: str
    body: str
    body_type: BodyType = "html"
    from_: EmailAddress | None = None
    to: tuple[EmailAddress, ...] = ()
    received: datetime | None = None
    sent: datetime | None = None
    internet_message_id: str | None = None
    # Only custom `x-` headers can be set this way.
    headers: tuple[Header, ...] = ()
    categories: tuple[str, ...] = ()
    is_read: bool = False
    attachments: tuple[AttachmentContent, ...] = field(default=())
    cc: tuple[EmailAddress, ...] = ()
    reply_to: tuple[EmailAddress, ...] = ()
    flag_status: str | None = None  # "notFlagged", "flagged" or "complete"; None: the default
    importance: str | None = None  # "low", "normal" or "high"; None: the platform's default
