"""The query document (JSON for the API, YAML "hunt files" for the CLI) → a validated `Hunt`.

A query::

    received: {after: 2025-05-01, before: 2025-06-01}   # or relative: {after: 7d}
    folders: [inbox, junkemail]                          # default: the whole mailbox
    attached_emails: true                                # also look inside attached emails
    match:
      all:
        - from_domain: evil.example
        - any:
            - subject: {contains: invoice}
            - url_domain: [evil.example, xn--mcrosoft-n2a.com]
        - not: {from: ceo@contoso.com}
        - attachment_size: {min: 10KB, max: 5MB}
        - header: {name: X-Mailer, contains: PHPMailer}

A filter is `{field: value}`, `{field: [v1, v2]}` (any of them) or `{field: {op: value}}`;
several fields in one mapping, or a list, mean all of them. Errors name the path of the
offending field (`match.all[1].any[0].subject`) and say what is wrong.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml

from mailtrawl.core.criteria import (
    FIELD_SPECS,
    FIELDS,
    WELL_KNOWN_FOLDERS,
    Group,
    Hunt,
    Leaf,
    Node,
    Not,
)
from mailtrawl.matching.attachments import compile_glob, hash_kind
from mailtrawl.matching.received import parse_ip_spec
from mailtrawl.matching.regex import RegexError, compile_regex
from mailtrawl.matching.urls import normalise_domain, normalise_url

MAX_VALUES = 10_000  # alternatives in one filter
MAX_LEAVES = 2_000
MAX_DEPTH = 16
MAX_TEXT = 2_000
_TOP_KEYS = ("match", "received", "folders", "attached_emails")
_GROUP_KEYS = ("all", "any", "not")
_RELATIVE = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class QueryError(ValueError):
    """The query document is invalid; `errors` says where and why."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    def as_list(self) -> list[dict[str, str]]:
        return [{"path": e.path, "message": e.message} for e in self.errors]


@dataclass
class _Parser:
    now: datetime
    errors: list[FieldError] = field(default_factory=list)
    leaf_count: int = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    # The filter tree ---------------------------------------------------------------------

    def node(self, value: Any, path: str, depth: int = 0) -> Node | None:
        if depth > MAX_DEPTH:
            self.fail(path, f"groups are nested more than {MAX_DEPTH} deep")
            return None
        if isinstance(value, list):
            return self._group("all", value, path, depth)
        if not isinstance(value, Mapping) or not value:
            self.fail(path, "expected a filter such as {subject: invoice}, or all/any/not")
            return None
        if len(value) > 1:
            # Several keys in one mapping: all of them.
            children = [self.node({k: v}, path, depth + 1) for k, v in value.items()]
            kept = tuple(c for c in children if c is not None)
            return Group("all", kept, path) if len(kept) == len(children) else None
        ((key, inner),) = value.items()
        key = str(key)
        if key in ("all", "any"):
            if not isinstance(inner, list) or not inner:
                self.fail(_join(path, key), f"'{key}' needs a non-empty list of filters")
                return None
            return self._group(key, inner, _join(path, key), depth)
        if key == "not":
            child = self.node(inner, _join(path, "not"), depth + 1)
            return None if child is None else Not(child, _join(path, "not"))
        return self.leaf(key, inner, _join(path, key))

    def _group(self, kind: str, items: list[Any], path: str, depth: int) -> Node | None:
        if not items:
            self.fail(path, "an empty list matches nothing; remove it or add filters")
            return None
        children = [self.node(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(items)]
        if any(c is None for c in children):
            return None
        kept = tuple(c for c in children if c is not None)
        return kept[0] if len(kept) == 1 else Group(kind, kept, path)

    def leaf(self, name: str, value: Any, path: str) -> Leaf | None:
        spec = FIELDS.get(name)
        if spec is None:
            known = [*FIELDS, *_GROUP_KEYS]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.fail(path, f"unknown filter '{name}'{hint}; known: {', '.join(known)}")
            return None
        self.leaf_count += 1
        if self.leaf_count > MAX_LEAVES:
            if self.leaf_count == MAX_LEAVES + 1:
                self.fail(path, f"a query holds at most {MAX_LEAVES} filters")
            return None
        if name == "header":
            return self._header(value, path)
        if name == "attachment_size":
            return self._size(value, path)
        op = spec.ops[0]
        if isinstance(value, Mapping):
            if len(value) != 1:
                self.fail(path, f"give one operator: {' or '.join(spec.ops)}")
                return None
            ((op, value),) = value.items()
            op = str(op)
            if op not in spec.ops:
                self.fail(_join(path, op), f"'{name}' takes {' or '.join(spec.ops)}, not '{op}'")
                return None
        raw = value if isinstance(value, list) else [value]
        if not raw:
            self.fail(path, "give at least one value")
            return None
        if len(raw) > MAX_VALUES:
            self.fail(path, f"at most {MAX_VALUES} values in one filter")
            return None
        values: list[str] = []
        for i, item in enumerate(raw):
            where = f"{path}[{i}]" if isinstance(value, list) else path
            cleaned = self.value(name, item, where)
            if cleaned is not None:
                values.append(cleaned)
        if len(values) != len(raw):
            return None
        return Leaf(name, op, tuple(dict.fromkeys(values)), path)

    def value(self, name: str, item: Any, path: str) -> str | None:
        if name == "has_attachments":
            if not isinstance(item, bool):
                self.fail(path, "expected true or false")
                return None
            return "true" if item else "false"
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            self.fail(path, "expected a text value")
            return None
        text = str(item).strip()
        if not text:
            self.fail(path, "the value is empty")
            return None
        if len(text) > MAX_TEXT and name != "url":
            self.fail(path, f"the value is longer than {MAX_TEXT} characters")
            return None
        try:
            return _normalise(name, text)
        except RegexError as exc:
            self.fail(path, str(exc))
        except ValueError as exc:
            self.fail(path, str(exc))
        return None

    def _header(self, value: Any, path: str) -> Leaf | None:
        if not isinstance(value, Mapping) or "name" not in value:
            self.fail(
                path,
                "expected {name: Header-Name, contains|equals: value} or {name: ..., exists: true}",
            )
            return None
        header = str(value["name"]).strip()
        if not re.fullmatch(r"[!-9;-~]{1,200}", header):
            self.fail(_join(path, "name"), "not a valid header name")
            return None
        ops = [k for k in value if k != "name"]
        if len(ops) != 1 or ops[0] not in FIELDS["header"].ops:
            self.fail(path, "give one of contains, equals or exists besides the name")
            return None
        op = str(ops[0])
        if op == "exists":
            if value[op] is not True:
                self.fail(_join(path, op), "use exists: true (wrap it in not: for absence)")
                return None
            return Leaf("header", "exists", (), path, header_name=header.lower())
        raw = value[op] if isinstance(value[op], list) else [value[op]]
        values = [self.value("header", v, _join(path, op)) for v in raw]
        if any(v is None for v in values) or not values:
            return None
        return Leaf("header", op, tuple(v for v in values if v), path, header_name=header.lower())

    def _size(self, value: Any, path: str) -> Leaf | None:
        if not isinstance(value, Mapping) or not set(value) or set(value) - {"min", "max"}:
            self.fail(path, "expected {min: 10KB, max: 5MB} (either may be left out)")
            return None
        bounds: dict[str, int | None] = {"min": None, "max": None}
        for key in ("min", "max"):
            if key in value:
                bounds[key] = parse_size(value[key])
                if bounds[key] is None:
                    self.fail(_join(path, key), "expected a size such as 2048, 10KB or 5MB")
                    return None
        low, high = bounds["min"], bounds["max"]
        if low is not None and high is not None and high < low:
            self.fail(path, "max is smaller than min")
            return None
        return Leaf("attachment_size", "between", (), path, size_min=low, size_max=high)

    # The rest of the document ------------------------------------------------------------

    def instant(self, value: Any, path: str, *, end_of_day: bool = False) -> datetime | None:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, date):
            start = datetime(value.year, value.month, value.day, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        if isinstance(value, str):
            relative = _RELATIVE.match(value)
            if relative:
                amount, unit = int(relative.group(1)), relative.group(2).lower()
                minutes = {"m": 1, "h": 60, "d": 1440, "w": 10080}[unit]
                return self.now - timedelta(minutes=amount * minutes)
            text = value.strip()
            try:
                if len(text) == 10:
                    return self.instant(date.fromisoformat(text), path, end_of_day=end_of_day)
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        self.fail(
            path, "expected a date (2025-05-01), a time (2025-05-01T08:00:00Z) or an age (7d, 12h)"
        )
        return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_size(value: Any) -> int | None:
    """Bytes from 2048, "10KB", "5 MB", "1.5MiB"; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    match = _SIZE.match(str(value))
    if not match:
        return None
    unit = (match.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    power = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3}[unit[:1]]
    return int(float(match.group(1)) * base**power)


def _address(text: str) -> str:
    local, at, domain = text.rpartition("@")
    if not at or not domain or any(c.isspace() for c in text):
        raise ValueError(f"'{text}' is not an email address (or '@domain')")
    return f"{local.lower()}@{normalise_domain(domain)}"


def _normalise(name: str, text: str) -> str:
    """The canonical form of one value, or ValueError saying why it is not valid."""
    if name in ("from", "to", "cc", "bcc", "reply_to"):
        return _address(text)
    if name in ("from_domain", "url_domain"):
        domain = normalise_domain(text.lstrip("@").lstrip("*."))
        if "." not in domain or "/" in domain or " " in domain:
            raise ValueError(f"'{text}' is not a domain name")
        return domain
    if name == "sender_ip":
        return str(parse_ip_spec(text))
    if name == "internet_message_id":
        return text if text.startswith("<") else f"<{text}>"
    if name == "url":
        normalised = normalise_url(text if "://" in text else f"https://{text}")
        if normalised is None:
            raise ValueError(f"'{text}' is not a URL")
        return normalised
    if name == "body_regex":
        compile_regex(text)
        return text
    if name in ("attachment_name", "attachment_type"):
        compile_glob(text)
        return text.lower()
    if name == "attachment_extension":
        return text.lstrip(".").lower()
    if name == "attachment_hash":
        if hash_kind(text) is None:
            raise ValueError("expected an MD5, SHA-1, SHA-256 or SHA-512 in hexadecimal")
        return text.lower()
    return text


def parse_query(document: Any, *, now: datetime | None = None) -> Hunt:
    """Validate a query document into a `Hunt`, or raise `QueryError` listing every problem."""
    parser = _Parser(now or datetime.now(UTC))
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise QueryError([FieldError("", "a query is a mapping with match, received, folders")])
    for key in document:
        if key not in _TOP_KEYS:
            close = difflib.get_close_matches(str(key), _TOP_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            parser.fail(str(key), f"unknown key{hint}; a query has {', '.join(_TOP_KEYS)}")
    match = document.get("match")
    node = parser.node(match, "match") if match is not None else None
    after = before = None
    received = document.get("received")
    if received is not None:
        if not isinstance(received, Mapping) or set(received) - {"after", "before"}:
            parser.fail("received", "expected {after: ..., before: ...}")
        else:
            if received.get("after") is not None:
                after = parser.instant(received["after"], "received.after")
            if received.get("before") is not None:
                before = parser.instant(received["before"], "received.before", end_of_day=True)
            if after and before and before <= after:
                parser.fail("received", "'before' must be later than 'after'")
    folders: list[str] = []
    raw_folders = document.get("folders")
    if raw_folders is not None:
        if not isinstance(raw_folders, list) or not all(isinstance(f, str) for f in raw_folders):
            parser.fail("folders", "expected a list of folder names")
        else:
            for i, name in enumerate(raw_folders):
                folder = name.strip().lower().replace(" ", "")
                if folder not in WELL_KNOWN_FOLDERS:
                    parser.fail(
                        f"folders[{i}]",
                        f"unknown folder '{name}'; use {', '.join(WELL_KNOWN_FOLDERS)}",
                    )
                folders.append(folder)
    attached = document.get("attached_emails", True)
    if not isinstance(attached, bool):
        parser.fail("attached_emails", "expected true or false")
    if parser.errors:
        raise QueryError(parser.errors)
    return Hunt(
        match=node,
        received_after=after,
        received_before=before,
        folders=tuple(dict.fromkeys(folders)),
        attached_emails=bool(attached),
    )


def hunt_to_document(hunt: Hunt) -> dict[str, Any]:
    """The canonical query document of a `Hunt` (what is stored and shown)."""
    document: dict[str, Any] = {}
    if hunt.match is not None:
        document["match"] = _node_document(hunt.match)
    received = {}
    if hunt.received_after:
        received["after"] = hunt.received_after.isoformat().replace("+00:00", "Z")
    if hunt.received_before:
        received["before"] = hunt.received_before.isoformat().replace("+00:00", "Z")
    if received:
        document["received"] = received
    if hunt.folders:
        document["folders"] = list(hunt.folders)
    document["attached_emails"] = hunt.attached_emails
    return document


def _node_document(node: Node) -> Any:
    if isinstance(node, Group):
        return {node.kind: [_node_document(c) for c in node.children]}
    if isinstance(node, Not):
        return {"not": _node_document(node.child)}
    if node.field == "attachment_size":
        bounds = {"min": node.size_min, "max": node.size_max}
        return {"attachment_size": {k: v for k, v in bounds.items() if v is not None}}
    if node.field == "header":
        inner: dict[str, Any] = {"name": node.header_name}
        inner[node.op] = True if node.op == "exists" else _one_or_list(node.values)
        return {"header": inner}
    if node.field == "has_attachments":
        return {"has_attachments": node.values[0] == "true"}
    return {node.field: {node.op: _one_or_list(node.values)}}


def _one_or_list(values: tuple[str, ...]) -> Any:
    return values[0] if len(values) == 1 else list(values)


# Hunt files (YAML) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HuntFile:
    """A YAML hunt file: a query plus, optionally, its name, configuration and scope."""

    query: dict[str, Any]
    name: str | None = None
    description: str | None = None
    configuration: str | None = None
    scope: dict[str, Any] | None = None


_HUNT_FILE_KEYS = ("name", "description", "configuration", "scope")


def load_hunt_file(text: str) -> HuntFile:
    """Read a hunt file; YAML errors and unknown keys become `QueryError`s with a position."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise QueryError([FieldError(where, f"not valid YAML: {problem}")]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise QueryError([FieldError("", "a hunt file is a mapping (name, scope, match, ...)")])
    query = {k: v for k, v in document.items() if k not in _HUNT_FILE_KEYS}
    scope = _hunt_scope(document.get("scope"))
    for key in ("name", "description", "configuration"):
        if document.get(key) is not None and not isinstance(document[key], str):
            raise QueryError([FieldError(key, "expected text")])
    return HuntFile(
        query=query,
        name=document.get("name"),
        description=document.get("description"),
        configuration=document.get("configuration"),
        scope=scope,
    )


_SCOPE_KINDS = ("users", "groups", "departments")


def _hunt_scope(value: Any) -> dict[str, Any] | None:
    """`{groups: [a, b]}` (or `{kind: groups, values: [...]}`, or `all`) → a scope document."""
    if value is None:
        return None
    if value == "all" or value == {"kind": "all"}:
        return {"kind": "all", "values": []}
    if isinstance(value, dict) and set(value) <= {"kind", "values"} and "kind" in value:
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((kind, names),) = value.items()
        if kind in _SCOPE_KINDS:
            listed = names if isinstance(names, list) else [names]
            return {"kind": kind, "values": [str(n) for n in listed]}
    raise QueryError(
        [
            FieldError(
                "scope", "expected all, {users: [...]}, {groups: [...]} or {departments: [...]}"
            )
        ]
    )


# The JSON Schema (for editors and the API documentation) --------------------------------


def query_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) for query documents."""
    text_values = {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        ]
    }
    leaves: list[dict[str, Any]] = []
    for spec in FIELD_SPECS:
        if spec.name == "attachment_size":
            size = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]}
            value: dict[str, Any] = {
                "type": "object",
                "properties": {"min": size, "max": size},
                "additionalProperties": False,
                "minProperties": 1,
            }
        elif spec.name == "header":
            value = {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "contains": text_values,
                    "equals": text_values,
                    "exists": {"const": True},
                },
                "additionalProperties": False,
            }
        elif spec.name == "has_attachments":
            value = {"type": "boolean"}
        else:
            value = {
                "oneOf": [
                    text_values["oneOf"][0],
                    text_values["oneOf"][1],
                    {
                        "type": "object",
                        "properties": {op: text_values for op in spec.ops},
                        "additionalProperties": False,
                        "minProperties": 1,
                        "maxProperties": 1,
                    },
                ]
            }
        leaves.append(
            {
                "type": "object",
                "properties": {spec.name: {**value, "description": spec.description}},
                "required": [spec.name],
                "additionalProperties": False,
            }
        )
    node_ref = {"$ref": "#/$defs/node"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mailtrawl query",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "match": {"oneOf": [node_ref, {"type": "array", "items": node_ref}]},
            "received": {
                "type": "object",
                "properties": {"after": {"type": "string"}, "before": {"type": "string"}},
                "additionalProperties": False,
            },
            "folders": {"type": "array", "items": {"enum": list(WELL_KNOWN_FOLDERS)}},
            "attached_emails": {"type": "boolean", "default": True},
        },
        "$defs": {
            "node": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"all": {"type": "array", "items": node_ref, "minItems": 1}},
                        "required": ["all"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {"any": {"type": "array", "items": node_ref, "minItems": 1}},
                        "required": ["any"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {"not": node_ref},
                        "required": ["not"],
                        "additionalProperties": False,
                    },
                    *leaves,
                ]
            }
        },
    }
