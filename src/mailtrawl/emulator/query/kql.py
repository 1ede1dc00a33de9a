"""The `$search` KQL subset for messages, matched the way Exchange's content index matches.

Syntax
------
Graph reads `$search` with its OData parser first. The documented form is one double-quoted
string holding KQL: `$search="from:alice subject:invoice"`; inside it a quote is written `\\"`
and a backslash `\\\\`. Several quoted strings joined by OData `AND`/`OR`/`NOT` or by spaces are
also accepted (each string is one KQL group). Outside quotes OData allows only letters, spaces
and parentheses, so an unquoted `$search=from:alice` fails the way Graph fails it:
`RequestBroker--ParseUri` "Syntax error: character ':' is not valid at position 4 in
'from:alice'." (jasonjoh/node-outlook #12; msgraph-sdk-powershell #402 shows the same message
for `Backup Config 0`, and that unquoted letters-only `Backup Config` is accepted, so it is here
too).

Inside the quotes: `prop:value`, `prop:"a phrase"`, `prop:(a OR b)`, bare terms and
`"phrases"`, `AND`, `OR`, `NOT` (upper case only; lower-case `and` is a term), a leading `-` for
NOT, parentheses, and implicit AND between adjacent items. Precedence, loosest first: `OR`,
`AND` (explicit or implicit), `NOT`. Relational forms `received>=2024-01-01`, `<`, `<=`, `>`,
`=` and `<>` (not equal) are accepted after any property. Nesting deeper than `MAX_DEPTH`
answers a `QueryError`, never a `RecursionError`. Malformed KQL inside the quotes (unbalanced
parentheses, a dangling operator, an empty query) answers 400 `BadRequest` with a position in
the raw `$search` value; Graph's own code and text for these were not found, so that text is a
guess.

Properties
----------
`from`, `to`, `cc`, `bcc`, `participants` (from+to+cc+bcc), `recipients` (to+cc+bcc),
`subject`, `body`, `attachment` (file names), `received`, `sent`, `hasAttachments` /
`hasAttachment` (`true`/`false`), `importance` (`low`, `normal` or `medium`, `high`), `kind`
(`email` matches every message, other kinds none) and `size` (bytes; approximated from the
MIME, or body plus attachments). Property names are case-insensitive. An unknown property
(`foo:bar`) is not an error: like KQL, the whole `foo:bar` becomes a bare term.
A bare term searches `from` (name and address), `subject` and `body` (search-query-parameter.md).

Matching semantics
------------------
Exchange's index is token based, not substring based:

* Text is NFKC-normalised and case-folded (diacritics are kept: `cafe` does not match `café`),
  then split into tokens of Unicode letters and digits; everything else separates tokens.
  HTML bodies are reduced to their visible text first (the same text as `bodies.html_to_text`:
  inline tags join, block tags separate, script/style/head are dropped).
* A term matches when some token starts with it (prefix match): `invoic` matches `Invoices`,
  `voice` does not. A trailing `*` is allowed and changes nothing.
* A term or phrase that tokenizes into several tokens (`"wire transfer"`, `e-mail`,
  `foo:bar`) matches consecutive tokens, each but the last in full, the last as a prefix.
* Addresses (`from`, `to`, ...): `alice@contoso.com` must equal the address (case-insensitive),
  `@contoso.com` matches the address ending; a value without `@` matches a prefix of the local
  part (`alice`), the domain or a parent domain (`contoso.com`), or the display name's tokens as
  above (`Alice`, `"Alice Smith"`). `from:smith` does not match `alice.smith@...` unless the
  display name has `Smith`: only the local part's start is indexed here (a guess).
* `attachment:` matches the file name's tokens (`invoice`, `invoice.pdf`, `api-catalog`) or the
  whole name.
* Dates are days in UTC (Exchange uses the mailbox's time zone): `received:2024-01-15`,
  `received:01/15/2024` (US month/day/year), `received:2024/01/15`, `received>=2024-01-01`
  (from that day), `received>2024-01-01` (after that day), `received<2024-02-01`,
  `received<=2024-01-31`, `received:2024-01-01..2024-01-31` (both days included). A value that
  is not a date matches nothing, as do relational operators on text properties.

Speed: a compiled predicate only looks at the fields its terms name, in order of cost (body
last), caches each field's normalised text for the message it is evaluating, and keeps the
normalised text of recent bodies in an LRU cache. Term tests are C-speed substring and regex
searches, not token lists.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal, TypeAlias

from mailtrawl.emulator.query.odata import QueryError
from mailtrawl.emulator.state import EmailAddress, Message

__all__ = [
    "MAX_DEPTH",
    "AllOf",
    "AnyOf",
    "Negation",
    "SearchExpr",
    "Term",
    "compile_search",
    "normalize",
    "parse_search",
    "tokenize",
]

MAX_DEPTH = 100
BODY_CACHE_SIZE = 4096

# --------------------------------------------------------------------------- syntax tree

Op = Literal[":", "=", "<", ">", "<=", ">=", "<>"]


@dataclass(frozen=True, slots=True)
class Term:
    """A bare term (`prop is None`) or a property restriction, with its value as written."""

    value: str
    prop: str | None = None
    op: Op = ":"
    phrase: bool = False


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[SearchExpr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[SearchExpr, ...]


@dataclass(frozen=True, slots=True)
class Negation:
    item: SearchExpr


SearchExpr: TypeAlias = Term | AllOf | AnyOf | Negation

# Canonical property names; aliases map to them.
_PROPERTIES = {
    "from": "from",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "participants": "participants",
    "recipients": "recipients",
    "subject": "subject",
    "body": "body",
    "attachment": "attachment",
    "attachments": "attachment",
    "received": "received",
    "sent": "sent",
    "hasattachments": "hasattachments",
    "hasattachment": "hasattachments",
    "importance": "importance",
    "kind": "kind",
    "size": "size",
}

# --------------------------------------------------------------------------- errors


def _odata_error(message: str) -> QueryError:
    # Graph's URI parser rejects these before Exchange sees them (jasonjoh/node-outlook #12).
    return QueryError(400, "RequestBroker--ParseUri", message)


def _kql_error(reason: str, pos: int, raw: str) -> QueryError:
    return QueryError(
        400, "BadRequest", f"Syntax error in $search at position {pos}: {reason} in '{raw}'."
    )


# --------------------------------------------------------------------------- lexer

TokKind = Literal["lparen", "rparen", "and", "or", "not", "word", "phrase", "prop", "sub", "end"]


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: TokKind
    text: str
    pos: int  # index in the raw $search value
    op: Op = ":"
    sub: SearchExpr | None = None


_PROP_RE = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(<=|>=|<>|:|<|>|=)")
_WORD_END = frozenset(' \t\r\n\f\v()"')
_KEYWORDS: dict[str, TokKind] = {"AND": "and", "OR": "or", "NOT": "not"}


def _lex_kql(text: str, offsets: Sequence[int], raw: str) -> list[_Tok]:
    """Tokens of the KQL inside one quoted string; `offsets` maps indexes back to `raw`."""
    tokens: list[_Tok] = []
    i, n = 0, len(text)

    def word_at(j: int) -> int:
        while j < n and text[j] not in _WORD_END:
            j += 1
        return j

    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            tokens.append(_Tok("lparen", ch, offsets[i]))
            i += 1
        elif ch == ")":
            tokens.append(_Tok("rparen", ch, offsets[i]))
            i += 1
        elif ch == '"':
            close = text.find('"', i + 1)
            if close < 0:
                raise _kql_error("unterminated phrase", offsets[i], raw)
            tokens.append(_Tok("phrase", text[i + 1 : close], offsets[i]))
            i = close + 1
        elif ch in "-+" and i + 1 < n and text[i + 1] not in _WORD_END:
            # KQL's exclusion prefix; "+" (required) is what implicit AND already means.
            if ch == "-":
                tokens.append(_Tok("not", ch, offsets[i]))
            i += 1
        else:
            m = _PROP_RE.match(text, i)
            after = m.end() if m is not None else i
            # KQL: a restriction has no space after the operator, else it is free text.
            if m is not None and after < n and text[after] not in " \t\r\n\f\v)":
                op: Op = m.group(2)  # type: ignore[assignment]
                tokens.append(_Tok("prop", m.group(1), offsets[i], op=op))
                i = after
                if text[i] in '"(':
                    continue  # a phrase or a group: lexed as usual
                end = word_at(i)
                tokens.append(_Tok("word", text[i:end], offsets[i]))
                i = end
                continue
            end = word_at(after if m is not None else i)
            word = text[i:end]
            tokens.append(_Tok(_KEYWORDS.get(word, "word"), word, offsets[i]))
            i = end
    # _read_quoted also records the closing quote, so offsets[n] exists.
    tokens.append(_Tok("end", "", offsets[n]))
    return tokens


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, tokens: list[_Tok], raw: str, depth: int = 0) -> None:
        self.tokens = tokens
        self.raw = raw
        self.i = 0
        self.depth = depth

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def _advance(self) -> _Tok:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def _error(self, tok: _Tok) -> QueryError:
        if tok.kind == "end":
            return _kql_error("unexpected end of query", tok.pos, self.raw)
        return _kql_error(f"unexpected '{tok.text}'", tok.pos, self.raw)

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _kql_error(f"nesting deeper than {MAX_DEPTH}", self.tok.pos, self.raw)

    def parse(self) -> SearchExpr:
        if self.tok.kind == "end":
            raise _kql_error("empty query", self.tok.pos, self.raw)
        expr = self._or(None)
        if not self._at_end():
            raise self._error(self.tok)
        return expr

    def _at_end(self) -> bool:
        return self.tok.kind == "end"

    def _or(self, scope: str | None) -> SearchExpr:
        items = [self._and(scope)]
        while self.tok.kind == "or":
            self._advance()
            items.append(self._and(scope))
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def _starts_unary(self) -> bool:
        return self.tok.kind in ("lparen", "not", "word", "phrase", "prop", "sub")

    def _and(self, scope: str | None) -> SearchExpr:
        items = [self._unary(scope)]
        while True:
            if self.tok.kind == "and":
                self._advance()
            elif not self._starts_unary():
                break
            items.append(self._unary(scope))
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def _unary(self, scope: str | None) -> SearchExpr:
        if self.tok.kind == "not":
            self._advance()
            self._enter()
            item = self._unary(scope)
            self.depth -= 1
            return Negation(item)
        return self._primary(scope)

    def _group(self, scope: str | None) -> SearchExpr:
        self._advance()  # "("
        self._enter()
        inner = self._or(scope)
        self.depth -= 1
        if self.tok.kind != "rparen":
            if self.tok.kind == "end":
                raise _kql_error("missing ')'", self.tok.pos, self.raw)
            raise self._error(self.tok)
        self._advance()
        return inner

    def _primary(self, scope: str | None) -> SearchExpr:
        tok = self.tok
        if tok.kind == "lparen":
            return self._group(scope)
        if tok.kind == "sub":
            self._advance()
            assert tok.sub is not None
            return tok.sub
        if tok.kind == "word":
            self._advance()
            return Term(tok.text, scope)
        if tok.kind == "phrase":
            self._advance()
            return Term(tok.text, scope, phrase=True)
        if tok.kind == "prop":
            return self._restriction()
        raise self._error(tok)

    def _restriction(self) -> SearchExpr:
        prop_tok = self._advance()
        name = _PROPERTIES.get(prop_tok.text.lower())
        value = self.tok
        if value.kind == "lparen" and prop_tok.op == ":":
            if name is None:  # unknown property: the name is a plain term, the group stays
                return AllOf((Term(prop_tok.text), self._group(None)))
            return self._group(name)
        if value.kind not in ("word", "phrase"):
            raise _kql_error(
                f"missing value after '{prop_tok.text}{prop_tok.op}'", value.pos, self.raw
            )
        self._advance()
        if name is None:
            return Term(f"{prop_tok.text}{prop_tok.op}{value.text}")
        return Term(value.text, name, prop_tok.op, phrase=value.kind == "phrase")


def _read_quoted(raw: str, start: int) -> tuple[str, list[int], int]:
    """The unescaped content of the OData string at `start`, its raw offsets, and its end."""
    chars: list[str] = []
    offsets: list[int] = []
    i = start + 1
    n = len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\" and i + 1 < n and raw[i + 1] in '"\\':
            chars.append(raw[i + 1])
            offsets.append(i)
            i += 2
            continue
        if ch == '"':
            offsets.append(i)  # the closing quote: where "end of query" points
            return "".join(chars), offsets, i + 1
        chars.append(ch)
        offsets.append(i)
        i += 1
    raise _odata_error(f"There is an unterminated string literal at position {n} in '{raw}'.")


def parse_search(value: str) -> SearchExpr:
    """Parse a raw (URL-decoded) `$search` value into a KQL expression tree."""
    if not value.strip():
        raise _odata_error(f"Expression expected at position 0 in '{value}'.")
    tokens: list[_Tok] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch.isspace():
            i += 1
        elif ch == '"':
            content, offsets, end = _read_quoted(value, i)
            sub = _Parser(_lex_kql(content, offsets, value), value).parse()
            tokens.append(_Tok("sub", content, i, sub=sub))
            i = end
        elif ch == "(":
            tokens.append(_Tok("lparen", ch, i))
            i += 1
        elif ch == ")":
            tokens.append(_Tok("rparen", ch, i))
            i += 1
        elif ch.isalpha():
            j = i
            while j < n and value[j].isalpha():
                j += 1
            word = value[i:j]
            tokens.append(_Tok(_KEYWORDS.get(word, "word"), word, i))
            i = j
        else:
            raise _odata_error(
                f"Syntax error: character '{ch}' is not valid at position {i} in '{value}'."
            )
    tokens.append(_Tok("end", "", n))
    return _Parser(tokens, value).parse()


# --------------------------------------------------------------------------- text normalisation

_TOKEN_RE = re.compile(r"[^\W_]+")
_SKIPPED_RE = re.compile(
    r"<!--.*?(?:-->|\Z)|<(script|style|head|title)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.S
)
_BLOCK_TAG_RE = re.compile(r"</?(?:p|div|br|tr|li|h[1-6]|table|blockquote|hr)\b[^>]*>")
_TAG_RE = re.compile(r"</?[a-z][^>]*>|<![^>]*>|<\?[^>]*>")
_SKIP_MARKERS = ("<!--", "<script", "<style", "<head", "<title")


def normalize(text: str) -> str:
    """NFKC and case folding: the form every indexed text and every term is compared in."""
    if text.isascii():
        return text.lower()  # NFKC is the identity and casefold is lower() on ASCII
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    """The index tokens of a text: runs of Unicode letters and digits, normalised."""
    return _TOKEN_RE.findall(normalize(text))


def _html_visible_text(markup: str) -> str:
    """`html_to_text`'s words, about ten times faster (the body search hot path).

    The markup is lower-cased first so the regexes need no IGNORECASE; the result is
    case-folded anyway, and entity names differing only by case decode to case variants.
    """
    low = markup.lower()
    if any(marker in low for marker in _SKIP_MARKERS):
        low = _SKIPPED_RE.sub("", low)
    low = _BLOCK_TAG_RE.sub("\n", low)
    low = _TAG_RE.sub("", low)
    if "&" in low:
        low = html.unescape(low)
    return low


@lru_cache(maxsize=BODY_CACHE_SIZE)
def _body_text(body: str, is_html: bool) -> str:
    return normalize(_html_visible_text(body) if is_html else body)


# --------------------------------------------------------------------------- matchers

TextTest: TypeAlias = Callable[[str], bool]


def _text_test(value: str) -> TextTest:
    """Prefix-token (or consecutive-token phrase) match against normalised text."""
    words = tokenize(value)
    if not words:
        return lambda text: False
    # No lookbehind: a pattern starting with a literal gets the regex engine's fast literal
    # scan (about 30x faster on a miss); the token boundary is checked per hit instead.
    pattern = re.compile(r"[\W_]+".join(re.escape(w) for w in words))
    first = words[0]

    def test(text: str) -> bool:
        if first not in text:  # a C-level reject for the common case
            return False
        pos = 0
        while (m := pattern.search(text, pos)) is not None:
            start = m.start()
            if start == 0 or not text[start - 1].isalnum():
                return True
            pos = start + 1  # not finditer: a token-start hit may overlap a rejected one
        return False

    return test


def _address_test(value: str) -> Callable[[EmailAddress], bool]:
    wanted = normalize(value.strip()).rstrip("*")
    if "@" in wanted:
        if wanted.startswith("@"):
            return lambda a: normalize(a.address).endswith(wanted)
        return lambda a: normalize(a.address) == wanted
    name_test = _text_test(wanted)
    if not wanted:
        return lambda a: False

    def test(a: EmailAddress) -> bool:
        local, _, domain = normalize(a.address).partition("@")
        return (
            local.startswith(wanted)
            or domain == wanted
            or domain.endswith("." + wanted)
            or name_test(normalize(a.name))
        )

    return test


_DATE_FORMATS = (
    re.compile(r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})"),
    re.compile(r"(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})"),
    re.compile(r"(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})"),
    re.compile(r"(?P<m>\d{1,2})-(?P<d>\d{1,2})-(?P<y>\d{4})"),
)


def _parse_day(text: str) -> datetime | None:
    for fmt in _DATE_FORMATS:
        m = fmt.fullmatch(text.strip())
        if m is not None:
            try:
                day = date(int(m["y"]), int(m["m"]), int(m["d"]))
            except ValueError:
                return None
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return None


_ONE_DAY = timedelta(days=1)


def _range_test(
    op: Op, value: str, parse: Callable[[str], float | None], step: float
) -> Callable[[float | None], bool]:
    """A test on a number for `prop:v`, `prop:a..b` and the relational forms.

    `step` is the width of one value (a day for dates, 1 for sizes): `:` matches [v, v+step).
    """
    never: Callable[[float | None], bool] = lambda x: False  # noqa: E731
    if ".." in value:
        lo_text, _, hi_text = value.partition("..")
        lo, hi = parse(lo_text), parse(hi_text)
        if op not in (":", "=") or lo is None or hi is None:
            return never
        return lambda x: x is not None and lo <= x < hi + step
    v = parse(value)
    if v is None:
        return never
    if op in (":", "="):
        return lambda x: x is not None and v <= x < v + step
    if op == "<>":
        return lambda x: x is not None and not (v <= x < v + step)
    if op == ">=":
        return lambda x: x is not None and x >= v
    if op == ">":
        return lambda x: x is not None and x >= v + step
    if op == "<":
        return lambda x: x is not None and x < v
    return lambda x: x is not None and x < v + step  # "<="


def _day_seconds(text: str) -> float | None:
    day = _parse_day(text)
    return None if day is None else day.timestamp()


def _size_value(text: str) -> float | None:
    text = text.strip()
    return float(text) if text.isdigit() else None


def _message_size(m: Message) -> int:
    if m.mime is not None:
        return len(m.mime)
    return len(m.body.encode()) + len(m.subject.encode()) + sum(a.size for a in m.attachments)


# --------------------------------------------------------------------------- compiler


class _Doc:
    """One message's searchable fields, normalised on first use only."""

    __slots__ = ("_body", "_names", "_subject", "msg")

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self._subject: str | None = None
        self._body: str | None = None
        self._names: list[str] | None = None

    @property
    def subject(self) -> str:
        if self._subject is None:
            self._subject = normalize(self.msg.subject)
        return self._subject

    @property
    def body(self) -> str:
        if self._body is None:
            self._body = _body_text(self.msg.body, self.msg.body_type == "html")
        return self._body

    @property
    def attachment_names(self) -> list[str]:
        if self._names is None:
            self._names = [normalize(a.name) for a in self.msg.attachments]
        return self._names


DocTest: TypeAlias = Callable[[_Doc], bool]
_ADDRESS_FIELDS: dict[str, Callable[[Message], list[EmailAddress]]] = {
    "from": lambda m: [m.from_] if m.from_ else [],
    "to": lambda m: m.to,
    "cc": lambda m: m.cc,
    "bcc": lambda m: m.bcc,
    "participants": lambda m: ([m.from_] if m.from_ else []) + m.to + m.cc + m.bcc,
    "recipients": lambda m: m.to + m.cc + m.bcc,
}
_NEVER: DocTest = lambda d: False  # noqa: E731
_BOOLEAN_WORDS = {"true": True, "false": False}
_IMPORTANCE_WORDS = {"low": "low", "normal": "normal", "medium": "normal", "high": "high"}


def _cost(expr: SearchExpr) -> int:
    """Relative evaluation cost, so AND/OR test cheap fields before the body."""
    if isinstance(expr, Term):
        if expr.prop is None or expr.prop == "body":
            return 10
        return 3 if expr.prop == "attachment" else 1
    if isinstance(expr, Negation):
        return _cost(expr.item)
    return max(_cost(item) for item in expr.items)


def _compile_term(term: Term) -> DocTest:
    prop, op, value = term.prop, term.op, term.value
    if op in ("<", ">", "<=", ">=") and prop not in ("received", "sent", "size"):
        return _NEVER
    negate = op == "<>" and prop not in ("received", "sent", "size")
    test = _compile_positive(prop, op, value)
    if negate:
        return lambda d: not test(d)
    return test


def _compile_positive(prop: str | None, op: Op, value: str) -> DocTest:
    if prop is None:
        text_test = _text_test(value)
        address_test = _address_test(value)
        return lambda d: (
            (d.msg.from_ is not None and address_test(d.msg.from_))
            or text_test(d.subject)
            or text_test(d.body)
        )
    if prop in _ADDRESS_FIELDS:
        pick = _ADDRESS_FIELDS[prop]
        address_test = _address_test(value)
        return lambda d: any(address_test(a) for a in pick(d.msg))
    if prop == "subject":
        text_test = _text_test(value)
        return lambda d: text_test(d.subject)
    if prop == "body":
        text_test = _text_test(value)
        return lambda d: text_test(d.body)
    if prop == "attachment":
        text_test = _text_test(value)
        whole = normalize(value.strip()).rstrip("*")
        return lambda d: any(n == whole or text_test(n) for n in d.attachment_names)
    if prop in ("received", "sent"):
        day_test = _range_test(op, value, _day_seconds, _ONE_DAY.total_seconds())

        def when(d: _Doc) -> bool:
            stamp = d.msg.received if prop == "received" else d.msg.sent
            return day_test(stamp.timestamp() if stamp is not None else None)

        return when
    if prop == "size":
        size_test = _range_test(op, value, _size_value, 1)
        return lambda d: size_test(float(_message_size(d.msg)))
    word = normalize(value.strip())
    if prop == "hasattachments":
        flag = _BOOLEAN_WORDS.get(word)
        if flag is None:
            return _NEVER
        return lambda d: d.msg.has_attachments == flag
    if prop == "importance":
        level = _IMPORTANCE_WORDS.get(word)
        if level is None:
            return _NEVER
        return lambda d: d.msg.importance.lower() == level
    if prop == "kind":
        return (lambda d: True) if word in ("email", "emails") else _NEVER
    raise AssertionError(prop)


def _compile(expr: SearchExpr) -> DocTest:
    # Depth is bounded by the parser's MAX_DEPTH, so recursion here is safe.
    if isinstance(expr, Term):
        return _compile_term(expr)
    if isinstance(expr, Negation):
        inner = _compile(expr.item)
        return lambda d: not inner(d)
    parts = [_compile(item) for item in sorted(expr.items, key=_cost)]
    if isinstance(expr, AllOf):
        return lambda d: all(part(d) for part in parts)
    return lambda d: any(part(d) for part in parts)


def compile_search(expr: SearchExpr) -> Callable[[Message], bool]:
    """A predicate over messages implementing the parsed KQL with content-index semantics."""
    test = _compile(expr)
    return lambda m: test(_Doc(m))
