"""Listing many mailboxes at once: what to bring back with each message, and what comes out.

An investigation hands a provider a batch of mailboxes and one `ServerQuery`; the provider
streams `ScanItem`s back: every listed message (with the parts asked for), then one
`MailboxScanned` or `MailboxFailed` per mailbox. Providers that can (Graph's `$batch`) put
the requests of several mailboxes into one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailtrawl.core.mail import FetchedMessage, MailboxRef
from mailtrawl.errors import ProviderError


@dataclass(frozen=True, slots=True)
class ListingParts:
    """The parts a listing brings back with each message's metadata, in the same request."""

    headers: bool = False  # the internet message headers
    body: bool = False
    # Name, content type, size and inline flag of each attachment; never the content.
    attachment_list: bool = False
    body_format: str | None = None  # "text" or "html"; None: the platform's default


@dataclass(frozen=True, slots=True)
class MailboxScanned:
    """Every message of a mailbox matching the server query has been yielded."""

    mailbox: MailboxRef
    listed: int  # messages yielded for this mailbox
    # True when a full-text search hit the platform's result cap and the listing
    # was done again without it (every message in the folders and date range).
    search_cap_fallback: bool = False


@dataclass(frozen=True, slots=True)
class MailboxFailed:
    """The mailbox could not be (completely) listed; messages already yielded stand."""

    mailbox: MailboxRef
    error: ProviderError


ScanItem = FetchedMessage | MailboxScanned | MailboxFailed
