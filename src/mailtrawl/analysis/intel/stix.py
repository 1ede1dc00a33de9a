"""STIX 2.x bundles: indicator patterns and observable objects (SCOs).

The pattern grammar is parsed by a small forward-only recursive-descent parser (bounded length
and nesting), which is all that is needed to pull out the equality comparisons a lookup index
can use: `[file:hashes.'SHA-256' = '...']`, `[url:value = '...' OR url:value = '...']`,
`[ipv4-addr:value ISSUBSET '198.51.100.0/24']`, `[domain-name:value IN ('a.example', ...)]`.
Comparisons that cannot be looked up (`!=`, `LIKE`, `MATCHES`, other object paths) are
skipped with a warning. Each comparison counts on its own, also inside an `AND`: a listed hash
or URL is worth flagging whatever else the pattern asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailtrawl.analysis.intel.collect import Collector
from mailtrawl.analysis.intel.values import IntelFormatError, IntelType, canonical_ip

MAX_PATTERN_LENGTH = 100_000
MAX_NESTING = 64

_HASH_NAMES = {
    "MD5": IntelType.MD5,
    "SHA1": IntelType.SHA1,
    "SHA256": IntelType.SHA256,
    "SHA512": IntelType.SHA512,
}
_VALUE_PATHS = {
    "url:value": IntelType.URL,
    "domain-name:value": IntelType.DOMAIN,
    "ipv4-addr:value": IntelType.IP,
    "ipv6-addr:value": IntelType.IP,
    "email-addr:value": IntelType.EMAIL,
    "email-message:from_ref.value": IntelType.EMAIL,
    "email-message:sender_ref.value": IntelType.EMAIL,
    "network-traffic:dst_ref.value": IntelType.IP,
}
_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "FOLLOWEDBY", "IN", "LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"}
    | {"EXISTS", "WITHIN", "SECONDS", "REPEATS", "TIMES", "START", "STOP"}
)
_WORD_OPERATORS = frozenset({"IN", "LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"})
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One `path operator value(s)` comparison of a pattern."""

    path: str  # canonical: "file:hashes.SHA256", "url:value"
    operator: str  # "=", "!=", "IN", "ISSUBSET", ...
    negated: bool
    values: tuple[str, ...]
    position: int  # offset of the comparison in the pattern


class PatternError(ValueError):
    def __init__(self, reason: str, position: int) -> None:
        self.reason = reason
        self.position = position
        super().__init__(f"pattern position {position}: {reason}")


def parse_pattern(pattern: str) -> list[Comparison]:
    """All comparisons of a STIX pattern, in order; PatternError if it is not valid."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters", 0)
    parser = _PatternParser(pattern)
    parser.observation_expression(0)
    parser.skip_space()
    if parser.i < len(pattern):
        raise PatternError("unexpected text after the pattern", parser.i)
    if not parser.comparisons:
        raise PatternError("the pattern has no comparison", 0)
    return parser.comparisons


class _PatternParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.comparisons: list[Comparison] = []

    # Lexical helpers -------------------------------------------------------------------------

    def skip_space(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self, literal: str) -> bool:
        self.skip_space()
        return self.text.startswith(literal, self.i)

    def expect(self, literal: str) -> None:
        if not self.peek(literal):
            raise PatternError(f"expected {literal!r}", self.i)
        self.i += len(literal)

    def peek_word(self) -> str:
        """The upper-cased word at the cursor (without consuming it), or ""."""
        self.skip_space()
        end = self.i
        while end < len(self.text) and self.text[end].isalpha():
            end += 1
        return self.text[self.i : end].upper()

    def take_word(self, word: str) -> bool:
        if self.peek_word() == word:
            self.i += len(word)
            return True
        return False

    # Grammar ---------------------------------------------------------------------------------

    def observation_expression(self, depth: int) -> None:
        if depth > MAX_NESTING:
            raise PatternError(f"nested deeper than {MAX_NESTING} levels", self.i)
        self.observation(depth)
        while self.peek_word() in ("AND", "OR", "FOLLOWEDBY"):
            self.take_word(self.peek_word())
            self.observation(depth)

    def observation(self, depth: int) -> None:
        if self.peek("["):
            self.i += 1
            self.comparison_expression(depth + 1)
            self.expect("]")
        elif self.peek("("):
            self.i += 1
            self.observation_expression(depth + 1)
            self.expect(")")
        else:
            raise PatternError("expected '[' or '(' to start an observation", self.i)
        self.qualifiers()

    def qualifiers(self) -> None:
        while True:
            word = self.peek_word()
            if word == "WITHIN":
                self.take_word(word)
                self.number()
                self.expect_word("SECONDS")
            elif word == "REPEATS":
                self.take_word(word)
                self.number()
                self.expect_word("TIMES")
            elif word == "START":
                self.take_word(word)
                self.literal()
                self.expect_word("STOP")
                self.literal()
            else:
                return

    def expect_word(self, word: str) -> None:
        if not self.take_word(word):
            raise PatternError(f"expected {word}", self.i)

    def comparison_expression(self, depth: int) -> None:
        if depth > MAX_NESTING:
            raise PatternError(f"nested deeper than {MAX_NESTING} levels", self.i)
        self.comparison_term(depth)
        while self.peek_word() in ("AND", "OR"):
            self.take_word(self.peek_word())
            self.comparison_term(depth)

    def comparison_term(self, depth: int) -> None:
        if self.peek("("):
            self.i += 1
            self.comparison_expression(depth + 1)
            self.expect(")")
            return
        if self.take_word("EXISTS"):
            self.object_path()
            return
        start = self.i
        path = self.object_path()
        negated = self.take_word("NOT")
        operator = self.operator()
        values = self.literal_list() if operator == "IN" else (self.literal(),)
        self.comparisons.append(Comparison(path, operator, negated, values, start))

    def operator(self) -> str:
        self.skip_space()
        for symbol in ("!=", "<=", ">=", "=", "<", ">"):
            if self.text.startswith(symbol, self.i):
                self.i += len(symbol)
                return symbol
        word = self.peek_word()
        if word in _WORD_OPERATORS:
            self.i += len(word)
            return word
        raise PatternError("expected a comparison operator", self.i)

    def object_path(self) -> str:
        self.skip_space()
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in _PATH_CHARS:
            self.i += 1
        object_type = self.text[start : self.i].lower()
        if not object_type or object_type.upper() in _KEYWORDS:
            raise PatternError("expected an object path such as url:value", start)
        if not self.text.startswith(":", self.i):
            raise PatternError("expected ':' after the object type", self.i)
        self.i += 1
        parts = [self.path_component()]
        while self.i < len(self.text) and self.text[self.i] in ".[":
            if self.text[self.i] == ".":
                self.i += 1
                parts.append(self.path_component())
            else:
                close = self.text.find("]", self.i)
                if close < 0:
                    raise PatternError("unclosed '[' in an object path", self.i)
                self.i = close + 1
        return f"{object_type}:{'.'.join(parts)}"

    def path_component(self) -> str:
        if self.text.startswith("'", self.i):
            return self.string_body()
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in _PATH_CHARS:
            self.i += 1
        if start == self.i:
            raise PatternError("expected a property name", self.i)
        return self.text[start : self.i]

    def string_body(self) -> str:
        """A quoted string at the cursor (the quote included), with \\' and \\\\ unescaped."""
        self.i += 1
        out: list[str] = []
        while self.i < len(self.text):
            char = self.text[self.i]
            if char == "\\" and self.i + 1 < len(self.text):
                out.append(self.text[self.i + 1])
                self.i += 2
            elif char == "'":
                self.i += 1
                return "".join(out)
            else:
                out.append(char)
                self.i += 1
        raise PatternError("unterminated string", self.i)

    def literal(self) -> str:
        self.skip_space()
        # Typed literals: t'timestamp', h'hex', b'base64'.
        if self.text[self.i : self.i + 2] in ("t'", "h'", "b'"):
            self.i += 1
            return self.string_body()
        if self.text.startswith("'", self.i):
            return self.string_body()
        start = self.i
        while self.i < len(self.text) and (
            self.text[self.i].isalnum() or self.text[self.i] in "+-."
        ):
            self.i += 1
        if start == self.i:
            raise PatternError("expected a value", self.i)
        return self.text[start : self.i]

    def number(self) -> None:
        self.skip_space()
        start = self.i
        while self.i < len(self.text) and (self.text[self.i].isdigit() or self.text[self.i] == "."):
            self.i += 1
        if start == self.i:
            raise PatternError("expected a number", self.i)

    def literal_list(self) -> tuple[str, ...]:
        self.expect("(")
        values = [self.literal()]
        while self.peek(","):
            self.i += 1
            values.append(self.literal())
        self.expect(")")
        return tuple(values)


def comparison_target(comparison: Comparison) -> IntelType | None:
    """The indicator type a comparison's path looks up, or None if the path is not supported."""
    object_type, _, path = comparison.path.partition(":")
    if path.lower().startswith("hashes.") and object_type in ("file", "artifact"):
        return _HASH_NAMES.get(path[7:].upper().replace("-", "").replace("_", ""))
    return _VALUE_PATHS.get(comparison.path)


# Bundles ---------------------------------------------------------------------------------------

_SCO_VALUE_TYPES = {
    "url": IntelType.URL,
    "domain-name": IntelType.DOMAIN,
    "ipv4-addr": IntelType.IP,
    "ipv6-addr": IntelType.IP,
    "email-addr": IntelType.EMAIL,
}


def is_stix(document: Any) -> bool:
    """Whether a decoded JSON document is a STIX bundle or a lone STIX object."""
    if isinstance(document, dict):
        kind = document.get("type")
        return kind in ("bundle", "indicator") or (
            isinstance(kind, str) and "spec_version" in document
        )
    return False


def parse_stix(document: Any, collector: Collector, *, now: datetime | None = None) -> None:
    """Collect indicators from a bundle (or a single object): indicator patterns and SCOs."""
    if not isinstance(document, dict):
        raise IntelFormatError("a STIX document must be a JSON object", "document")
    if document.get("type") == "bundle":
        objects = document.get("objects", [])
        if not isinstance(objects, list):
            raise IntelFormatError("'objects' must be a list", "bundle")
    else:
        objects = [document]
    now = now or datetime.now(UTC)
    identities = {
        obj["id"]: str(obj.get("name", ""))
        for obj in objects
        if isinstance(obj, dict)
        and obj.get("type") == "identity"
        and isinstance(obj.get("id"), str)
    }
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise IntelFormatError("expected a JSON object", f"objects[{index}]")
        kind = obj.get("type")
        position = f"objects[{index}] ({_label(obj)})"
        source = identities.get(str(obj.get("created_by_ref", "")), "")
        if kind == "indicator":
            _indicator(obj, position, source, collector, now)
        elif kind == "observed-data" and isinstance(obj.get("objects"), dict):
            # STIX 2.0 embeds its observables; 2.1 lists them at the top level instead.
            for key, sco in obj["objects"].items():
                if isinstance(sco, dict):
                    _observable(sco, f"{position} objects[{key!r}]", source, collector)
        elif kind in _SCO_VALUE_TYPES or kind == "file":
            _observable(obj, position, source, collector)


def _label(obj: Mapping[str, Any]) -> str:
    ident = obj.get("id")
    return str(ident)[:100] if isinstance(ident, str) else str(obj.get("type", "?"))[:40]


def _indicator(
    obj: Mapping[str, Any], position: str, source: str, collector: Collector, now: datetime
) -> None:
    if obj.get("revoked") is True:
        collector.warn(f"{position}: revoked, skipped")
        return
    valid_until = _timestamp(obj.get("valid_until"))
    if valid_until is not None and valid_until < now:
        collector.warn(f"{position}: expired on {valid_until:%Y-%m-%d}, skipped")
        return
    pattern_type = obj.get("pattern_type", "stix")
    if pattern_type != "stix":
        collector.warn(f"{position}: pattern_type {str(pattern_type)[:40]!r} is not supported")
        return
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        collector.reject("the indicator has no pattern", position)
        return
    try:
        comparisons = parse_pattern(pattern)
    except PatternError as exc:
        collector.reject(f"invalid pattern at position {exc.position}: {exc.reason}", position)
        return
    description = str(obj.get("name") or obj.get("description") or "")
    for comparison in comparisons:
        where = f"{position} pattern position {comparison.position}"
        for kind, value in _lookups(comparison, where, collector):
            collector.add(kind, value, where, description=description, source=source)


def _lookups(
    comparison: Comparison, where: str, collector: Collector
) -> Iterator[tuple[IntelType, str]]:
    target = comparison_target(comparison)
    if target is None:
        collector.warn(f"{where}: {comparison.path} cannot be looked up, skipped")
        return
    usable = comparison.operator in ("=", "IN") or (
        comparison.operator == "ISSUBSET" and target is IntelType.IP
    )
    if comparison.negated or not usable:
        operator = f"NOT {comparison.operator}" if comparison.negated else comparison.operator
        collector.warn(f"{where}: operator {operator} cannot be looked up, skipped")
        return
    for value in comparison.values:
        if target is IntelType.IP and comparison.path.startswith("network-traffic:"):
            # dst_ref may name a domain-name object rather than an address.
            looks_like_ip = canonical_ip(value) is not None or "/" in value
            yield (target if looks_like_ip else IntelType.DOMAIN), value
        else:
            yield target, value


def _observable(obj: Mapping[str, Any], position: str, source: str, collector: Collector) -> None:
    kind = obj.get("type")
    if kind == "file":
        hashes = obj.get("hashes")
        if not isinstance(hashes, dict):
            collector.warn(f"{position}: a file without hashes, skipped")
            return
        description = str(obj.get("name", ""))
        for name, digest in hashes.items():
            target = _HASH_NAMES.get(str(name).upper().replace("-", "").replace("_", ""))
            if target is None or not isinstance(digest, str):
                collector.warn(f"{position}: hash {str(name)[:40]!r} is not supported, skipped")
                continue
            collector.add(target, digest, position, description=description, source=source)
        return
    value = obj.get("value")
    if not isinstance(value, str):
        collector.reject(f"a {kind} object without a string value", position)
        return
    collector.add(_SCO_VALUE_TYPES[str(kind)], value, position, source=source)


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
