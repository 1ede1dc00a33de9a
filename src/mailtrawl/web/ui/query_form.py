"""The filter builder of the new-investigation form: plain form fields <-> a query document.

The form posts flat fields, so it works without script:

    groups-0-kind = all | any            the top-level group
    groups-G-kind = all | any            nested group G (G >= 1), one level deep
    rows-N-group  = G                    which group row N belongs to (0: the top level)
    rows-N-field, rows-N-op, rows-N-header, rows-N-value, rows-N-not

`build_document` turns them into a query document for `parse_query` and remembers where in
the document each row went, so `QueryError` paths (`match.all[1].any[0].subject`) become
messages next to the row that caused them. `from_document` goes the other way, for the
"edit as JSON" round trip; a document the builder cannot show returns None.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from starlette.datastructures import FormData

from mailtrawl.core.criteria import FIELD_SPECS, FIELDS

GROUP_LABELS = {"header": "Header", "body": "Body", "attachment": "Attachment"}
KINDS = ("all", "any")
MAX_ROWS = 60
MAX_GROUPS = 10
BLANK_ROWS = 2
# Fields whose value may list alternatives separated by commas (addresses, domains, ids).
LISTABLE = frozenset(
    {
        "from",
        "from_domain",
        "to",
        "cc",
        "bcc",
        "reply_to",
        "sender_ip",
        "internet_message_id",
        "url_domain",
        "attachment_extension",
        "attachment_hash",
    }
)
SCOPE_KINDS = ("all", "users", "groups", "departments")


@dataclass
class Row:
    field: str = "subject"
    op: str = ""
    header: str = ""
    value: str = ""
    negate: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.field or (not self.value.strip() and self.op != "exists")


@dataclass
class RowGroup:
    kind: str = "all"
    rows: list[Row] = dataclasses.field(default_factory=list)


@dataclass
class Builder:
    """The builder's state: the top-level group and its nested groups."""

    top: RowGroup = dataclasses.field(default_factory=RowGroup)
    groups: list[RowGroup] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)  # about the filter as a whole

    def padded(self) -> Builder:
        """A copy with blank rows to fill in (at least BLANK_ROWS at the top level)."""
        top = RowGroup(self.top.kind, [*self.top.rows])
        while len([r for r in top.rows if r.empty]) < 1 or len(top.rows) < BLANK_ROWS:
            top.rows.append(Row())
        groups = [RowGroup(g.kind, [*g.rows] or [Row()]) for g in self.groups]
        return Builder(top, groups, list(self.errors))

    def rows(self) -> list[tuple[int, Row]]:
        """Every row with its group number (0: the top level)."""
        numbered = [(0, r) for r in self.top.rows]
        for g, group in enumerate(self.groups, start=1):
            numbered.extend((g, r) for r in group.rows)
        return numbered


def field_choices() -> list[dict[str, Any]]:
    """The field select: options grouped Header / Body / Attachment, with their operators."""
    grouped: dict[str, list[dict[str, Any]]] = {k: [] for k in GROUP_LABELS}
    for spec in FIELD_SPECS:
        grouped[spec.group].append(
            {"name": spec.name, "ops": list(spec.ops), "description": spec.description}
        )
    return [{"label": GROUP_LABELS[k], "fields": v} for k, v in grouped.items()]


ALL_OPS = tuple(dict.fromkeys(op for spec in FIELD_SPECS for op in spec.ops))


def read_builder(form: FormData) -> Builder:
    """The builder as posted (rows with unknown group numbers go to the top level)."""
    top_kind = _kind(form.get("groups-0-kind"))
    groups: dict[int, RowGroup] = {}
    for g in range(1, MAX_GROUPS + 1):
        kind = form.get(f"groups-{g}-kind")
        if isinstance(kind, str):
            groups[g] = RowGroup(_kind(kind))
    top = RowGroup(top_kind)
    for n in range(MAX_ROWS):
        name = form.get(f"rows-{n}-field")
        if not isinstance(name, str):
            continue
        row = Row(
            field=name.strip() if name.strip() in FIELDS else "",
            op=_text(form, f"rows-{n}-op", 20),
            header=_text(form, f"rows-{n}-header", 200),
            value=_text(form, f"rows-{n}-value", 2000),
            negate=form.get(f"rows-{n}-not") == "1",
        )
        group = _text(form, f"rows-{n}-group", 4)
        target = groups.get(int(group)) if group.isdigit() else None
        (target or top).rows.append(row)
    return Builder(top, [groups[g] for g in sorted(groups)])


def has_builder_fields(form: FormData) -> bool:
    return any(key.startswith("rows-") for key in form)


def _kind(value: Any) -> str:
    return value if isinstance(value, str) and value in KINDS else "all"


def _text(form: FormData, name: str, limit: int) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


# Builder -> document -----------------------------------------------------------------------


def _leaf(row: Row) -> tuple[Any, str]:
    """The row's filter and the path suffix of the field inside it."""
    spec = FIELDS[row.field]
    op = row.op if row.op else spec.ops[0]
    value: Any
    if row.field == "header":
        inner: dict[str, Any] = {"name": row.header}
        inner[op] = True if op == "exists" else row.value
        value = inner
    elif row.field == "attachment_size":
        low, _, high = row.value.partition("..")
        value = {k: v.strip() for k, v in (("min", low), ("max", high)) if v.strip()}
        if not value:
            value = row.value  # let the parser say what a size looks like
    elif row.field == "has_attachments":
        answer = row.value.strip().lower()
        value = {"true": True, "yes": True, "false": False, "no": False}.get(answer, answer)
    else:
        parts = [v.strip() for v in row.value.split(",")] if row.field in LISTABLE else [row.value]
        parts = [p for p in parts if p]
        one: Any = parts[0] if len(parts) == 1 else parts
        value = {op: one}
    leaf = {row.field: value}
    return ({"not": leaf}, ".not") if row.negate else (leaf, "")


def build_document(
    builder: Builder,
    *,
    received_after: str = "",
    received_before: str = "",
    attached_emails: bool = True,
) -> tuple[dict[str, Any], list[tuple[str, Row]]]:
    """The query document, and (path prefix, row) for every row that went into it."""
    children: list[Any] = []
    placed: list[tuple[str, Row]] = []
    top = builder.top.kind
    for row in builder.top.rows:
        if row.empty:
            continue
        leaf, suffix = _leaf(row)
        placed.append((f"match.{top}[{len(children)}]{suffix}", row))
        children.append(leaf)
    for group in builder.groups:
        used = [r for r in group.rows if not r.empty]
        if not used:
            continue
        at = f"match.{top}[{len(children)}].{group.kind}"
        inner: list[Any] = []
        for row in used:
            leaf, suffix = _leaf(row)
            placed.append((f"{at}[{len(inner)}]{suffix}", row))
            inner.append(leaf)
        children.append({group.kind: inner})
    document: dict[str, Any] = {}
    if children:
        document["match"] = {top: children}
    received = {
        k: v for k, v in (("after", received_after), ("before", received_before)) if v.strip()
    }
    if received:
        document["received"] = received
    document["attached_emails"] = attached_emails
    return document, placed


def place_errors(
    errors: list[dict[str, str]], placed: list[tuple[str, Row]]
) -> dict[str, list[str]]:
    """Attach each query error to its row; the rest by top-level key ("received", "match", ...)."""
    rest: dict[str, list[str]] = {}
    for error in errors:
        path, message = error["path"], error["message"]
        owner = None
        for prefix, row in placed:
            inside = path == prefix or path.startswith((prefix + ".", prefix + "["))
            if inside and (owner is None or len(prefix) > len(owner[0])):
                owner = (prefix, row)
        if owner is not None:
            owner[1].errors.append(message)
            continue
        key = path.split(".", 1)[0].split("[", 1)[0] or "query"
        rest.setdefault(key, []).append(f"{path}: {message}" if key == "match" else message)
    return rest


# Document -> builder ------------------------------------------------------------------------


def _row(node: Any) -> Row | None:
    negate = False
    if isinstance(node, Mapping) and set(node) == {"not"}:
        negate, node = True, node["not"]
    if not isinstance(node, Mapping) or len(node) != 1:
        return None
    ((name, value),) = node.items()
    if name not in FIELDS:
        return None
    if name == "header":
        if not isinstance(value, Mapping):
            return None
        ops = [k for k in value if k != "name"]
        if len(ops) != 1:
            return None
        shown = "" if ops[0] == "exists" else _joined(value[ops[0]])
        return Row("header", ops[0], str(value.get("name", "")), shown, negate)
    if name == "attachment_size":
        if not isinstance(value, Mapping):
            return None
        text = f"{value.get('min', '')}..{value.get('max', '')}"
        return Row(name, "", "", text, negate)
    if name == "has_attachments":
        return Row(name, "", "", "true" if value is True else "false", negate)
    op = ""
    if isinstance(value, Mapping):
        if len(value) != 1:
            return None
        ((op, value),) = value.items()
    if isinstance(value, list) and name not in LISTABLE and len(value) > 1:
        return None
    return Row(name, str(op), "", _joined(value), negate)


def _joined(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def from_document(document: Mapping[str, Any]) -> Builder | None:
    """The builder showing `document`'s filters, or None when they do not fit it."""
    match = document.get("match")
    builder = Builder()
    if match is None:
        return builder
    if isinstance(match, list):
        match = {"all": match}
    if isinstance(match, Mapping) and len(match) == 1 and next(iter(match)) in KINDS:
        ((kind, children),) = match.items()
    else:
        kind, children = "all", [match]
    if not isinstance(children, list):
        return None
    builder.top.kind = str(kind)
    for child in children:
        if isinstance(child, Mapping) and len(child) == 1 and next(iter(child)) in KINDS:
            ((inner_kind, inner),) = child.items()
            if not isinstance(inner, list) or len(builder.groups) >= MAX_GROUPS:
                return None
            group = RowGroup(str(inner_kind))
            for node in inner:
                row = _row(node)
                if row is None:
                    return None
                group.rows.append(row)
            builder.groups.append(group)
            continue
        row = _row(child)
        if row is None:
            return None
        builder.top.rows.append(row)
    return builder


def form_day(value: Any, *, before: bool = False) -> str:
    """A `received` bound of a document as the date input shows it ("" when it is not one).

    `before` is exclusive in documents (midnight after the last day) and inclusive in the form.
    """
    if not isinstance(value, str) or not value.strip():
        return ""
    text = value.strip()
    if len(text) == 10:
        return text
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return ""
    day: date = moment.date()
    if before and moment.time() == datetime.min.time():
        day -= timedelta(days=1)
    return day.isoformat()


def scope_document(kind: str, values: str) -> dict[str, Any] | None:
    """The scope of the form: None for the configuration's default."""
    if kind not in SCOPE_KINDS:
        return None
    names = [v.strip() for v in values.replace("\n", ",").split(",") if v.strip()]
    return {"kind": kind, "values": [] if kind == "all" else names}
