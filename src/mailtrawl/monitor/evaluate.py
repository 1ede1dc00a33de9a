"""One new message against every active query of a configuration: read once, judged by all.

The metadata delta returns is judged first (three-valued: a query that needs the body or
the attachments says "unknown"); only when some query cannot decide are more parts
fetched, once, with what every undecided query needs together, then the attachments'
contents if still needed. Each query then decides on the same view of the message: its text,
links and relay IPs are derived once, and the keywords of all the queries (compiled together
by `matcher.compile_hunts`) are found in one scan.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mailtrawl.core import FetchedMessage, MessageMeta, MessageParts
from mailtrawl.investigations.matcher import (
    CompiledHunt,
    MessageView,
    attached_email_views,
    view_of_fetched,
)
from mailtrawl.investigations.planner import Plan
from mailtrawl.matching.mime import MailParseError, parse_email
from mailtrawl.providers.base import Provider

log = logging.getLogger(__name__)


@dataclass
class WatchedQuery:
    """An active investigation as the watcher runs it."""

    investigation_id: uuid.UUID
    compiled: CompiledHunt
    plan: Plan
    since: datetime  # new mail is mail received from here on
    until: datetime | None  # None: continuous
    action: str | None

    def in_range(self, meta: MessageMeta) -> bool:
        """Whether the message is new to this investigation and inside its query's dates."""
        received = meta.received
        if received is None:
            return False
        server = self.plan.server
        # Graph gives receivedDateTime to the second: compare whole seconds.
        if received < self.since.replace(microsecond=0):
            return False
        if self.until is not None and received > self.until:
            return False
        if server.received_from is not None and received < server.received_from:
            return False
        if server.received_until is not None and received >= server.received_until:
            return False
        folders = {f.lower() for f in server.folders}
        return not folders or (meta.ref.folder_name or "").lower() in folders


@dataclass(frozen=True)
class Match:
    message: FetchedMessage
    matched: list[Any]
    via_attached: bool


def _parts_for(
    queries: list[WatchedQuery],
) -> tuple[MessageParts, Literal["html", "text"] | None]:
    parts = MessageParts.NONE
    formats: set[str] = set()
    for query in queries:
        wanted = query.plan.parts
        if wanted.headers:
            parts |= MessageParts.HEADERS
        if wanted.body:
            parts |= MessageParts.BODY
            if wanted.body_format:
                formats.add(wanted.body_format)
        if wanted.attachment_list or query.plan.fetch_attachment_content:
            parts |= MessageParts.ATTACHMENTS
    # Keywords read the text rendering and URLs the HTML: when queries differ, HTML serves
    # both (the matcher renders HTML to text itself).
    if not formats:
        return parts, None
    return parts, "text" if formats == {"text"} else "html"


async def evaluate(
    provider: Provider, meta: MessageMeta, queries: list[WatchedQuery]
) -> dict[uuid.UUID, Match]:
    """The queries `meta`'s message matches (investigation id → what matched).

    A part that cannot be read raises the provider's error: the caller reads the folder
    again next round rather than judge the message on less than it needs.
    """
    found: dict[uuid.UUID, Match] = {}
    message = FetchedMessage(meta=meta)
    view = view_of_fetched(message)
    undecided: list[WatchedQuery] = []
    for query in queries:
        result, matched = query.compiled.evaluate(view)
        if result:
            found[query.investigation_id] = Match(message, matched, via_attached=False)
        elif result is None or _wants_attached(query, message):
            undecided.append(query)
    if not undecided:
        return found
    parts, body_format = _parts_for(undecided)
    message = await provider.fetch(meta.ref, parts, body_format=body_format)
    view = view_of_fetched(message)
    deeper: list[WatchedQuery] = []
    for query in undecided:
        result, matched = query.compiled.evaluate(view)
        if result:
            found[query.investigation_id] = Match(message, matched, via_attached=False)
        elif result is None or _wants_attached(query, message):
            deeper.append(query)
    if not deeper:
        return found
    if message.attachments is None or any(
        a.content is None for a in message.attachments if not a.is_inline
    ):
        full = await provider.fetch(meta.ref, MessageParts.ATTACHMENTS)
        message = FetchedMessage(
            meta=message.meta,
            headers=message.headers,
            body=message.body,
            attachments=full.attachments,
        )
    view = view_of_fetched(message)
    inner: list[MessageView] | None = None
    for query in deeper:
        result, matched = query.compiled.evaluate(view)
        if result:
            found[query.investigation_id] = Match(message, matched, via_attached=False)
            continue
        if not query.plan.hunt.attached_emails:
            continue
        if inner is None:
            inner = _attached_views(view)
        leaves = query.compiled.inspect_attached(inner)
        if leaves is not None:
            found[query.investigation_id] = Match(message, leaves, via_attached=True)
    return found


def _wants_attached(query: WatchedQuery, message: FetchedMessage) -> bool:
    """An email attached to the message may match even though the message does not."""
    if not query.plan.hunt.attached_emails:
        return False
    if message.attachments is None:
        return bool(message.meta.has_attachments)
    return any(view.is_email for view in view_of_fetched(message).attachments or ())


def _attached_views(view: MessageView) -> list[MessageView]:
    inner: list[MessageView] = []
    for attachment in view.attachments or ():
        if attachment.is_email and attachment.content:
            try:
                inner.extend(attached_email_views(parse_email(attachment.content)))
            except MailParseError as exc:
                log.warning("skipped an attached email: %s", exc)
    return inner
