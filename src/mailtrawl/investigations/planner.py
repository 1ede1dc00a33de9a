"""From a `Hunt` to the cheapest listing the platform accepts, plus what stays local.

The server query only narrows: every message it returns is evaluated again locally against
the whole query (`matcher.CompiledHunt`), so a server filter can never add a false hit.
What can be pushed down is taken from the top-level `all` of the query:

- received date range and folders, always;
- with structured filtering (`$filter`): sender addresses (up to 15), one subject
  (contains/equals), one Internet message id, and "has attachments" when a positive
  attachment filter is present;
- otherwise, with full-text search (KQL `$search`, which Graph never combines with
  `$filter`): single body keywords made of plain words. KQL matches words and prefixes, a
  superset of the local keyword rule (a phrase starting at a word), so nothing is lost; a
  mailbox whose search reaches the platform's result cap is listed again without it.

Message parts are fetched in the same listing request when the query reads them (headers,
body, the attachment list); attachment contents only for the messages that pass every
cheaper check, or that carry an attached email while `attached_emails` is on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from mailtrawl.core.criteria import Area, Group, Hunt, Leaf, leaves
from mailtrawl.core.query import SearchTerm, ServerQuery
from mailtrawl.core.scan import ListingParts
from mailtrawl.providers.base import Capabilities

MAX_SERVER_ADDRESSES = 15
# Listed for every message: what a result shows (and the header filters read).
RESULT_FIELDS = ("subject", "from", "to", "received", "has_attachments", "internet_message_id")
_PLAIN_WORDS = re.compile(r"^[^\W_]+(?: [^\W_]+){0,7}$")
# Rough sizes for the estimate: a typical mailbox and the share of mail with attachments.
_ASSUMED_MESSAGES = 2_000
_ATTACHMENT_SHARE = 0.15


@dataclass(frozen=True, slots=True)
class Plan:
    hunt: Hunt
    server: ServerQuery
    parts: ListingParts
    # Leaf path → how the server handles it: "exact" (the server decides it) or
    # "narrows" (the server pre-selects, the local check decides).
    pushed: dict[str, str]
    fetch_attachment_content: bool
    page_size: int
    # Message fields to list (neutral names): what results show, plus what filters read.
    select: tuple[str, ...] = ()

    @property
    def narrow(self) -> bool:
        """Whether the server listing returns less than every message in the date range."""
        return bool(self.pushed)

    def explain(self, *, mailboxes: int | None = None) -> dict[str, Any]:
        """Which parts run on the server, which run locally, and the estimated requests."""
        server = self.server
        server_part: dict[str, Any] = {
            "folders": list(server.folders) or ["(whole mailbox)"],
            "received_after": _iso(server.received_from),
            "received_before": _iso(server.received_until),
            "mode": "search" if server.search else ("filter" if self.narrow else "list"),
            "filters": [],
        }
        for leaf in leaves(self.hunt.match):
            how = self.pushed.get(leaf.path)
            if how:
                server_part["filters"].append(
                    {"path": leaf.path, "filter": leaf.describe(), "server": how}
                )
        if server.or_has_attachments:
            server_part["also_listed"] = (
                "every message with attachments, to look inside attached emails"
            )
        local = [
            {
                "path": leaf.path,
                "filter": leaf.describe(),
                "reads": leaf.spec.area.value,
                "when": "after listing"
                if leaf.spec.area is not Area.ATTACHMENT_CONTENT
                else "after fetching attachments of the messages that pass the rest",
            }
            for leaf in leaves(self.hunt.match)
            if self.pushed.get(leaf.path) != "exact"
        ]
        listed = [
            name
            for name, wanted in (
                ("headers", self.parts.headers),
                ("body", self.parts.body),
                ("attachment list", self.parts.attachment_list),
            )
            if wanted
        ]
        return {
            "server": server_part,
            "local": local,
            "fetched_with_listing": ["metadata", *listed],
            "fetched_later": (
                ["attachment contents of candidates"] if self.fetch_attachment_content else []
            )
            + (["attached emails"] if self.hunt.attached_emails else []),
            "estimate": self.estimate(mailboxes),
        }

    def estimate(self, mailboxes: int | None) -> dict[str, Any]:
        folders = max(1, len(self.server.folders))
        if self.narrow:
            listing = float(folders)  # a narrow listing is usually one page per folder
            basis = "one listing page per folder when few messages match"
        else:
            pages = math.ceil(_ASSUMED_MESSAGES / self.page_size)
            listing = float(folders * pages)
            basis = (
                f"one page per {self.page_size} messages listed; "
                f"{pages} pages for a mailbox of {_ASSUMED_MESSAGES:,} messages"
            )
        extra = 0.0
        if self.fetch_attachment_content and not self.narrow:
            extra = _ASSUMED_MESSAGES * _ATTACHMENT_SHARE * 0.1
        per_mailbox = round(listing + extra, 2)
        return {
            "requests_per_mailbox": per_mailbox,
            "mailboxes": mailboxes,
            "total_requests": None if mailboxes is None else math.ceil(per_mailbox * mailboxes),
            "basis": basis,
            "batched": "first pages of up to 20 mailboxes share one $batch round trip",
            "directory_requests": "1 per 999 users in scope",
            "folder_names": "the first time a mailbox has hits: 1 (inbox), 2 more (junk, "
            "deleted) and 5 more only while a hit is still unnamed; remembered afterwards",
        }


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _top_conjuncts(hunt: Hunt) -> list[Leaf]:
    node = hunt.match
    if isinstance(node, Leaf):
        return [node]
    if isinstance(node, Group) and node.kind == "all":
        return [c for c in node.children if isinstance(c, Leaf)]
    return []


def plan_hunt(hunt: Hunt, capabilities: Capabilities, *, page_size: int = 250) -> Plan:
    """The listing to ask each mailbox for, and the parts to fetch with it."""
    server = ServerQuery(
        folders=hunt.folders,
        received_from=hunt.received_after,
        received_until=hunt.received_before,
    )
    pushed: dict[str, str] = {}
    top = _top_conjuncts(hunt)
    if capabilities.server_side_filter:
        for leaf in top:
            server = _push_filter(server, leaf, pushed)
    if not pushed and capabilities.server_side_search:
        terms = []
        for leaf in top:
            if (
                leaf.field == "body"
                and len(leaf.values) == 1
                and _PLAIN_WORDS.match(leaf.values[0])
            ):
                terms.append(SearchTerm(leaf.values[0], "body"))
                pushed[leaf.path] = "narrows"
        if terms:
            server = replace(server, search=tuple(terms[:4]))
            for leaf in top:  # only the first four terms went to the server
                if leaf.field == "body" and SearchTerm(leaf.values[0], "body") not in server.search:
                    pushed.pop(leaf.path, None)
    if pushed and hunt.attached_emails and server.has_attachments is not True:
        server = replace(server, or_has_attachments=True)
    areas = hunt.areas()
    fields = {leaf.field for leaf in leaves(hunt.match)}
    parts = ListingParts(
        headers=Area.RAW_HEADERS in areas,
        body=Area.BODY in areas,
        attachment_list=bool(areas & {Area.ATTACHMENT_LIST, Area.ATTACHMENT_CONTENT})
        or hunt.attached_emails,
        # Keywords and regexes read the text Microsoft 365 renders from the body (no local
        # HTML parsing for every listed message); links need the HTML itself.
        body_format=None if fields & {"url", "url_domain"} else "text",
    )
    select = RESULT_FIELDS + tuple(f for f in ("cc", "bcc", "reply_to") if f in fields)
    return Plan(
        hunt=hunt,
        server=server,
        parts=parts,
        pushed=pushed,
        fetch_attachment_content=Area.ATTACHMENT_CONTENT in areas,
        page_size=page_size,
        select=select,
    )


def _push_filter(server: ServerQuery, leaf: Leaf, pushed: dict[str, str]) -> ServerQuery:
    """`server` with `leaf` added when `$filter` can express it exactly."""
    values = leaf.values
    if leaf.field == "from" and not server.from_addresses:
        if len(values) <= MAX_SERVER_ADDRESSES and not any(v.startswith("@") for v in values):
            pushed[leaf.path] = "exact"
            return replace(server, from_addresses=values)
    elif leaf.field == "subject" and len(values) == 1 and server.subject_contains is None:
        # `contains` for equality too: `subject eq` misses some messages on real Exchange
        # (microsoftgraph/msgraph-sdk-dotnet#1963); the local check decides equality.
        pushed[leaf.path] = "narrows"
        return replace(server, subject_contains=values[0].strip())
    elif leaf.field == "internet_message_id" and len(values) == 1:
        if server.internet_message_id is None:
            pushed[leaf.path] = "exact"
            return replace(server, internet_message_id=values[0])
    elif leaf.field == "has_attachments" and server.has_attachments is None:
        pushed[leaf.path] = "exact"
        return replace(server, has_attachments=values[0] == "true")
    elif leaf.spec.group == "attachment" and server.has_attachments is None:
        # A positive attachment filter needs a message with attachments (files).
        pushed[leaf.path] = "narrows"
        return replace(server, has_attachments=True)
    return server
