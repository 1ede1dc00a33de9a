"""What an investigation looks for: a tree of filters over headers, body and attachments.

`Hunt` is the validated, normalised form of a query document (see
`mailtrawl.investigations.query` for the JSON/YAML syntax and its validation). Every value
here is already checked and normalised: domains in punycode, URLs normalised, hashes in
lowercase hex, regexes known to compile. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime


class Area(enum.StrEnum):
    """Which part of a message a filter reads, cheapest first."""

    HEADER = "header"  # listed metadata (subject, addresses, ids, dates)
    RAW_HEADERS = "raw-headers"  # the internet message headers (Received chain, any header)
    BODY = "body"
    ATTACHMENT_LIST = "attachment-list"  # names, types and sizes
    ATTACHMENT_CONTENT = "attachment-content"  # the bytes (hashes)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One filter field: the operators it accepts (the first is the default) and its area."""

    name: str
    group: str  # "header", "body", "attachment" (how the dashboard groups them)
    ops: tuple[str, ...]
    area: Area
    description: str


FIELD_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("subject", "header", ("contains", "equals"), Area.HEADER, "the subject line"),
    FieldSpec(
        "from",
        "header",
        ("equals",),
        Area.HEADER,
        "the From address; '@example.com' means any address in that domain or its subdomains",
    ),
    FieldSpec(
        "from_domain", "header", ("equals",), Area.HEADER, "the From domain or a subdomain of it"
    ),
    FieldSpec(
        "sender_name", "header", ("contains", "equals"), Area.HEADER, "the From display name"
    ),
    FieldSpec("to", "header", ("equals",), Area.HEADER, "any To address (or '@domain')"),
    FieldSpec("cc", "header", ("equals",), Area.HEADER, "any Cc address (or '@domain')"),
    FieldSpec("bcc", "header", ("equals",), Area.HEADER, "any Bcc address (or '@domain')"),
    FieldSpec(
        "reply_to", "header", ("equals",), Area.HEADER, "any Reply-To address (or '@domain')"
    ),
    FieldSpec(
        "sender_ip",
        "header",
        ("equals",),
        Area.RAW_HEADERS,
        "an IP address (or CIDR range) in the Received chain",
    ),
    FieldSpec("internet_message_id", "header", ("equals",), Area.HEADER, "the Message-ID header"),
    FieldSpec(
        "header",
        "header",
        ("contains", "equals", "exists"),
        Area.RAW_HEADERS,
        "any header by name: {name: X-Mailer, contains: ...}",
    ),
    FieldSpec(
        "body",
        "body",
        ("contains",),
        Area.BODY,
        "a keyword or phrase, case-insensitive, starting at a word",
    ),
    FieldSpec(
        "url",
        "body",
        ("equals", "starts_with"),
        Area.BODY,
        "a link in the body, normalised (case, IDN, Safe Links and tracking parameters)",
    ),
    FieldSpec(
        "url_domain", "body", ("equals",), Area.BODY, "the domain (or a subdomain) of a link"
    ),
    FieldSpec("body_regex", "body", ("matches",), Area.BODY, "an RE2 regular expression"),
    FieldSpec(
        "attachment_name",
        "attachment",
        ("matches",),
        Area.ATTACHMENT_LIST,
        "a file name glob (*, ?, [abc]), case-insensitive",
    ),
    FieldSpec(
        "attachment_extension",
        "attachment",
        ("equals",),
        Area.ATTACHMENT_LIST,
        "a file extension, without the dot",
    ),
    FieldSpec(
        "attachment_type",
        "attachment",
        ("matches",),
        Area.ATTACHMENT_LIST,
        "a content type glob, e.g. application/pdf or image/*",
    ),
    FieldSpec(
        "attachment_size",
        "attachment",
        ("between",),
        Area.ATTACHMENT_LIST,
        "an attachment size range: {min: 10KB, max: 5MB}",
    ),
    FieldSpec(
        "attachment_hash",
        "attachment",
        ("equals",),
        Area.ATTACHMENT_CONTENT,
        "an MD5, SHA-1, SHA-256 or SHA-512 of an attachment's bytes",
    ),
    FieldSpec(
        "has_attachments", "attachment", ("equals",), Area.HEADER, "true or false (files only)"
    ),
)
FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in FIELD_SPECS}

WELL_KNOWN_FOLDERS: tuple[str, ...] = (
    "inbox",
    "junkemail",
    "deleteditems",
    "sentitems",
    "drafts",
    "archive",
    "outbox",
    "clutter",
    "conversationhistory",
    "recoverableitemsdeletions",
)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One filter. `values` are alternatives (any of them matches)."""

    field: str
    op: str
    values: tuple[str, ...] = ()
    path: str = ""  # where it was written in the query document, for messages and explain
    header_name: str | None = None  # for field "header"
    size_min: int | None = None  # for field "attachment_size", bytes, inclusive
    size_max: int | None = None

    @property
    def spec(self) -> FieldSpec:
        return FIELDS[self.field]

    def describe(self) -> str:
        """A short human form, e.g. `subject contains "invoice"`."""
        if self.field == "attachment_size":
            low = "" if self.size_min is None else f"≥ {self.size_min} B"
            high = "" if self.size_max is None else f"≤ {self.size_max} B"
            return f"attachment_size {' and '.join(p for p in (low, high) if p)}"
        target = f"header {self.header_name}" if self.field == "header" else self.field
        if self.op == "exists":
            return f"{target} exists"
        shown = " or ".join(f'"{v}"' for v in self.values[:5])
        if len(self.values) > 5:
            shown += f" or {len(self.values) - 5} more"
        return f"{target} {self.op.replace('_', ' ')} {shown}"


@dataclass(frozen=True, slots=True)
class Group:
    """All (AND) or any (OR) of the children."""

    kind: str  # "all" | "any"
    children: tuple[Node, ...]
    path: str = ""


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    path: str = ""


Node = Leaf | Group | Not


def leaves(node: Node | None) -> Iterator[Leaf]:
    """Every leaf of a tree, in document order."""
    if node is None:
        return
    if isinstance(node, Leaf):
        yield node
    elif isinstance(node, Not):
        yield from leaves(node.child)
    else:
        for child in node.children:
            yield from leaves(child)


@dataclass(frozen=True, slots=True)
class Hunt:
    """A validated query: the filter tree plus where and when to look."""

    match: Node | None = None  # None: every message in the folders and date range
    received_after: datetime | None = None  # inclusive, UTC
    received_before: datetime | None = None  # exclusive, UTC
    folders: tuple[str, ...] = ()  # well-known folder names; empty: the whole mailbox
    # Also evaluate the query on emails attached to a message (forwarded as attachment).
    attached_emails: bool = True

    def areas(self) -> set[Area]:
        return {leaf.spec.area for leaf in leaves(self.match)}
