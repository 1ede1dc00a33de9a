"""A provider-neutral description of what to ask a mail server for.

`ServerQuery` holds the criteria a mail platform may be able to evaluate itself; each
provider translates it (Graph: `$filter` or KQL `$search`) and evaluates locally whatever
its platform cannot. All criteria are ANDed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from mailtrawl.core.mail import MessageMeta

SearchProperty = Literal[
    "from", "to", "cc", "bcc", "participants", "recipients", "subject", "body", "attachment"
]
SEARCH_PROPERTIES: frozenset[str] = frozenset(
    {"from", "to", "cc", "bcc", "participants", "recipients", "subject", "body", "attachment"}
)


@dataclass(frozen=True, slots=True)
class SearchTerm:
    """A full-text term: a word or phrase, in one property or (None) in from/subject/body.

    Matching is the platform's (token and prefix based, not substring), so a search term
    narrows the candidates; exact matching stays with the local matcher.
    """

    value: str
    property: SearchProperty | None = None

    def __post_init__(self) -> None:
        if not self.value.strip():
            raise ValueError("a search term cannot be empty")
        if self.property is not None and self.property not in SEARCH_PROPERTIES:
            raise ValueError(f"unknown search property '{self.property}'")


@dataclass(frozen=True, slots=True)
class ServerQuery:
    """Criteria for listing messages in one mailbox. Empty means every message."""

    # Well-known folder names ("inbox", "junkemail", ...) or folder ids; empty = whole mailbox.
    folders: tuple[str, ...] = ()
    received_from: datetime | None = None  # inclusive
    received_until: datetime | None = None  # exclusive
    from_addresses: tuple[str, ...] = ()  # any of these sender addresses (case-insensitive)
    subject_contains: str | None = None  # case-insensitive substring
    subject_equals: str | None = None  # case-insensitive
    internet_message_id: str | None = None
    has_attachments: bool | None = None
    search: tuple[SearchTerm, ...] = ()
    # Also list every message with attachments (in the same folders and date range), even
    # when it fails the other criteria: an attached email may match although its carrier
    # does not. Such messages come back unfiltered; the caller evaluates them.
    or_has_attachments: bool = False

    def __post_init__(self) -> None:
        for name in ("received_from", "received_until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must carry a time zone (use UTC)")
        if (
            self.received_from is not None
            and self.received_until is not None
            and self.received_until <= self.received_from
        ):
            raise ValueError("received_until must be after received_from")

    @property
    def has_criteria(self) -> bool:
        """Whether anything beyond the folders narrows the listing."""
        return replace(self, folders=()) != ServerQuery()

    def matches(self, meta: MessageMeta) -> bool:
        """Evaluate every criterion except `search` and `folders` on listed metadata.

        With `or_has_attachments`, a message with attachments inside the date range passes.
        """
        if self.or_has_attachments and meta.has_attachments:
            return self._in_range(meta)
        return self._matches(meta)

    def _in_range(self, meta: MessageMeta) -> bool:
        if self.received_from is not None and (
            meta.received is None or meta.received < self.received_from
        ):
            return False
        return not (
            self.received_until is not None
            and (meta.received is None or meta.received >= self.received_until)
        )

    def _matches(self, meta: MessageMeta) -> bool:
        if not self._in_range(meta):
            return False
        if self.from_addresses:
            sender = (meta.from_.address if meta.from_ else "").casefold()
            if sender not in {a.casefold() for a in self.from_addresses}:
                return False
        subject = (meta.subject or "").casefold()
        if self.subject_contains is not None and self.subject_contains.casefold() not in subject:
            return False
        if self.subject_equals is not None and self.subject_equals.casefold() != subject:
            return False
        if self.internet_message_id is not None and (
            (meta.internet_message_id or "").strip() != self.internet_message_id.strip()
        ):
            return False
        return not (
            self.has_attachments is not None and bool(meta.has_attachments) != self.has_attachments
        )
