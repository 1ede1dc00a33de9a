"""`ServerQuery` → Graph message listing requests, and the part that must stay local.

Pure functions, no I/O. The rules they respect (graph-api-facts.md §3):

- `$filter` and `$search` are never combined; `$orderby` never goes with `$search`;
- with `$orderby`, every sorted property leads the filter in the same order
  (`InefficientFilter` otherwise), so `receivedDateTime` always comes first;
- `$search` (KQL) is token and prefix based and sees days, not instants: it only narrows,
  and the exact criteria are checked again locally (the residual);
- `$search` answers at most 1,000 results (`result_cap`);
- `Prefer: IdType="ImmutableId"` on every request; `$select` only what is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from mailtrawl.core.query import SearchTerm, ServerQuery
from mailtrawl.providers.graph.client import IMMUTABLE_IDS, segment

SEARCH_RESULT_CAP = 1000
DEFAULT_PAGE_SIZE = 250
MAX_PAGE_SIZE = 1000
# More sender addresses than this are matched locally rather than in one long `or` chain.
MAX_OR_TERMS = 15

# Neutral metadata field names → Graph message properties.
META_FIELDS: dict[str, tuple[str, ...]] = {
    "subject": ("subject",),
    "from": ("from",),
    "sender": ("sender",),
    "to": ("toRecipients",),
    "cc": ("ccRecipients",),
    "bcc": ("bccRecipients",),
    "reply_to": ("replyTo",),
    "received": ("receivedDateTime",),
    "sent": ("sentDateTime",),
    "has_attachments": ("hasAttachments",),
    "internet_message_id": ("internetMessageId",),
    "categories": ("categories",),
    "is_read": ("isRead",),
    "is_draft": ("isDraft",),
    "folder": ("parentFolderId",),
}
# Always selected: what a MessageRef needs.
ALWAYS_SELECTED = ("id", "parentFolderId", "internetMessageId")
# What the residual needs to be checked locally.
_RESIDUAL_FIELDS = {
    "received_from": "received",
    "received_until": "received",
    "from_addresses": "from",
    "subject_contains": "subject",
    "subject_equals": "subject",
    "internet_message_id": "internet_message_id",
    "has_attachments": "has_attachments",
}


@dataclass(frozen=True, slots=True)
class GraphListing:
    """One message listing request: a path under the version root, options and headers."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]
    folder: str | None = None


@dataclass(frozen=True, slots=True)
class TranslatedQuery:
    listings: tuple[GraphListing, ...]
    # Criteria Graph cannot evaluate exactly: check them with `residual.matches(meta)`.
    residual: ServerQuery = field(default_factory=ServerQuery)
    uses_search: bool = False
    # `$search` stops at this many results per listing.
    result_cap: int | None = None


def select_clause(fields: Iterable[str] | None = None, extra: Iterable[str] = ()) -> str:
    """`$select` for the given neutral field names (all metadata fields when None)."""
    names = list(META_FIELDS) if fields is None else list(fields)
    chosen: list[str] = list(ALWAYS_SELECTED)
    for name in [*names, *extra]:
        try:
            props = META_FIELDS[name]
        except KeyError:
            raise ValueError(f"unknown message field '{name}'") from None
        chosen.extend(p for p in props if p not in chosen)
    return ",".join(chosen)


def odata_string(value: str) -> str:
    """A single-quoted OData string literal."""
    return "'" + value.replace("'", "''") + "'"


def odata_datetime(value: datetime) -> str:
    """An OData datetime literal in UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor_second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _ceil_second(value: datetime) -> datetime:
    return value if value.microsecond == 0 else value.replace(microsecond=0) + timedelta(seconds=1)


def build_filter(
    query: ServerQuery, *, order_by_received: bool = False
) -> tuple[str | None, ServerQuery]:
    """The `$filter` expression and the residual criteria it could not express exactly.

    With `or_has_attachments`: `<date range> and ((<other clauses>) or hasAttachments eq true)`.
    """
    clauses: list[str] = []
    residual = ServerQuery()
    start, end = query.received_from, query.received_until
    if start is not None:
        clauses.append(f"receivedDateTime ge {odata_datetime(_floor_second(start))}")
    elif order_by_received:
        # Sorting needs the sorted property in the filter, first (InefficientFilter).
        clauses.append("receivedDateTime ge 1900-01-01T00:00:00Z")
    if end is not None:
        clauses.append(f"receivedDateTime lt {odata_datetime(_ceil_second(end))}")
    if (start is not None and start.microsecond) or (end is not None and end.microsecond):
        # Graph compares whole seconds: the server range is widened, the exact one kept here.
        residual = replace(residual, received_from=start, received_until=end)
    dates = len(clauses)
    if query.from_addresses:
        if len(query.from_addresses) <= MAX_OR_TERMS:
            terms = [
                f"from/emailAddress/address eq {odata_string(a)}" for a in query.from_addresses
            ]
            clauses.append(terms[0] if len(terms) == 1 else "(" + " or ".join(terms) + ")")
        else:
            residual = replace(residual, from_addresses=query.from_addresses)
    if query.subject_equals is not None:
        clauses.append(f"subject eq {odata_string(query.subject_equals)}")
    if query.subject_contains is not None:
        clauses.append(f"contains(subject,{odata_string(query.subject_contains)})")
    if query.internet_message_id is not None:
        clauses.append(f"internetMessageId eq {odata_string(query.internet_message_id)}")
    if query.has_attachments is not None:
        clauses.append(f"hasAttachments eq {'true' if query.has_attachments else 'false'}")
    others = clauses[dates:]
    if query.or_has_attachments:
        residual = replace(residual, or_has_attachments=True)
        if others:
            inner = others[0] if len(others) == 1 else "(" + " and ".join(others) + ")"
            clauses[dates:] = [f"({inner} or hasAttachments eq true)"]
    return (" and ".join(clauses) or None), residual


def _kql_value(value: str) -> str:
    # A quote cannot be written inside a KQL phrase; it separates tokens anyway.
    return '"' + value.replace('"', " ").strip() + '"'


def _kql_term(term: SearchTerm) -> str:
    value = _kql_value(term.value)
    return f"{term.property}:{value}" if term.property else value


def build_search(query: ServerQuery) -> tuple[str, ServerQuery]:
    """The `$search` value (KQL in double quotes) and the residual checked locally.

    Every exact criterion stays in the residual: KQL only narrows the candidates. With
    `or_has_attachments`: `((<terms>) OR hasAttachments:true) AND <date terms>`.
    """
    terms = [_kql_term(t) for t in query.search]
    if query.from_addresses and len(query.from_addresses) <= MAX_OR_TERMS:
        senders = [f"from:{_kql_value(a)}" for a in query.from_addresses]
        terms.append(senders[0] if len(senders) == 1 else "(" + " OR ".join(senders) + ")")
    attachments = []
    if query.has_attachments is not None:
        attachments.append(f"hasAttachments:{str(query.has_attachments).lower()}")
    if query.or_has_attachments and (terms or attachments):
        terms, attachments = [f"(({' AND '.join(terms + attachments)}) OR hasAttachments:true)"], []
    parts = terms
    # KQL dates are days in the mailbox's time zone: widen by a day on each side.
    if query.received_from is not None:
        day = (query.received_from.astimezone(UTC) - timedelta(days=1)).date().isoformat()
        parts.append(f"received>={day}")
    if query.received_until is not None:
        day = (query.received_until.astimezone(UTC) + timedelta(days=1)).date().isoformat()
        parts.append(f"received<={day}")
    parts += attachments
    kql = " AND ".join(parts)
    search = '"' + kql.replace("\\", "\\\\").replace('"', '\\"') + '"'
    residual = replace(query, folders=(), search=())
    return search, residual


def messages_path(mailbox: str, folder: str | None) -> str:
    if folder is None:
        return f"users/{segment(mailbox)}/messages"
    return f"users/{segment(mailbox)}/mailFolders/{segment(folder)}/messages"


def translate(
    mailbox: str,
    query: ServerQuery,
    *,
    select: Iterable[str] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    order_by_received: bool = False,
) -> TranslatedQuery:
    """The Graph listings answering `query` in one mailbox (one per folder)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    params: dict[str, str] = {"$top": str(page_size)}
    uses_search = bool(query.search)
    if uses_search:
        params["$search"], residual = build_search(query)
    else:
        expression, residual = build_filter(query, order_by_received=order_by_received)
        if expression:
            params["$filter"] = expression
        if order_by_received:
            params["$orderby"] = "receivedDateTime desc"
    needed = {_RESIDUAL_FIELDS[name] for name in _RESIDUAL_FIELDS if _is_set(residual, name)}
    if residual.or_has_attachments and needed:
        needed.add("has_attachments")  # lets messages with attachments through
    wanted = list(META_FIELDS) if select is None else list(select)
    params["$select"] = select_clause(wanted, sorted(needed - set(wanted)))
    headers = {"Prefer": IMMUTABLE_IDS}
    folders: tuple[str | None, ...] = tuple(dict.fromkeys(query.folders)) or (None,)
    listings = tuple(
        GraphListing(messages_path(mailbox, folder), dict(params), dict(headers), folder)
        for folder in folders
    )
    return TranslatedQuery(
        listings,
        residual=residual,
        uses_search=uses_search,
        result_cap=SEARCH_RESULT_CAP if uses_search else None,
    )


def _is_set(query: ServerQuery, name: str) -> bool:
    value = getattr(query, name)
    return value is not None and value != ()
