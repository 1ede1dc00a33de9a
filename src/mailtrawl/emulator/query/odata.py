"""OData `$filter` and `$orderby` for the emulator's users and messages, strict like Graph.

`parse_filter` is a recursive-descent parser for the OData subset Graph clients send:
comparisons (`eq ne gt ge lt le`, plus `has`), `and`/`or`/`not`, parentheses, `in (...)`,
the functions `startswith`/`endswith`/`contains`, lambdas (`any`/`all`) and the literal forms
(single-quoted strings with `''`, integers, decimals, `true`/`false`/`null`, unquoted
ISO-8601 datetimes, bare dates and GUIDs). Keywords, function names and property names are
case-insensitive, as in Graph. Precedence, loosest first: `or`, `and`, `not`, comparison.
(`not a eq b` therefore means `not (a eq b)`, which is what every Graph example intends.)
Nesting deeper than `MAX_DEPTH` is refused with a `QueryError`, never a `RecursionError`;
`and`/`or` chains are n-ary nodes, so long flat chains do not nest.

The parsed tree is then compiled per entity, refusing what Graph refuses:

* Users (`compile_user_filter`) follow the directory table of
  microsoft-graph-docs-contrib `includes/filter-directory-objects.md` and
  `concepts/aad-advanced-queries.md`: `eq`/`in`/`startswith` (and `ge`/`le` on most strings)
  by default; `ne`, `not`, `endswith` (mail and userPrincipalName only), null checks and
  `in`/`or` with more than 15 clauses only in advanced queries. `officeLocation` is
  advanced-only: the brief listed it as default, but the table and reports (docs-contrib issue
  #3260, "Unsupported or invalid query filter clause specified for property 'officeLocation' of
  resource 'User'.") say otherwise. String comparison is case-insensitive.
* Messages (`compile_message_filter`) allow `eq`/`ne` on the listed properties, relational
  operators on the four datetimes, `startswith`/`contains` on `subject` and
  `categories/any(c:c eq '...')`. Exchange string equality is case-insensitive. Datetime
  literals must carry `Z` or an offset; quoted strings and bare dates are type errors.
  Datetimes in the model are compared at whole seconds, the precision Graph shows.
* Both accept the OData spelling `startswith(p,'x') eq true` (or `eq false`, `ne ...`).

Real Graph texts used (found with the search tool):

* `ErrorInvalidUrlQueryFilter` "The query filter contains one or more invalid nodes." for
  `endswith(subject, ...)` (msgraph-sdk-dotnet #2572), `categories/any(a:startsWith(...))`
  (techcommunity 4116030) and `toRecipients/any(i:i/emailAddress/address eq ...)`
  (microsoft-graph-explorer-v4 #3957, reproduced by a maintainer in 2026). Recipient lambdas
  are therefore refused by default; flip `RECIPIENT_LAMBDAS_SUPPORTED` to accept them.
* `contains(subject, '...')` is accepted on messages (Mail-Otter PR #165 uses it in production;
  graph-explorer-v4 #3765 shows it returning results). `contains(from/emailAddress/address, ...)`
  was also reported working (docs issue #4866, 2019) but is refused here, per the brief.
* `RequestBroker--ParseUri` "Could not find a property named 'isJunk' on type
  'microsoft.graph.message'." for unknown message properties (wslyvh/paperweight #1).
* `BadRequest` "Invalid filter clause: Syntax error at position 17 in '...'." (graph-explorer-v4
  #3227); "A binary operator with incompatible types was detected. Found operand types
  'Edm.DateTimeOffset' and 'Edm.String' ..." and "The DateTimeOffset text '...' should be in
  format ..." (OpenAEV collectors #564). Positions follow OData's lexer: a bad character is
  reported at its 0-based index, an unexpected token at the index just past it.
* Users: "Unsupported or invalid query filter clause specified for property ... of resource
  'User'.", "Operator 'endsWith' is not supported because the required parameters might be
  missing. ..." (aad-advanced-queries.md, reused for `ne` and `not`), "Too many child clauses
  specified in search filter expression containing 'OR' operators: 16. Max allowed: 15."
  (docs issue #21098), "Unsupported property filter clause operator 'Contains'." (#2919).
* `$orderby` with `$filter`: every sort property must appear in the filter, in the same order
  and before any other filter property, else `InefficientFilter` "The restriction or sort order
  is too complex for this operation." (devblogs "update to filtering and sorting").

Guesses (no primary source found): `in` and `null` comparisons on messages are refused;
`not` on messages is accepted; `all` lambdas are refused everywhere (filter-query-parameter.md:
"Currently, it isn't supported in Microsoft Graph."); OData functions Graph parses but this
emulator does not evaluate (`tolower`, `length`, ...) answer 501 `NotImplemented`, as do real
user properties the emulator does not model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal, TypeAlias, TypeVar

from mailtrawl.emulator.state import EmailAddress, Message, User

__all__ = [
    "MAX_DEPTH",
    "MESSAGE_ORDERBY_PROPERTIES",
    "RECIPIENT_LAMBDAS_SUPPORTED",
    "USER_ORDERBY_PROPERTIES",
    "And",
    "Call",
    "Compare",
    "Const",
    "Expr",
    "InList",
    "Lambda",
    "Not",
    "Or",
    "Prop",
    "QueryError",
    "check_message_orderby",
    "check_user_orderby",
    "compile_message_filter",
    "compile_user_filter",
    "message_sort_key",
    "parse_filter",
    "parse_orderby",
    "referenced_properties",
    "user_sort_key",
]

_T = TypeVar("_T")

MAX_DEPTH = 100
# Graph answered ErrorInvalidUrlQueryFilter for toRecipients/any(...) in 2025-2026.
RECIPIENT_LAMBDAS_SUPPORTED = False
# Default (non-advanced) directory queries allow at most this many OR'ed clauses.
MAX_DEFAULT_OR_CLAUSES = 15


class QueryError(Exception):
    """A query option Graph would refuse; the HTTP layer renders it as Graph's error JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _bad_filter(reason: str) -> QueryError:
    return QueryError(400, "BadRequest", f"Invalid filter clause: {reason}")


# --------------------------------------------------------------------------- syntax tree

ConstKind = Literal["string", "int", "decimal", "bool", "null", "datetime", "date", "guid"]
ConstValue: TypeAlias = str | int | Decimal | bool | datetime | date | None


@dataclass(frozen=True, slots=True)
class Const:
    """A literal. `text` is the source spelling, kept for error messages."""

    kind: ConstKind
    value: ConstValue
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class Prop:
    """A property path such as `from/emailAddress/address` (segments as written)."""

    segments: tuple[str, ...]
    pos: int

    @property
    def path(self) -> str:
        return "/".join(self.segments)


@dataclass(frozen=True, slots=True)
class Compare:
    op: Literal["eq", "ne", "gt", "ge", "lt", "le", "has"]
    left: Expr
    right: Expr
    pos: int


@dataclass(frozen=True, slots=True)
class InList:
    operand: Expr
    values: tuple[Const, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # lower-case
    args: tuple[Expr, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Lambda:
    collection: Prop
    kind: Literal["any", "all"]
    var: str | None
    body: Expr | None
    pos: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    pos: int


Expr: TypeAlias = Const | Prop | Compare | InList | Call | Lambda | And | Or | Not

# --------------------------------------------------------------------------- lexer

TokenKind = Literal["string", "datetime", "date", "guid", "number", "ident", "punct", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    text: str
    start: int
    end: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})(?![\w-])
  | (?P<datetime>\d{4}-\d{2}-\d{2}T[0-9:.]+(?:[Zz]|[+-]\d{2}:\d{2})?)(?![\w:.])
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:.])
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])
  | (?P<ident>\$?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),/:])
    """,
    re.VERBOSE,
)
_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?(?:([Zz])|([+-])(\d{2}):(\d{2}))?"
)
_DATETIME_FORMAT_HINT = "'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?'"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == "'":
                raise _bad_filter(
                    f"There is an unterminated string literal at position {n} in '{text}'."
                )
            raise _bad_filter(
                f"Syntax error: character '{ch}' is not valid at position {pos} in '{text}'."
            )
        kind = m.lastgroup
        if kind != "ws":
            assert kind is not None
            tokens.append(_Token(kind, m.group(), m.start(), m.end()))  # type: ignore[arg-type]
        pos = m.end()
    tokens.append(_Token("end", "", n, n))
    return tokens


def _parse_datetime(raw: str) -> datetime:
    """An OData DateTimeOffset literal; a missing offset is an error, as in Graph."""
    m = _DATETIME_RE.fullmatch(raw)
    problem = QueryError(
        400,
        "BadRequest",
        f"Invalid filter clause: The DateTimeOffset text '{raw}' should be in format "
        f"{_DATETIME_FORMAT_HINT} and each field value is within valid range.",
    )
    if m is None or (m.group(8) is None and m.group(9) is None):
        raise problem
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    tz: timezone = UTC
    if m.group(9):
        sign = 1 if m.group(9) == "+" else -1
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 14 or off_m > 59:
            raise problem
        tz = timezone(sign * timedelta(hours=off_h, minutes=off_m))
    try:
        value = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        raise problem from None
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- parser

_COMPARISON_OPS = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "has"})
_RESERVED = frozenset({"and", "or", "not", "in", *_COMPARISON_OPS})


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    # token helpers ---------------------------------------------------------------
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _peek(self, offset: int = 1) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def _advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def _is_word(self, *words: str, tok: _Token | None = None) -> bool:
        tok = tok or self.tok
        return tok.kind == "ident" and tok.text.lower() in words

    def _is_punct(self, ch: str, tok: _Token | None = None) -> bool:
        tok = tok or self.tok
        return tok.kind == "punct" and tok.text == ch

    def _syntax_error(self, tok: _Token | None = None) -> QueryError:
        tok = tok or self.tok
        if tok.kind == "end":
            return _bad_filter(f"Expression expected at position {tok.start} in '{self.text}'.")
        return _bad_filter(f"Syntax error at position {tok.end} in '{self.text}'.")

    def _expect_punct(self, ch: str) -> _Token:
        if not self._is_punct(ch):
            if self.tok.kind == "end":
                raise _bad_filter(f"'{ch}' expected at position {self.tok.start} in '{self.text}'.")
            raise self._syntax_error()
        return self._advance()

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _bad_filter(f"The query exceeds the maximum nesting depth of {MAX_DEPTH}.")

    def _leave(self) -> None:
        self.depth -= 1

    # grammar ---------------------------------------------------------------------
    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise _bad_filter(f"Expression expected at position 0 in '{self.text}'.")
        expr = self._or()
        if not self._at_end():
            raise self._syntax_error()
        return expr

    def _at_end(self) -> bool:
        return self.tok.kind == "end"

    def _or(self) -> Expr:
        items = [self._and()]
        while self._is_word("or"):
            self._advance()
            items.append(self._and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _and(self) -> Expr:
        items = [self._not()]
        while self._is_word("and"):
            self._advance()
            items.append(self._not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def _not(self) -> Expr:
        if self._is_word("not"):
            tok = self._advance()
            self._enter()
            operand = self._not()
            self._leave()
            return Not(operand, tok.start)
        return self._comparison()

    def _comparison(self) -> Expr:
        left = self._primary()
        tok = self.tok
        if tok.kind == "ident":
            word = tok.text.lower()
            if word in _COMPARISON_OPS:
                self._advance()
                right = self._primary()
                return Compare(word, left, right, tok.start)  # type: ignore[arg-type]
            if word == "in":
                self._advance()
                return InList(left, self._in_values(), tok.start)
        return left

    def _in_values(self) -> tuple[Const, ...]:
        self._expect_punct("(")
        values: list[Const] = []
        while True:
            value = self._primary()
            if not isinstance(value, Const):
                raise self._syntax_error(self.tokens[self.i - 1])
            values.append(value)
            if self._is_punct(","):
                self._advance()
                continue
            self._expect_punct(")")
            return tuple(values)

    def _primary(self) -> Expr:
        tok = self.tok
        if self._is_punct("("):
            self._advance()
            self._enter()
            inner = self._or()
            self._leave()
            self._expect_punct(")")
            return inner
        if tok.kind == "string":
            self._advance()
            return Const("string", tok.text[1:-1].replace("''", "'"), tok.text, tok.start)
        if tok.kind == "datetime":
            self._advance()
            return Const("datetime", _parse_datetime(tok.text), tok.text, tok.start)
        if tok.kind == "date":
            self._advance()
            try:
                value = date.fromisoformat(tok.text)
            except ValueError:
                raise _bad_filter(
                    f"The Date text '{tok.text}' should be in format 'yyyy-mm-dd' and each "
                    "field value is within valid range."
                ) from None
            return Const("date", value, tok.text, tok.start)
        if tok.kind == "guid":
            self._advance()
            return Const("guid", tok.text.lower(), tok.text, tok.start)
        if tok.kind == "number":
            self._advance()
            if any(c in tok.text for c in ".eE"):
                return Const("decimal", Decimal(tok.text), tok.text, tok.start)
            return Const("int", int(tok.text), tok.text, tok.start)
        if tok.kind == "ident":
            word = tok.text.lower()
            if word in ("true", "false"):
                self._advance()
                return Const("bool", word == "true", tok.text, tok.start)
            if word == "null":
                self._advance()
                return Const("null", None, tok.text, tok.start)
            if word in _RESERVED:
                raise self._syntax_error()
            if self._is_punct("(", self._peek()):
                return self._call()
            return self._path()
        raise self._syntax_error()

    def _call(self) -> Call:
        name_tok = self._advance()
        self._advance()  # "("
        self._enter()
        args: list[Expr] = []
        if not self._is_punct(")"):
            while True:
                args.append(self._or())
                if self._is_punct(","):
                    self._advance()
                    continue
                break
        self._leave()
        self._expect_punct(")")
        return Call(name_tok.text.lower(), tuple(args), name_tok.start)

    def _path(self) -> Prop | Lambda:
        first = self._advance()
        segments = [first.text]
        while self._is_punct("/"):
            self._advance()
            seg = self.tok
            if seg.kind != "ident":
                raise self._syntax_error()
            self._advance()
            if seg.text.lower() in ("any", "all") and self._is_punct("("):
                return self._lambda(Prop(tuple(segments), first.start), seg)
            segments.append(seg.text)
        return Prop(tuple(segments), first.start)

    def _lambda(self, collection: Prop, kind_tok: _Token) -> Lambda:
        self._advance()  # "("
        kind: Literal["any", "all"] = "any" if kind_tok.text.lower() == "any" else "all"
        if self._is_punct(")"):
            self._advance()
            return Lambda(collection, kind, None, None, kind_tok.start)
        var = self.tok
        if var.kind != "ident" or var.text.lower() in _RESERVED:
            raise self._syntax_error()
        self._advance()
        self._expect_punct(":")
        self._enter()
        body = self._or()
        self._leave()
        self._expect_punct(")")
        return Lambda(collection, kind, var.text, body, kind_tok.start)


def parse_filter(text: str) -> Expr:
    """Parse a `$filter` value (already URL-decoded) into an expression tree."""
    return _Parser(text).parse()


def referenced_properties(expr: Expr) -> list[str]:
    """Property paths the filter mentions, in order of first appearance (case-insensitive).

    A lambda counts as its collection (`categories`); range-variable paths inside it do not.
    """
    seen: dict[str, str] = {}
    # An explicit stack keeps this safe for any tree the parser accepts.
    stack: list[tuple[Expr, frozenset[str]]] = [(expr, frozenset())]
    while stack:
        node, scope = stack.pop()
        if isinstance(node, Prop):
            if node.segments[0] not in scope:
                seen.setdefault(node.path.lower(), node.path)
        elif isinstance(node, Lambda):
            seen.setdefault(node.collection.path.lower(), node.collection.path)
            if node.body is not None and node.var is not None:
                stack.append((node.body, scope | {node.var}))
        elif isinstance(node, Compare):
            stack.extend([(node.right, scope), (node.left, scope)])
        elif isinstance(node, InList):
            stack.append((node.operand, scope))
        elif isinstance(node, Call):
            stack.extend((arg, scope) for arg in reversed(node.args))
        elif isinstance(node, And | Or):
            stack.extend((item, scope) for item in reversed(node.items))
        elif isinstance(node, Not):
            stack.append((node.operand, scope))
    return list(seen.values())


# --------------------------------------------------------------------------- shared compile helpers

_OP_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
    "has": "Has",
}
_FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "has": "has"}
_EDM_OF_CONST = {
    "string": "Edm.String",
    "int": "Edm.Int32",
    "decimal": "Edm.Decimal",
    "bool": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset",
    "date": "Edm.Date",
    "guid": "Edm.Guid",
}
# OData functions Graph's parser knows but the emulator does not evaluate.
_KNOWN_ODATA_FUNCTIONS = frozenset(
    {
        "tolower", "toupper", "trim", "length", "indexof", "substring", "concat",
        "year", "month", "day", "hour", "minute", "second", "fractionalseconds", "date",
        "time", "now", "round", "floor", "ceiling", "isof", "cast", "matchespattern",
        "totaloffsetminutes", "mindatetime", "maxdatetime", "totalseconds",
    }
)  # fmt: skip


def _incompatible(left: str, right: str, op: str) -> QueryError:
    return _bad_filter(
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{left}' and '{right}' for operator kind '{_OP_KIND[op]}'."
    )


def _split_compare(node: Compare) -> tuple[Prop, str, Const] | None:
    """(property, operator, literal) with the property on the left, or None if not that shape."""
    if isinstance(node.left, Prop) and isinstance(node.right, Const):
        return node.left, node.op, node.right
    if isinstance(node.left, Const) and isinstance(node.right, Prop):
        return node.right, _FLIPPED[node.op], node.left
    return None


_STRING_FUNCTIONS = frozenset({"startswith", "endswith", "contains"})


def _call_compared_to_bool(node: Compare) -> tuple[Call, bool] | None:
    """`startswith(p,'x') eq true` as (call, wanted result); None if `node` has no call.

    Raises for calls to functions other than the string ones, or compared to non-booleans.
    """
    if isinstance(node.left, Call):
        call, other = node.left, node.right
    elif isinstance(node.right, Call):
        call, other = node.right, node.left
    else:
        return None
    if call.name not in _STRING_FUNCTIONS:
        raise _unknown_function(call)
    if not (isinstance(other, Const) and other.kind == "bool" and node.op in ("eq", "ne")):
        raise _incompatible(
            "Edm.Boolean", _EDM_OF_CONST.get(_const_kind(other), "Edm.String"), node.op
        )
    return call, bool(other.value) == (node.op == "eq")


def _const_kind(node: Expr) -> str:
    return node.kind if isinstance(node, Const) else "string"


def _unknown_function(node: Call) -> QueryError:
    if node.name in _KNOWN_ODATA_FUNCTIONS:
        return QueryError(
            501,
            "NotImplemented",
            f"The emulator does not implement the OData function '{node.name}' in $filter.",
        )
    return _bad_filter(
        f"An unknown function with name '{node.name}' was found. This may also be a function "
        "import or a key lookup on a navigation property, which is not allowed."
    )


def _no_signature(name: str) -> QueryError:
    return _bad_filter(
        f"No function signature for the function with name '{name}' matches the specified "
        "arguments."
    )


def _string_test(op: str, needle: str) -> Callable[[str | None], bool]:
    """Case-insensitive comparison of an optional string against a literal."""
    folded = needle.casefold()
    if op == "eq":
        return lambda v: v is not None and v.casefold() == folded
    if op == "ne":
        return lambda v: v is None or v.casefold() != folded
    if op == "ge":
        return lambda v: v is not None and v.casefold() >= folded
    if op == "le":
        return lambda v: v is not None and v.casefold() <= folded
    if op == "gt":
        return lambda v: v is not None and v.casefold() > folded
    if op == "lt":
        return lambda v: v is not None and v.casefold() < folded
    if op == "startswith":
        return lambda v: v is not None and v.casefold().startswith(folded)
    if op == "endswith":
        return lambda v: v is not None and v.casefold().endswith(folded)
    if op == "contains":
        return lambda v: v is not None and folded in v.casefold()
    raise AssertionError(op)


# --------------------------------------------------------------------------- users

_Level = Literal["default", "advanced"]
_D: _Level = "default"
_A: _Level = "advanced"


@dataclass(frozen=True, slots=True)
class _UserProp:
    name: str
    kind: Literal["string", "bool", "datetime"]
    get: Callable[[User], str | bool | datetime | None]
    ops: dict[str, _Level]


def _s(
    *,
    sw: _Level | None = _D,
    ew: _Level | None = None,
    rel: _Level | None = _D,
    null: _Level | None = _A,
    eq: _Level = _D,
) -> dict[str, _Level]:
    """The operator table of a string property (defaults: the common directory string)."""
    ops: dict[str, _Level] = {"eq": eq, "in": eq, "ne": _A}
    if sw:
        ops["startswith"] = sw
    if ew:
        ops["endswith"] = ew
    if rel:
        ops["ge"] = rel
        ops["le"] = rel
    if null:
        ops["null"] = null
    return ops


# From includes/filter-directory-objects.md and user.md (where they differ, the wider one).
_USER_PROPS: dict[str, _UserProp] = {
    p.name.lower(): p
    for p in (
        _UserProp("id", "string", lambda u: u.id, _s(sw=None, rel=None, null=None)),
        _UserProp("userPrincipalName", "string", lambda u: u.user_principal_name,
                  _s(ew=_A, null=None)),
        _UserProp("mail", "string", lambda u: u.mail, _s(ew=_A)),
        _UserProp("displayName", "string", lambda u: u.display_name, _s()),
        _UserProp("givenName", "string", lambda u: u.given_name, _s()),
        _UserProp("surname", "string", lambda u: u.surname, _s()),
        _UserProp("department", "string", lambda u: u.department, _s()),
        _UserProp("jobTitle", "string", lambda u: u.job_title, _s()),
        _UserProp("officeLocation", "string", lambda u: u.office_location,
                  _s(eq=_A, sw=_A, rel=_A)),
        _UserProp("mailNickname", "string", lambda u: u.user_principal_name.split("@")[0], _s()),
        _UserProp("userType", "string", lambda u: "Member", _s(sw=None, rel=None)),
        _UserProp("accountEnabled", "bool", lambda u: u.account_enabled,
                  {"eq": _D, "in": _D, "ne": _A}),
        _UserProp("createdDateTime", "datetime", lambda u: u.created,
                  {"eq": _D, "ge": _D, "le": _D, "ne": _A, "in": _A}),
    )
}  # fmt: skip
# Real user properties the emulator does not model: Graph may accept them, we cannot answer.
_UNMODELLED_USER_PROPS = frozenset(
    p.lower()
    for p in (
        "ageGroup", "assignedLicenses", "assignedPlans", "businessPhones", "city", "companyName",
        "consentProvidedForMinor", "country", "creationType", "deletedDateTime", "employeeHireDate",
        "employeeId", "employeeType", "externalUserState", "faxNumber", "identities",
        "imAddresses", "isResourceAccount", "mobilePhone", "onPremisesExtensionAttributes",
        "onPremisesImmutableId", "onPremisesLastSyncDateTime", "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier", "onPremisesSyncEnabled", "onPremisesUserPrincipalName",
        "otherMails", "passwordPolicies", "postalCode", "preferredLanguage", "proxyAddresses",
        "showInAddressList", "signInActivity", "state", "streetAddress", "usageLocation",
        "employeeOrgData", "externalUserStateChangeDateTime",
    )
)  # fmt: skip


def _user_unsupported(name: str) -> QueryError:
    return QueryError(
        400,
        "Request_UnsupportedQuery",
        f"Unsupported or invalid query filter clause specified for property '{name}' of "
        "resource 'User'.",
    )


def _needs_advanced(operator: str) -> QueryError:
    return QueryError(
        400,
        "Request_UnsupportedQuery",
        f"Operator '{operator}' is not supported because the required parameters might be "
        "missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. "
        "Refer to https://aka.ms/graph-docs/advanced-queries for more information",
    )


def _or_clause_count(node: Expr) -> int:
    if isinstance(node, InList):
        return len(node.values)
    if isinstance(node, Or):
        return sum(_or_clause_count(item) for item in node.items)
    return 1


class _UserCompiler:
    def __init__(self, advanced: bool) -> None:
        self.advanced = advanced

    def _prop(self, path: Prop) -> _UserProp:
        key = path.path.lower()
        prop = _USER_PROPS.get(key)
        if prop is not None:
            return prop
        if key in _UNMODELLED_USER_PROPS or key.split("/")[0] in _UNMODELLED_USER_PROPS:
            raise QueryError(
                501,
                "NotImplemented",
                f"The emulator does not model the user property '{path.path}' for $filter.",
            )
        raise _user_unsupported(path.path)

    def _allow(self, prop: _UserProp, op: str) -> None:
        level = prop.ops.get(op)
        if level is None:
            raise _user_unsupported(prop.name)
        if level == _A and not self.advanced:
            if op == "ne":
                raise _needs_advanced("ne")
            if op == "endswith":
                raise _needs_advanced("endsWith")
            raise _user_unsupported(prop.name)

    def compile(self, node: Expr) -> Callable[[User], bool]:
        if isinstance(node, And):
            parts = [self.compile(item) for item in node.items]
            return lambda u: all(p(u) for p in parts)
        if isinstance(node, Or):
            self._check_or_width(node)
            parts = [self.compile(item) for item in node.items]
            return lambda u: any(p(u) for p in parts)
        if isinstance(node, Not):
            if not self.advanced:
                raise _needs_advanced("not")
            inner = self.compile(node.operand)
            return lambda u: not inner(u)
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, InList):
            self._check_or_width(node)
            return self._in(node)
        if isinstance(node, Call):
            return self._call(node)
        if isinstance(node, Lambda):
            if node.kind == "all":
                raise QueryError(400, "BadRequest", "Filter not supported.")
            self._prop(node.collection)  # raises: no modelled user property is a collection
            raise _user_unsupported(node.collection.path)
        raise QueryError(400, "Request_UnsupportedQuery", "Unsupported Query.")

    def _check_or_width(self, node: Expr) -> None:
        count = _or_clause_count(node)
        if count > MAX_DEFAULT_OR_CLAUSES and not self.advanced:
            raise QueryError(
                400,
                "Request_UnsupportedQuery",
                "Too many child clauses specified in search filter expression containing 'OR' "
                f"operators: {count}. Max allowed: {MAX_DEFAULT_OR_CLAUSES}.",
            )

    def _value_test(self, prop: _UserProp, op: str, const: Const) -> Callable[[User], bool]:
        get = prop.get
        if const.kind == "null":
            if op not in ("eq", "ne"):
                raise _user_unsupported(prop.name)
            self._allow(prop, "null")
            self._allow(prop, op)
            if op == "eq":
                return lambda u: get(u) in (None, "")
            return lambda u: get(u) not in (None, "")
        self._allow(prop, op)
        if prop.kind == "string":
            if const.kind != "string":
                raise _incompatible("Edm.String", _EDM_OF_CONST[const.kind], op)
            assert isinstance(const.value, str)
            test = _string_test(op, const.value)
            return lambda u: test(get(u))  # type: ignore[arg-type]
        if prop.kind == "bool":
            if const.kind != "bool":
                raise _incompatible("Edm.Boolean", _EDM_OF_CONST[const.kind], op)
            flag = const.value
            return (lambda u: get(u) == flag) if op == "eq" else (lambda u: get(u) != flag)
        if const.kind != "datetime":
            raise _incompatible("Edm.DateTimeOffset", _EDM_OF_CONST[const.kind], op)
        assert isinstance(const.value, datetime)
        return _datetime_test(op, const.value, get)  # type: ignore[arg-type]

    def _compare(self, node: Compare) -> Callable[[User], bool]:
        with_call = _call_compared_to_bool(node)
        if with_call is not None:
            inner, result = self._call(with_call[0]), with_call[1]
            return lambda u: inner(u) == result
        shape = _split_compare(node)
        if shape is None:
            raise QueryError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        path, op, const = shape
        prop = self._prop(path)
        if op in ("gt", "lt", "has"):
            raise _user_unsupported(prop.name)
        return self._value_test(prop, op, const)

    def _in(self, node: InList) -> Callable[[User], bool]:
        if not isinstance(node.operand, Prop):
            raise QueryError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        prop = self._prop(node.operand)
        self._allow(prop, "in")
        tests = [self._value_test(prop, "eq", value) for value in node.values]
        return lambda u: any(t(u) for t in tests)

    def _call(self, node: Call) -> Callable[[User], bool]:
        if node.name not in _STRING_FUNCTIONS:
            raise _unknown_function(node)
        if len(node.args) != 2:
            raise _no_signature(node.name)
        target, needle = node.args
        if not isinstance(target, Prop) or not isinstance(needle, Const):
            raise QueryError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        prop = self._prop(target)
        if node.name == "contains":
            raise QueryError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported property filter clause operator 'Contains'.",
            )
        self._allow(prop, node.name)
        if prop.kind != "string" or needle.kind != "string":
            raise _no_signature(node.name)
        assert isinstance(needle.value, str)
        test = _string_test(node.name, needle.value)
        get = prop.get
        return lambda u: test(get(u))  # type: ignore[arg-type]


def compile_user_filter(expr: Expr, *, advanced: bool) -> Callable[[User], bool]:
    """A predicate over users; `advanced` means the request sent `ConsistencyLevel: eventual`."""
    return _UserCompiler(advanced).compile(expr)


# --------------------------------------------------------------------------- messages

# A slice of Graph's schema, to tell unknown properties (parser error) from known but
# unfilterable ones (Exchange's ErrorInvalidUrlQueryFilter).
_SCHEMA: dict[str, dict[str, str]] = {
    "message": {
        p: t
        for t, names in (
            ("Edm.String", "id changeKey internetMessageId subject bodyPreview parentFolderId "
                           "conversationId webLink"),
            ("Edm.DateTimeOffset", "createdDateTime lastModifiedDateTime receivedDateTime "
                                   "sentDateTime"),
            ("Edm.Boolean", "hasAttachments isDeliveryReceiptRequested isReadReceiptRequested "
                            "isRead isDraft"),
            ("Edm.Binary", "conversationIndex"),
            ("microsoft.graph.importance", "importance"),
            ("microsoft.graph.inferenceClassificationType", "inferenceClassification"),
            ("Collection(Edm.String)", "categories"),
            ("microsoft.graph.itemBody", "body uniqueBody"),
            ("microsoft.graph.recipient", "sender from"),
            ("Collection(microsoft.graph.recipient)",
             "toRecipients ccRecipients bccRecipients replyTo"),
            ("microsoft.graph.followupFlag", "flag"),
            ("Collection(microsoft.graph.internetMessageHeader)", "internetMessageHeaders"),
            ("Collection(microsoft.graph.attachment)", "attachments"),
            ("Collection(microsoft.graph.extension)", "extensions"),
            ("Collection(microsoft.graph.singleValueLegacyExtendedProperty)",
             "singleValueExtendedProperties"),
            ("Collection(microsoft.graph.multiValueLegacyExtendedProperty)",
             "multiValueExtendedProperties"),
        )
        for p in names.split()
    },
    "recipient": {"emailAddress": "microsoft.graph.emailAddress"},
    "emailAddress": {"name": "Edm.String", "address": "Edm.String"},
    "itemBody": {"contentType": "microsoft.graph.bodyType", "content": "Edm.String"},
    "followupFlag": {
        "flagStatus": "microsoft.graph.followupFlagStatus",
        "startDateTime": "microsoft.graph.dateTimeTimeZone",
        "dueDateTime": "microsoft.graph.dateTimeTimeZone",
        "completedDateTime": "microsoft.graph.dateTimeTimeZone",
    },
    "dateTimeTimeZone": {"dateTime": "Edm.String", "timeZone": "Edm.String"},
    "internetMessageHeader": {"name": "Edm.String", "value": "Edm.String"},
}  # fmt: skip
_SCHEMA_LOWER = {t: {p.lower(): p for p in props} for t, props in _SCHEMA.items()}


def _resolve_message_path(segments: Sequence[str], root: str = "microsoft.graph.message") -> str:
    """The canonical spelling of a message property path; unknown names raise like Graph."""
    current = root
    canonical: list[str] = []
    for seg in segments:
        if current.startswith("Collection("):
            raise _bad_filter(
                f"The parent value for a property access of a property '{seg}' is not a single "
                "value. Property access can only be applied to a single value."
            )
        short = current.removeprefix("microsoft.graph.")
        props = _SCHEMA_LOWER.get(short)
        if props is None or seg.lower() not in props:
            raise QueryError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{seg}' on type '{current}'.",
            )
        name = props[seg.lower()]
        canonical.append(name)
        current = _SCHEMA[short][name]
    return "/".join(canonical)


def _invalid_nodes() -> QueryError:
    return QueryError(
        400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
    )


def _address(
    pick: Callable[[Message], EmailAddress | None], part: str
) -> Callable[[Message], str | None]:
    def get(m: Message) -> str | None:
        who = pick(m)
        if who is None:
            return None
        return who.address if part == "address" else who.name

    return get


_MSG_STRINGS: dict[str, Callable[[Message], str | None]] = {
    "subject": lambda m: m.subject,
    "from/emailAddress/address": _address(lambda m: m.from_, "address"),
    "from/emailAddress/name": _address(lambda m: m.from_, "name"),
    "sender/emailAddress/address": _address(lambda m: m.sender, "address"),
    "sender/emailAddress/name": _address(lambda m: m.sender, "name"),
    "internetMessageId": lambda m: m.internet_message_id,
    "conversationId": lambda m: m.conversation_id,
    "parentFolderId": lambda m: m.folder_id,
}
_MSG_ENUMS: dict[str, tuple[Callable[[Message], str], dict[str, str], str]] = {
    "importance": (
        lambda m: m.importance,
        {"low": "low", "normal": "normal", "high": "high"},
        "microsoft.graph.importance",
    ),
    "inferenceClassification": (
        lambda m: m.inference_classification,
        {"focused": "focused", "other": "other"},
        "microsoft.graph.inferenceClassificationType",
    ),
    "flag/flagStatus": (
        lambda m: m.flag_status,
        {"notflagged": "notFlagged", "complete": "complete", "flagged": "flagged"},
        "microsoft.graph.followupFlagStatus",
    ),
}
_MSG_BOOLS: dict[str, Callable[[Message], bool]] = {
    "hasAttachments": lambda m: m.has_attachments,
    "isRead": lambda m: m.is_read,
    "isDraft": lambda m: m.is_draft,
}
_MSG_DATETIMES: dict[str, Callable[[Message], datetime | None]] = {
    "receivedDateTime": lambda m: m.received,
    "sentDateTime": lambda m: m.sent,
    "createdDateTime": lambda m: m.created,
    "lastModifiedDateTime": lambda m: m.last_modified,
}
_MSG_RECIPIENTS: dict[str, Callable[[Message], list[EmailAddress]]] = {
    "toRecipients": lambda m: m.to,
    "ccRecipients": lambda m: m.cc,
    "bccRecipients": lambda m: m.bcc,
}


def _datetime_test(
    op: str, bound: datetime, get: Callable[[_T], datetime | None]
) -> Callable[[_T], bool]:
    def test(item: _T) -> bool:
        value = get(item)
        if value is None:
            return op == "ne"
        # Graph shows (and clients echo back) whole seconds.
        value = value.replace(microsecond=0)
        if op == "eq":
            return value == bound
        if op == "ne":
            return value != bound
        if op == "gt":
            return value > bound
        if op == "ge":
            return value >= bound
        if op == "lt":
            return value < bound
        return value <= bound

    return test


class _MessageCompiler:
    def compile(self, node: Expr) -> Callable[[Message], bool]:
        if isinstance(node, And):
            parts = [self.compile(item) for item in node.items]
            return lambda m: all(p(m) for p in parts)
        if isinstance(node, Or):
            parts = [self.compile(item) for item in node.items]
            return lambda m: any(p(m) for p in parts)
        if isinstance(node, Not):
            inner = self.compile(node.operand)
            return lambda m: not inner(m)
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, Call):
            return self._call(node)
        if isinstance(node, Lambda):
            return self._lambda(node)
        if isinstance(node, InList):
            if isinstance(node.operand, Prop):
                _resolve_message_path(node.operand.segments)
            raise _invalid_nodes()
        if isinstance(node, Prop):
            _resolve_message_path(node.segments)
        raise _invalid_nodes()

    def _compare(self, node: Compare) -> Callable[[Message], bool]:
        with_call = _call_compared_to_bool(node)
        if with_call is not None:
            inner, result = self._call(with_call[0]), with_call[1]
            return lambda m: inner(m) == result
        for side in (node.left, node.right):
            if isinstance(side, Prop):
                _resolve_message_path(side.segments)
        shape = _split_compare(node)
        if shape is None:
            raise _invalid_nodes()
        path, op, const = shape
        name = _resolve_message_path(path.segments)
        if op == "has" or const.kind == "null":
            raise _invalid_nodes()
        if name in _MSG_DATETIMES:
            if const.kind != "datetime":
                raise _incompatible("Edm.DateTimeOffset", _EDM_OF_CONST[const.kind], op)
            assert isinstance(const.value, datetime)
            return _datetime_test(op, const.value, _MSG_DATETIMES[name])
        if name in _MSG_BOOLS:
            if const.kind != "bool":
                raise _incompatible("Edm.Boolean", _EDM_OF_CONST[const.kind], op)
            if op not in ("eq", "ne"):
                raise _invalid_nodes()
            get_flag, flag = _MSG_BOOLS[name], const.value
            if op == "eq":
                return lambda m: get_flag(m) == flag
            return lambda m: get_flag(m) != flag
        if name in _MSG_ENUMS:
            get_enum, members, type_name = _MSG_ENUMS[name]
            if const.kind != "string":
                raise _incompatible(type_name, _EDM_OF_CONST[const.kind], op)
            if op not in ("eq", "ne"):
                raise _invalid_nodes()
            assert isinstance(const.value, str)
            member = members.get(const.value.lower())
            if member is None:
                raise _bad_filter(
                    f"The string '{const.value}' is not a valid enumeration type constant."
                )
            wanted = member.lower()
            if op == "eq":
                return lambda m: get_enum(m).lower() == wanted
            return lambda m: get_enum(m).lower() != wanted
        if name in _MSG_STRINGS:
            if const.kind != "string":
                raise _incompatible("Edm.String", _EDM_OF_CONST[const.kind], op)
            if op not in ("eq", "ne"):
                raise _invalid_nodes()
            assert isinstance(const.value, str)
            test = _string_test(op, const.value)
            get_text = _MSG_STRINGS[name]
            return lambda m: test(get_text(m))
        raise _invalid_nodes()

    def _call(self, node: Call) -> Callable[[Message], bool]:
        if node.name not in _STRING_FUNCTIONS:
            raise _unknown_function(node)
        for arg in node.args:
            if isinstance(arg, Prop):
                _resolve_message_path(arg.segments)
        if len(node.args) != 2:
            raise _no_signature(node.name)
        target, needle = node.args
        # Exchange evaluates startswith/contains on subject only; endswith nowhere (dotnet #2572).
        if (
            node.name == "endswith"
            or not isinstance(target, Prop)
            or not isinstance(needle, Const)
            or needle.kind != "string"
            or _resolve_message_path(target.segments) != "subject"
        ):
            raise _invalid_nodes()
        assert isinstance(needle.value, str)
        test = _string_test(node.name, needle.value)
        return lambda m: test(m.subject)

    def _lambda(self, node: Lambda) -> Callable[[Message], bool]:
        collection = _resolve_message_path(node.collection.segments)
        if node.kind != "any" or node.body is None or node.var is None:
            raise _invalid_nodes()
        body = node.body
        if not isinstance(body, Compare) or body.op != "eq":
            raise _invalid_nodes()
        shape = _split_compare(body)
        if shape is None or shape[2].kind != "string" or shape[0].segments[0] != node.var:
            raise _invalid_nodes()
        rel, _, const = shape
        assert isinstance(const.value, str)
        wanted = const.value.casefold()
        if collection == "categories":
            if len(rel.segments) != 1:
                raise _invalid_nodes()
            return lambda m: any(c.casefold() == wanted for c in m.categories)
        if collection in _MSG_RECIPIENTS:
            inner = _resolve_message_path(rel.segments[1:], root="microsoft.graph.recipient")
            if inner != "emailAddress/address" or not RECIPIENT_LAMBDAS_SUPPORTED:
                raise _invalid_nodes()
            pick = _MSG_RECIPIENTS[collection]
            return lambda m: any(r.address.casefold() == wanted for r in pick(m))
        raise _invalid_nodes()


def compile_message_filter(expr: Expr) -> Callable[[Message], bool]:
    """A predicate over messages, refusing what Exchange refuses."""
    return _MessageCompiler().compile(expr)


# --------------------------------------------------------------------------- $orderby

_ORDERBY_ITEM = re.compile(
    r"\s*(?P<path>\$?[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)"
    r"(?:\s+(?P<dir>[A-Za-z]+))?\s*(?P<sep>,|$)"
)


def parse_orderby(text: str) -> list[tuple[str, bool]]:
    """Parse `$orderby` into (property path as written, descending) pairs."""
    if not text.strip():
        raise QueryError(400, "BadRequest", f"Expression expected at position 0 in '{text}'.")
    items: list[tuple[str, bool]] = []
    seen: set[str] = set()
    pos = 0
    while pos < len(text):
        m = _ORDERBY_ITEM.match(text, pos)
        if m is None:
            raise QueryError(400, "BadRequest", f"Syntax error at position {pos} in '{text}'.")
        direction = (m.group("dir") or "asc").lower()
        if direction not in ("asc", "desc"):
            raise QueryError(
                400, "BadRequest", f"Syntax error at position {m.end('dir')} in '{text}'."
            )
        path = m.group("path")
        if path.lower() in seen:
            raise QueryError(
                400,
                "BadRequest",
                f"Duplicate property named '{path}' is not supported in '$orderby'.",
            )
        seen.add(path.lower())
        items.append((path, direction == "desc"))
        pos = m.end()
        if m.group("sep") == ",":
            if pos >= len(text) or not text[pos:].strip():
                raise QueryError(
                    400, "BadRequest", f"Expression expected at position {len(text)} in '{text}'."
                )
        else:
            break
    return items


SortKey: TypeAlias = tuple[int, float | str]
_IMPORTANCE_RANK = {"low": 0, "normal": 1, "high": 2}
MESSAGE_ORDERBY_PROPERTIES: dict[str, Callable[[Message], float | str | None]] = {
    "receivedDateTime": lambda m: m.received.timestamp(),
    "sentDateTime": lambda m: m.sent.timestamp() if m.sent else None,
    "createdDateTime": lambda m: m.created.timestamp() if m.created else None,
    "lastModifiedDateTime": lambda m: m.last_modified.timestamp() if m.last_modified else None,
    "subject": lambda m: m.subject.casefold(),
    "from/emailAddress/address": lambda m: m.from_.address.casefold() if m.from_ else None,
    "from/emailAddress/name": lambda m: m.from_.name.casefold() if m.from_ else None,
    "importance": lambda m: _IMPORTANCE_RANK.get(m.importance.lower(), 1),
    "isRead": lambda m: int(m.is_read),
    "hasAttachments": lambda m: int(m.has_attachments),
    "isDraft": lambda m: int(m.is_draft),
}


def message_sort_key(prop: str) -> Callable[[Message], SortKey]:
    """A key for `list.sort` ordering messages by an `$orderby` property (nulls first)."""
    name = _resolve_message_path(prop.split("/"))
    get = MESSAGE_ORDERBY_PROPERTIES.get(name)
    if get is None:
        raise QueryError(
            400, "ErrorInvalidProperty", f"The property '{name}' does not support sorting."
        )

    def key(m: Message) -> SortKey:
        value = get(m)
        return (0, 0.0) if value is None else (1, value)

    return key


def _canonical_filter_path(path: str) -> str:
    try:
        return _resolve_message_path(path.split("/"))
    except QueryError:
        return path.lower()


def check_message_orderby(orderby: Sequence[tuple[str, bool]], expr: Expr | None) -> None:
    """Graph's rule for `$orderby` with `$filter` on messages (InefficientFilter otherwise)."""
    wanted = []
    for prop, _ in orderby:
        message_sort_key(prop)  # unknown or unsortable properties fail first
        wanted.append(_resolve_message_path(prop.split("/")))
    if expr is None:
        return
    filtered = [_canonical_filter_path(p) for p in referenced_properties(expr)]
    if filtered[: len(wanted)] != wanted:
        raise QueryError(
            400,
            "InefficientFilter",
            "The restriction or sort order is too complex for this operation.",
        )


USER_ORDERBY_PROPERTIES: dict[str, Callable[[User], str]] = {
    "displayName": lambda u: u.display_name.casefold(),
    "userPrincipalName": lambda u: u.user_principal_name.casefold(),
}
_USER_ORDERBY_LOWER = {k.lower(): k for k in USER_ORDERBY_PROPERTIES}


def user_sort_key(prop: str) -> Callable[[User], str]:
    """A key ordering users by `displayName` or `userPrincipalName` (case-insensitive)."""
    name = _USER_ORDERBY_LOWER.get(prop.lower())
    if name is None:
        raise QueryError(
            400, "Request_UnsupportedQuery", "Sorting not supported for current query."
        )
    return USER_ORDERBY_PROPERTIES[name]


def check_user_orderby(
    orderby: Sequence[tuple[str, bool]], *, has_filter: bool, advanced: bool
) -> None:
    """Directory sorting: displayName/userPrincipalName only; with `$filter` only if advanced."""
    for prop, _ in orderby:
        user_sort_key(prop)
    if orderby and has_filter and not advanced:
        raise QueryError(
            400, "Request_UnsupportedQuery", "Sorting not supported for current query."
        )
