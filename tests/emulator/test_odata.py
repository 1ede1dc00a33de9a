"""OData $filter/$orderby: the parser, the user and message compilers, and Graph's orderby rule."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from mailtrawl.emulator.query import odata
from mailtrawl.emulator.query.odata import (
    And,
    Call,
    Compare,
    Const,
    InList,
    Lambda,
    Not,
    Or,
    Prop,
    QueryError,
    check_message_orderby,
    check_user_orderby,
    compile_message_filter,
    compile_user_filter,
    message_sort_key,
    parse_filter,
    parse_orderby,
    referenced_properties,
    user_sort_key,
)
from mailtrawl.emulator.state import Attachment, EmailAddress, Message, User

RECEIVED = datetime(2024, 1, 15, 10, 30, 0, 250_000, tzinfo=UTC)


def make_message(**overrides: Any) -> Message:
    alice = EmailAddress("Alice Smith", "alice@contoso.com")
    fields: dict[str, Any] = {
        "immutable_id": "imm-1",
        "rest_id": "rest-1",
        "folder_id": "folder-inbox",
        "internet_message_id": "<abc123@contoso.com>",
        "subject": "Invoice overdue",
        "from_": alice,
        "sender": EmailAddress("Mailer", "mailer@contoso.com"),
        "to": [EmailAddress("Bob Jones", "bob@fabrikam.com")],
        "cc": [EmailAddress("Carol", "carol@fabrikam.com")],
        "bcc": [],
        "reply_to": [],
        "received": RECEIVED,
        "sent": RECEIVED - timedelta(minutes=1),
        "body": "Please pay.",
        "body_type": "text",
        "headers": [],
        "attachments": [],
        "categories": ["Red category"],
        "conversation_id": "conv-1",
        "created": RECEIVED,
        "last_modified": RECEIVED + timedelta(hours=1),
    }
    fields.update(overrides)
    return Message(**fields)


def make_user(**overrides: Any) -> User:
    fields: dict[str, Any] = {
        "id": "11111111-2222-3333-4444-555555555555",
        "user_principal_name": "Alice@contoso.com",
        "display_name": "Alice Smith",
        "mail": "alice.smith@contoso.com",
        "given_name": "Alice",
        "surname": "Smith",
        "department": "Finance",
        "job_title": "Accountant",
        "office_location": "Building 1",
        "account_enabled": True,
        "created": datetime(2023, 5, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return User(**fields)


def raises(text: str, call: Callable[[], object]) -> QueryError:
    with pytest.raises(QueryError) as info:
        call()
    assert text in info.value.message, info.value.message
    return info.value


def msg_filter(text: str) -> Callable[[Message], bool]:
    return compile_message_filter(parse_filter(text))


def user_filter(text: str, advanced: bool = False) -> Callable[[User], bool]:
    return compile_user_filter(parse_filter(text), advanced=advanced)


# --------------------------------------------------------------------------- QueryError


def test_query_error_carries_status_code_and_message() -> None:
    err = QueryError(501, "NotImplemented", "nope")
    assert (err.status, err.code, err.message) == (501, "NotImplemented", "nope")
    assert "NotImplemented" in str(err)


# --------------------------------------------------------------------------- parser


@pytest.mark.parametrize("op", ["eq", "ne", "gt", "ge", "lt", "le", "EQ", "Ge", "has"])
def test_every_comparison_operator_parses_case_insensitively(op: str) -> None:
    expr = parse_filter(f"subject {op} 'x'")
    assert isinstance(expr, Compare)
    assert expr.op == op.lower()
    assert expr.left == Prop(("subject",), 0)
    assert isinstance(expr.right, Const)
    assert expr.right.value == "x"


def test_or_binds_looser_than_and() -> None:
    expr = parse_filter("a eq 1 or b eq 2 and c eq 3")
    assert isinstance(expr, Or)
    assert isinstance(expr.items[1], And)


def test_not_binds_tighter_than_and_but_looser_than_comparison() -> None:
    expr = parse_filter("not a eq 1 and b eq 2")
    assert isinstance(expr, And)
    first = expr.items[0]
    assert isinstance(first, Not)
    assert isinstance(first.operand, Compare)


def test_parentheses_override_precedence() -> None:
    expr = parse_filter("(a eq 1 or b eq 2) and c eq 3")
    assert isinstance(expr, And)
    assert isinstance(expr.items[0], Or)


def test_logical_keywords_are_case_insensitive() -> None:
    expr = parse_filter("a eq 1 AND b eq 2 Or NOT c eq 3")
    assert isinstance(expr, Or)
    assert isinstance(expr.items[0], And)
    assert isinstance(expr.items[1], Not)


def test_and_or_chains_are_flat() -> None:
    expr = parse_filter(" or ".join(f"p eq {i}" for i in range(50)))
    assert isinstance(expr, Or)
    assert len(expr.items) == 50


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("'it''s'", "string", "it's"),
        ("''", "string", ""),
        ("''''", "string", "'"),
        ("'a b  c'", "string", "a b  c"),
        ("42", "int", 42),
        ("-7", "int", -7),
        ("3.25", "decimal", Decimal("3.25")),
        ("1e3", "decimal", Decimal("1e3")),
        ("true", "bool", True),
        ("FALSE", "bool", False),
        ("null", "null", None),
        ("2024-01-02", "date", date(2024, 1, 2)),
        (
            "6B29FC40-CA47-1067-B31D-00DD010662DA",
            "guid",
            "6b29fc40-ca47-1067-b31d-00dd010662da",
        ),
        ("2024-01-02T03:04:05Z", "datetime", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05z", "datetime", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04Z", "datetime", datetime(2024, 1, 2, 3, 4, tzinfo=UTC)),
        (
            "2024-01-02T03:04:05.1234567Z",
            "datetime",
            datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        ),
        ("2024-01-02T03:04:05+02:00", "datetime", datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2024-01-02T23:30:00-01:00", "datetime", datetime(2024, 1, 3, 0, 30, tzinfo=UTC)),
    ],
)
def test_literals(text: str, kind: str, value: object) -> None:
    expr = parse_filter(f"p eq {text}")
    assert isinstance(expr, Compare)
    assert isinstance(expr.right, Const)
    assert expr.right.kind == kind
    assert expr.right.value == value
    assert expr.right.text == text


def test_datetime_literals_are_utc_aware() -> None:
    expr = parse_filter("p eq 2024-06-01T12:00:00+05:30")
    assert isinstance(expr, Compare)
    assert isinstance(expr.right, Const)
    assert isinstance(expr.right.value, datetime)
    assert expr.right.value.tzinfo == UTC


def test_property_paths_functions_and_lambdas() -> None:
    expr = parse_filter(
        "startswith(from/emailAddress/address,'a') and categories/any(c:c eq 'Red') "
        "and toRecipients/ALL(r: r/emailAddress/address eq 'x@y') and attachments/any()"
    )
    assert isinstance(expr, And)
    call, any_, all_, empty = expr.items
    assert isinstance(call, Call)
    assert call.name == "startswith"
    assert call.args[0] == Prop(("from", "emailAddress", "address"), 11)
    assert isinstance(any_, Lambda)
    assert (any_.kind, any_.var, any_.collection.path) == ("any", "c", "categories")
    assert isinstance(all_, Lambda)
    assert all_.kind == "all"
    assert isinstance(empty, Lambda)
    assert empty.body is None


def test_function_names_are_case_insensitive() -> None:
    expr = parse_filter("StartsWith(subject,'x')")
    assert isinstance(expr, Call)
    assert expr.name == "startswith"


def test_in_lists_hold_literals_including_null() -> None:
    expr = parse_filter("department in ('Retail', 'Sales', null)")
    assert isinstance(expr, InList)
    assert [v.value for v in expr.values] == ["Retail", "Sales", None]


def test_literal_may_be_on_the_left() -> None:
    expr = parse_filter("'x' eq subject")
    assert isinstance(expr, Compare)
    assert isinstance(expr.left, Const)


def test_syntax_error_position_matches_graph_sample() -> None:
    # The exact text Graph answered in microsoft-graph-explorer-v4 #3227.
    text = "jobtitle ge '!' , accountenabled eq true"
    err = raises(
        f"Invalid filter clause: Syntax error at position 17 in '{text}'.",
        lambda: parse_filter(text),
    )
    assert (err.status, err.code) == (400, "BadRequest")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Expression expected at position 0 in ''."),
        ("   ", "Expression expected at position 0 in '   '."),
        ("subject eq", "Expression expected at position 10 in 'subject eq'."),
        ("subject eq 'abc", "There is an unterminated string literal at position 15"),
        ("subject eq #x", "Syntax error: character '#' is not valid at position 11"),
        ("subject eq 'a' 'b'", "Syntax error at position 18"),
        ("(subject eq 'a'", "')' expected at position 15"),
        ("subject eq 'a')", "Syntax error at position 15"),
        ("eq eq 'a'", "Syntax error at position 2"),
        ("subject eq 'a' and", "Expression expected at position 18"),
        ("subject in 'a'", "Syntax error at position 14"),
        ("subject in (subject)", "Syntax error"),
        ("categories/any(c c eq 'x')", "Syntax error"),
        ("categories/any(and: 1)", "Syntax error"),
        ("from/ eq 'x'", "Syntax error"),
        ("startswith(subject, 'a'", "')' expected"),
        ("p eq 2024-13-01", "The Date text '2024-13-01'"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    err = raises(message, lambda: parse_filter(text))
    assert err.code == "BadRequest"
    assert err.message.startswith("Invalid filter clause: ")


@pytest.mark.parametrize(
    "literal",
    [
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.5",
        "2024-02-30T00:00:00Z",
        "2024-01-01T25:00:00Z",
    ],
)
def test_datetimes_need_an_offset_and_valid_fields(literal: str) -> None:
    raises(
        f"The DateTimeOffset text '{literal}' should be in format "
        "'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range.",
        lambda: parse_filter(f"receivedDateTime ge {literal}"),
    )


def test_unencoded_plus_in_offset_reads_as_missing_offset() -> None:
    # A client that forgets to encode "+" sends a space; Graph then rejects the literal.
    raises(
        "The DateTimeOffset text",
        lambda: parse_filter("receivedDateTime ge 2024-01-01T00:00:00 02:00"),
    )


def test_deep_parentheses_are_a_query_error_not_recursion() -> None:
    ok = "(" * odata.MAX_DEPTH + "a eq 1" + ")" * odata.MAX_DEPTH
    assert isinstance(parse_filter(ok), Compare)
    deep = "(" * (odata.MAX_DEPTH + 1) + "a eq 1" + ")" * (odata.MAX_DEPTH + 1)
    raises("maximum nesting depth of 100", lambda: parse_filter(deep))
    huge = "(" * 50_000 + "a eq 1" + ")" * 50_000
    raises("maximum nesting depth", lambda: parse_filter(huge))


def test_deep_not_chains_are_capped() -> None:
    raises("maximum nesting depth", lambda: parse_filter("not " * 5_000 + "a eq 1"))


def test_deep_function_and_lambda_nesting_is_capped() -> None:
    text = "startswith(" * 200 + "subject" + ",'a')" * 200
    raises("maximum nesting depth", lambda: parse_filter(text))
    lam = "c/any(x:" * 200 + "x eq 1" + ")" * 200
    raises("maximum nesting depth", lambda: parse_filter(lam))


def test_long_flat_chains_compile_and_run_without_recursion() -> None:
    text = " or ".join(f"subject eq 's{i}'" for i in range(5_000))
    predicate = msg_filter(text)
    assert predicate(make_message(subject="s4999"))
    assert not predicate(make_message(subject="nope"))


def test_very_long_string_literal() -> None:
    needle = "x" * 1_000_000
    predicate = msg_filter(f"subject eq '{needle}'")
    assert predicate(make_message(subject=needle.upper()))


def test_garbage_input_never_raises_anything_but_query_error() -> None:
    samples = ["'", "(((", ")))", "a eq", "eq", "/", ",", ":", "any(", "a/any(", "a in (", "not",
               "\x00", "ü eq 1", "a eq 1.2.3", "a eq --1", "1 eq 1 eq 1", "a/any(x:)"]  # fmt: skip
    for text in samples:
        try:
            expr = parse_filter(text)
        except QueryError:
            continue
        for compile_ in (compile_message_filter, lambda e: compile_user_filter(e, advanced=True)):
            with contextlib.suppress(QueryError):
                compile_(expr)


# --------------------------------------------------------------------------- referenced_properties


def test_referenced_properties_in_order_of_first_appearance() -> None:
    expr = parse_filter(
        "receivedDateTime ge 2024-01-01T00:00:00Z and (Subject eq 'a' or "
        "startswith(from/emailAddress/address,'b')) and receivedDateTime le 2024-02-01T00:00:00Z "
        "and subject ne 'c' and categories/any(c:c eq 'Red') and 'x' eq importance"
    )
    assert referenced_properties(expr) == [
        "receivedDateTime",
        "Subject",
        "from/emailAddress/address",
        "categories",
        "importance",
    ]


def test_referenced_properties_skip_lambda_variables() -> None:
    expr = parse_filter("toRecipients/any(r: r/emailAddress/address eq 'x') and isRead eq true")
    assert referenced_properties(expr) == ["toRecipients", "isRead"]


# --------------------------------------------------------------------------- users


USER_DEFAULT_EQ = [
    ("id eq '11111111-2222-3333-4444-555555555555'", True),
    ("userPrincipalName eq 'alice@CONTOSO.com'", True),
    ("mail eq 'ALICE.SMITH@contoso.com'", True),
    ("displayName eq 'alice smith'", True),
    ("givenName eq 'ALICE'", True),
    ("surname eq 'smith'", True),
    ("department eq 'finance'", True),
    ("jobTitle eq 'accountant'", True),
    ("accountEnabled eq true", True),
    ("accountEnabled eq false", False),
    ("userType eq 'Member'", True),
    ("mailNickname eq 'alice'", True),
    ("DisplayName eq 'Alice Smith'", True),
    ("displayName eq 'Bob'", False),
    ("department in ('Sales', 'FINANCE')", True),
    ("department in ('Sales')", False),
    ("id in ('x', '11111111-2222-3333-4444-555555555555')", True),
    ("startswith(displayName,'ali')", True),
    ("startswith(userPrincipalName,'ALI')", True),
    ("startswith(mail,'bob')", False),
    ("startswith(jobTitle,'acc')", True),
    ("givenName ge 'A' and givenName le 'B'", True),
    ("surname ge 'T'", False),
    ("createdDateTime ge 2023-01-01T00:00:00Z", True),
    ("createdDateTime le 2023-01-01T00:00:00Z", False),
    ("displayName eq 'x' or department eq 'Finance'", True),
    ("displayName eq 'x' and department eq 'Finance'", False),
    ("startswith(displayName,'ali') eq true", True),
    ("startswith(displayName,'ali') eq false", False),
]


@pytest.mark.parametrize(("text", "expected"), USER_DEFAULT_EQ)
def test_user_default_filters(text: str, expected: bool) -> None:
    assert user_filter(text)(make_user()) is expected
    # Everything that works by default also works in an advanced query.
    assert user_filter(text, advanced=True)(make_user()) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("displayName ne 'x'", "Operator 'ne' is not supported because the required parameters"),
        ("not (displayName eq 'x')", "Operator 'not' is not supported"),
        ("endswith(mail,'@contoso.com')", "Operator 'endsWith' is not supported"),
        ("department eq null", "property 'department' of resource 'User'"),
        ("officeLocation eq 'Building 1'", "property 'officeLocation' of resource 'User'"),
        ("startswith(officeLocation,'B')", "property 'officeLocation' of resource 'User'"),
        ("department in ('a', null)", "property 'department' of resource 'User'"),
    ],
)
def test_user_filters_that_need_advanced_queries(text: str, message: str) -> None:
    err = raises(message, lambda: user_filter(text))
    assert (err.status, err.code) == (400, "Request_UnsupportedQuery")
    user_filter(text, advanced=True)  # accepted with ConsistencyLevel: eventual


def test_needs_advanced_text_is_graphs() -> None:
    raises(
        "Operator 'endsWith' is not supported because the required parameters might be missing. "
        "Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to "
        "https://aka.ms/graph-docs/advanced-queries for more information",
        lambda: user_filter("endswith(mail,'x')"),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("displayName ne 'Bob'", True),
        ("accountEnabled ne true", False),
        ("not (department eq 'Finance')", False),
        ("not startswith(displayName,'Bob')", True),
        ("endswith(mail,'@CONTOSO.com')", True),
        ("endswith(userPrincipalName,'@fabrikam.com')", False),
        ("department eq null", False),
        ("department ne null", True),
        ("officeLocation eq 'building 1'", True),
        ("startswith(officeLocation,'build')", True),
    ],
)
def test_user_advanced_filters(text: str, expected: bool) -> None:
    assert user_filter(text, advanced=True)(make_user()) is expected


def test_user_null_checks_match_missing_values() -> None:
    predicate = user_filter("jobTitle eq null", advanced=True)
    assert predicate(make_user(job_title=None))
    assert predicate(make_user(job_title=""))
    assert not predicate(make_user())
    both = user_filter("department in (null, 'Sales')", advanced=True)
    assert both(make_user(department=None))
    assert both(make_user(department="sales"))
    assert not both(make_user())


def test_more_than_fifteen_or_clauses_need_advanced() -> None:
    values = ", ".join(f"'u{i}@contoso.com'" for i in range(16))
    text = f"userPrincipalName in ({values})"
    raises(
        "Too many child clauses specified in search filter expression containing 'OR' "
        "operators: 16. Max allowed: 15.",
        lambda: user_filter(text),
    )
    fifteen = ", ".join(f"'u{i}@contoso.com'" for i in range(15))
    user_filter(f"userPrincipalName in ({fifteen})")
    predicate = user_filter(text, advanced=True)
    assert predicate(make_user(user_principal_name="u15@contoso.com"))
    ors = " or ".join(f"displayName eq 'n{i}'" for i in range(16))
    raises("operators: 16. Max allowed: 15.", lambda: user_filter(ors))


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("foo eq 'x'", "Request_UnsupportedQuery", "property 'foo' of resource 'User'"),
        ("displayName gt 'x'", "Request_UnsupportedQuery", "property 'displayName'"),
        ("id ge 'x'", "Request_UnsupportedQuery", "property 'id'"),
        ("startswith(id,'1')", "Request_UnsupportedQuery", "property 'id'"),
        ("contains(displayName,'a')", "Request_UnsupportedQuery", "operator 'Contains'"),
        ("accountEnabled eq 'true'", "BadRequest", "'Edm.Boolean' and 'Edm.String'"),
        ("displayName eq 5", "BadRequest", "'Edm.String' and 'Edm.Int32'"),
        ("createdDateTime ge '2024-01-01'", "BadRequest", "'Edm.DateTimeOffset' and 'Edm.String'"),
        ("startswith(accountEnabled, 'x')", "Request_UnsupportedQuery", "accountEnabled"),
        ("startswith(displayName)", "BadRequest", "No function signature"),
        ("startswith(displayName, 5)", "BadRequest", "No function signature"),
        ("frobnicate(displayName)", "BadRequest", "unknown function with name 'frobnicate'"),
        ("imAddresses/all(i:i eq 'x')", "BadRequest", "Filter not supported."),
        ("displayName eq givenName", "Request_UnsupportedQuery", "Unsupported Query."),
        ("displayName", "Request_UnsupportedQuery", "Unsupported Query."),
        ("startswith(displayName,'a') eq 1", "BadRequest", "'Edm.Boolean' and 'Edm.Int32'"),
        ("mail/any(m:m eq 'x')", "Request_UnsupportedQuery", "property 'mail'"),
    ],
)
def test_user_filter_rejections(text: str, code: str, message: str) -> None:
    for advanced in (False, True):
        err = raises(message, lambda a=advanced: user_filter(text, advanced=a))  # type: ignore[misc]
        assert (err.status, err.code) == (400, code)


def test_user_filter_unknown_property_text() -> None:
    raises(
        "Unsupported or invalid query filter clause specified for property 'companyname2' of "
        "resource 'User'.",
        lambda: user_filter("companyname2 eq 'x'"),
    )


@pytest.mark.parametrize(
    "text",
    ["companyName eq 'x'", "proxyAddresses/any(p:p eq 'x')", "tolower(displayName) eq 'x'"],
)
def test_user_filter_features_the_emulator_does_not_model_answer_501(text: str) -> None:
    err = raises("emulator", lambda: user_filter(text, advanced=True))
    assert (err.status, err.code) == (501, "NotImplemented")


# --------------------------------------------------------------------------- messages


MESSAGE_MATCHES = [
    ("subject eq 'INVOICE OVERDUE'", True),
    ("subject eq 'Invoice'", False),
    ("subject ne 'invoice overdue'", False),
    ("Subject eq 'invoice overdue'", True),
    ("from/emailAddress/address eq 'Alice@Contoso.com'", True),
    ("FROM/EMAILADDRESS/ADDRESS eq 'alice@contoso.com'", True),
    ("from/emailAddress/name eq 'alice smith'", True),
    ("sender/emailAddress/address eq 'mailer@contoso.com'", True),
    ("sender/emailAddress/name eq 'mailer'", True),
    ("sender/emailAddress/name ne 'mailer'", False),
    ("internetMessageId eq '<ABC123@contoso.com>'", True),
    ("conversationId eq 'conv-1'", True),
    ("parentFolderId eq 'folder-inbox'", True),
    ("parentFolderId ne 'folder-inbox'", False),
    ("importance eq 'normal'", True),
    ("importance eq 'High'", False),
    ("importance ne 'high'", True),
    ("inferenceClassification eq 'focused'", True),
    ("inferenceClassification eq 'other'", False),
    ("flag/flagStatus eq 'notFlagged'", True),
    ("flag/flagStatus eq 'flagged'", False),
    ("hasAttachments eq false", True),
    ("hasAttachments ne false", False),
    ("isRead eq false", True),
    ("isDraft eq true", False),
    ("receivedDateTime eq 2024-01-15T10:30:00Z", True),
    ("receivedDateTime ge 2024-01-15T10:30:00Z", True),
    ("receivedDateTime gt 2024-01-15T10:30:00Z", False),
    ("receivedDateTime le 2024-01-15T10:30:00Z", True),
    ("receivedDateTime lt 2024-01-15T10:30:00Z", False),
    ("receivedDateTime ne 2024-01-15T10:30:00Z", False),
    ("receivedDateTime eq 2024-01-15T12:30:00+02:00", True),
    ("receivedDateTime ge 1900-01-01T00:00:00Z", True),
    ("2024-01-16T00:00:00Z gt receivedDateTime", True),
    ("2024-01-16T00:00:00Z lt receivedDateTime", False),
    ("sentDateTime lt 2024-01-15T10:30:00Z", True),
    ("createdDateTime eq 2024-01-15T10:30:00Z", True),
    ("lastModifiedDateTime gt 2024-01-15T11:00:00Z", True),
    ("startswith(subject,'invoice')", True),
    ("startswith(subject,'overdue')", False),
    ("contains(subject,'VOICE OVER')", True),
    ("contains(subject,'paid')", False),
    ("categories/any(c:c eq 'red CATEGORY')", True),
    ("categories/any(c:c eq 'Blue category')", False),
    ("categories/any(x: 'Red category' eq x)", True),
    ("not (isRead eq true)", True),
    ("not isRead eq false", False),
    ("isRead eq true or importance eq 'normal'", True),
    ("isRead eq true and importance eq 'normal'", False),
    ("'invoice overdue' eq subject", True),
    ("startswith(subject,'invoice') eq true", True),
    ("startswith(subject,'invoice') eq false", False),
    ("true eq contains(subject,'overdue')", True),
    ("contains(subject,'overdue') ne true", False),
]


@pytest.mark.parametrize(("text", "expected"), MESSAGE_MATCHES)
def test_message_filters(text: str, expected: bool) -> None:
    assert msg_filter(text)(make_message()) is expected


def test_message_datetime_compare_ignores_sub_second_model_precision() -> None:
    msg = make_message()
    assert msg.received.microsecond  # the model carries microseconds, Graph shows seconds
    assert msg_filter("receivedDateTime eq 2024-01-15T10:30:00Z")(msg)
    assert not msg_filter("receivedDateTime ge 2024-01-15T10:30:00.5Z")(msg)


def test_missing_values_never_match_except_ne() -> None:
    msg = make_message(sent=None, from_=None)
    assert not msg_filter("sentDateTime ge 1900-01-01T00:00:00Z")(msg)
    assert not msg_filter("sentDateTime eq 2024-01-15T10:29:00Z")(msg)
    assert msg_filter("sentDateTime ne 2024-01-15T10:29:00Z")(msg)
    assert not msg_filter("from/emailAddress/address eq 'alice@contoso.com'")(msg)
    assert msg_filter("from/emailAddress/address ne 'alice@contoso.com'")(msg)


def test_has_attachments_ignores_inline_ones() -> None:
    inline = Attachment("a1", "logo.png", "image/png", b"x", is_inline=True)
    real = Attachment("a2", "invoice.pdf", "application/pdf", b"%PDF")
    assert msg_filter("hasAttachments eq false")(make_message(attachments=[inline]))
    assert msg_filter("hasAttachments eq true")(make_message(attachments=[inline, real]))


def test_message_enum_values_follow_the_model() -> None:
    msg = make_message(importance="high", inference_classification="other", flag_status="complete")
    assert msg_filter("importance eq 'high'")(msg)
    assert msg_filter("inferenceClassification eq 'Other'")(msg)
    assert msg_filter("flag/flagStatus eq 'complete'")(msg)
    assert msg_filter("flag/flagStatus ne 'notflagged'")(msg)


def test_recipient_lambdas_are_refused_like_graph() -> None:
    err = raises(
        "The query filter contains one or more invalid nodes.",
        lambda: msg_filter("toRecipients/any(r:r/emailAddress/address eq 'bob@fabrikam.com')"),
    )
    assert err.code == "ErrorInvalidUrlQueryFilter"


@pytest.mark.parametrize(
    ("collection", "address", "expected"),
    [
        ("toRecipients", "BOB@fabrikam.com", True),
        ("toRecipients", "carol@fabrikam.com", False),
        ("ccRecipients", "carol@fabrikam.com", True),
        ("bccRecipients", "carol@fabrikam.com", False),
    ],
)
def test_recipient_lambdas_when_enabled(
    monkeypatch: pytest.MonkeyPatch, collection: str, address: str, expected: bool
) -> None:
    monkeypatch.setattr(odata, "RECIPIENT_LAMBDAS_SUPPORTED", True)
    text = f"{collection}/any(r:r/emailAddress/address eq '{address}')"
    assert msg_filter(text)(make_message()) is expected
    raises("invalid nodes", lambda: msg_filter(f"{collection}/any(r:r/emailAddress/name eq 'x')"))


@pytest.mark.parametrize(
    "text",
    [
        "endswith(subject,'due')",
        "startswith(from/emailAddress/address,'alice')",
        "contains(from/emailAddress/address,'contoso')",
        "startswith(subject, 5)",
        "categories/any(c:startswith(c,'Red'))",
        "categories/all(c:c eq 'Red')",
        "categories/any()",
        "categories/any(c:c ne 'Red')",
        "categories/any(c:c eq 1)",
        "categories/any(c:d eq 'x')",
        "bodyPreview eq 'x'",
        "body/content eq 'x'",
        "contains(body/content,'x')",
        "subject in ('a', 'b')",
        "subject eq null",
        "sentDateTime eq null",
        "subject gt 'a'",
        "isRead gt true",
        "importance ge 'high'",
        "subject has 'x'",
        "subject eq internetMessageId",
        "isRead",
        "true",
        "'x' eq 'x'",
        "replyTo/any(r:r/emailAddress/address eq 'x')",
        "internetMessageHeaders/any(h:h/name eq 'x')",
    ],
)
def test_message_filters_exchange_refuses(text: str) -> None:
    err = raises("The query filter contains one or more invalid nodes.", lambda: msg_filter(text))
    assert (err.status, err.code) == (400, "ErrorInvalidUrlQueryFilter")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "isJunk ne true",
            "Could not find a property named 'isJunk' on type 'microsoft.graph.message'.",
        ),
        (
            "from/emailAddress/domain eq 'x'",
            "Could not find a property named 'domain' on type 'microsoft.graph.emailAddress'.",
        ),
        ("startswith(foo,'x')", "named 'foo'"),
        ("foo/any(f:f eq 'x')", "named 'foo'"),
        ("foo in ('a')", "named 'foo'"),
        ("subject eq foo", "named 'foo'"),
    ],
)
def test_unknown_message_properties(text: str, message: str) -> None:
    err = raises(message, lambda: msg_filter(text))
    assert (err.status, err.code) == (400, "RequestBroker--ParseUri")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "receivedDateTime ge '2024-01-01T00:00:00Z'",
            "Invalid filter clause: A binary operator with incompatible types was detected. Found "
            "operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind "
            "'GreaterThanOrEqual'.",
        ),
        (
            "receivedDateTime lt 2024-01-01",
            "'Edm.DateTimeOffset' and 'Edm.Date' for operator kind 'LessThan'",
        ),
        ("sentDateTime eq 5", "'Edm.Int32' for operator kind 'Equal'"),
        ("isRead eq 'true'", "'Edm.Boolean' and 'Edm.String' for operator kind 'Equal'"),
        ("isRead ne 1", "'Edm.Boolean' and 'Edm.Int32' for operator kind 'NotEqual'"),
        ("subject eq 12", "'Edm.String' and 'Edm.Int32'"),
        ("subject eq true", "'Edm.String' and 'Edm.Boolean'"),
        ("importance eq 2", "'microsoft.graph.importance' and 'Edm.Int32'"),
        ("conversationId eq 6B29FC40-CA47-1067-B31D-00DD010662DA", "'Edm.String' and 'Edm.Guid'"),
        ("receivedDateTime gt 1.5", "'Edm.Decimal' for operator kind 'GreaterThan'"),
        ("importance eq 'urgent'", "The string 'urgent' is not a valid enumeration type constant."),
        ("startswith(subject)", "No function signature for the function with name 'startswith'"),
        (
            "contains(subject,'a','b')",
            "No function signature for the function with name 'contains'",
        ),
        ("startswith(subject,'a') eq 'yes'", "'Edm.Boolean' and 'Edm.String'"),
        ("startswith(subject,'a') gt true", "operator kind 'GreaterThan'"),
    ],
)
def test_message_literal_type_errors(text: str, message: str) -> None:
    err = raises(message, lambda: msg_filter(text))
    assert (err.status, err.code) == (400, "BadRequest")


def test_property_access_on_a_collection_is_a_parse_error() -> None:
    err = raises(
        "The parent value for a property access of a property 'emailAddress' is not a single "
        "value. Property access can only be applied to a single value.",
        lambda: msg_filter("toRecipients/emailAddress/address eq 'bob@fabrikam.com'"),
    )
    assert err.code == "BadRequest"


def test_message_unknown_and_unimplemented_functions() -> None:
    err = raises("unknown function with name 'nope'", lambda: msg_filter("nope(subject)"))
    assert err.status == 400
    err = raises("'tolower'", lambda: msg_filter("tolower(subject) eq 'x'"))
    assert (err.status, err.code) == (501, "NotImplemented")


def test_message_filter_on_many_messages() -> None:
    messages = [
        make_message(subject=f"s{i}", received=RECEIVED + timedelta(days=i)) for i in range(100)
    ]
    predicate = msg_filter(
        "receivedDateTime ge 2024-02-01T00:00:00Z and receivedDateTime lt 2024-02-08T00:00:00Z"
    )
    assert [m.subject for m in messages if predicate(m)] == [f"s{i}" for i in range(17, 24)]


# --------------------------------------------------------------------------- $orderby


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("receivedDateTime", [("receivedDateTime", False)]),
        ("receivedDateTime desc", [("receivedDateTime", True)]),
        ("receivedDateTime DESC", [("receivedDateTime", True)]),
        ("subject asc,receivedDateTime desc", [("subject", False), ("receivedDateTime", True)]),
        (
            " from/emailAddress/address  asc , isRead ",
            [("from/emailAddress/address", False), ("isRead", False)],
        ),
    ],
)
def test_parse_orderby(text: str, expected: list[tuple[str, bool]]) -> None:
    assert parse_orderby(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Expression expected at position 0"),
        ("subject sideways", "Syntax error at position 16"),
        ("subject desc desc", "Syntax error"),
        ("subject,", "Expression expected at position 8"),
        ("subject, ", "Expression expected"),
        (",subject", "Syntax error at position 0"),
        (
            "subject asc, Subject desc",
            "Duplicate property named 'Subject' is not supported in '$orderby'.",
        ),
        ("'subject'", "Syntax error"),
    ],
)
def test_parse_orderby_errors(text: str, message: str) -> None:
    err = raises(message, lambda: parse_orderby(text))
    assert (err.status, err.code) == (400, "BadRequest")


PASSING_ORDERBY = [
    # The example from the devblogs post on the rule.
    ("receivedDateTime ge 1900-01-01T00:00:00Z and from/emailAddress/address eq 'x@y'", "receivedDateTime desc"),
    ("receivedDateTime ge 1900-01-01T00:00:00Z and from/emailAddress/address eq 'x@y'", "receivedDateTime"),
    ("ReceivedDateTime ge 1900-01-01T00:00:00Z", "receivedDateTime desc"),
    ("receivedDateTime ge 2024-01-01T00:00:00Z and receivedDateTime lt 2024-02-01T00:00:00Z and isRead eq false", "receivedDateTime desc"),
    ("importance eq 'high' and receivedDateTime ge 1900-01-01T00:00:00Z and isRead eq false", "importance desc, receivedDateTime desc"),
    ("from/emailAddress/address eq 'x@y'", "from/emailAddress/address"),
    ("startswith(subject,'re') and isRead eq false", "subject"),
    (None, "subject desc"),
    (None, "receivedDateTime desc, importance"),
]  # fmt: skip

FAILING_ORDERBY = [
    ("from/emailAddress/address eq 'x@y'", "receivedDateTime desc"),
    ("inferenceClassification eq 'focused'", "receivedDateTime desc"),
    ("from/emailAddress/address eq 'x@y' and receivedDateTime ge 1900-01-01T00:00:00Z", "receivedDateTime desc"),
    ("receivedDateTime ge 1900-01-01T00:00:00Z and importance eq 'high'", "importance desc, receivedDateTime desc"),
    ("importance eq 'high'", "importance, receivedDateTime"),
    ("contains(subject,'x')", "receivedDateTime desc"),
    ("categories/any(c:c eq 'Red')", "receivedDateTime"),
]  # fmt: skip


@pytest.mark.parametrize(("filter_text", "orderby"), PASSING_ORDERBY)
def test_orderby_rule_passes(filter_text: str | None, orderby: str) -> None:
    expr = parse_filter(filter_text) if filter_text is not None else None
    check_message_orderby(parse_orderby(orderby), expr)


@pytest.mark.parametrize(("filter_text", "orderby"), FAILING_ORDERBY)
def test_orderby_rule_fails(filter_text: str, orderby: str) -> None:
    err = raises(
        "The restriction or sort order is too complex for this operation.",
        lambda: check_message_orderby(parse_orderby(orderby), parse_filter(filter_text)),
    )
    assert (err.status, err.code) == (400, "InefficientFilter")


def test_orderby_unknown_and_unsortable_properties() -> None:
    err = raises(
        "Could not find a property named 'bogus'",
        lambda: check_message_orderby([("bogus", False)], None),
    )
    assert err.code == "RequestBroker--ParseUri"
    err = raises(
        "does not support sorting", lambda: check_message_orderby([("bodyPreview", True)], None)
    )
    assert err.code == "ErrorInvalidProperty"


SORTABLE = [
    "receivedDateTime",
    "sentDateTime",
    "createdDateTime",
    "lastModifiedDateTime",
    "subject",
    "from/emailAddress/address",
    "from/emailAddress/name",
    "importance",
    "isRead",
    "hasAttachments",
    "isDraft",
]


@pytest.mark.parametrize("prop", SORTABLE)
def test_message_sort_keys_exist_for_sortable_properties(prop: str) -> None:
    key = message_sort_key(prop.upper())
    assert key(make_message()) <= key(make_message())


def test_message_sort_key_orders_like_graph() -> None:
    a = make_message(subject="beta", importance="high", is_read=True, received=RECEIVED)
    b = make_message(
        subject="Alpha", importance="low", is_read=False, received=RECEIVED + timedelta(days=1)
    )
    c = make_message(
        subject="gamma", importance="normal", sent=None, received=RECEIVED - timedelta(days=1)
    )
    items = [a, b, c]
    assert sorted(items, key=message_sort_key("subject")) == [b, a, c]
    assert sorted(items, key=message_sort_key("importance")) == [b, c, a]
    assert sorted(items, key=message_sort_key("receivedDateTime"), reverse=True) == [b, a, c]
    assert sorted(items, key=message_sort_key("isRead")) == [b, c, a]
    # A missing value sorts before every present one (and last when descending).
    assert sorted(items, key=message_sort_key("sentDateTime"))[0] is c
    sender = make_message(from_=EmailAddress("Zed", "aaa@x.com"))
    assert sorted([a, sender], key=message_sort_key("from/emailAddress/address")) == [sender, a]
    attached = make_message(attachments=[Attachment("1", "a.txt", "text/plain", b"x")])
    assert sorted([attached, a], key=message_sort_key("hasAttachments")) == [a, attached]


def test_multi_key_sort_the_way_the_http_layer_does_it() -> None:
    msgs = [
        make_message(subject=s, importance=i)
        for s, i in [("b", "high"), ("a", "low"), ("c", "high"), ("d", "low")]
    ]
    orderby = parse_orderby("importance desc, subject")
    for prop, descending in reversed(orderby):
        msgs.sort(key=message_sort_key(prop), reverse=descending)
    assert [m.subject for m in msgs] == ["b", "c", "a", "d"]


def test_user_orderby() -> None:
    users = [
        make_user(display_name="bob", user_principal_name="z@x"),
        make_user(display_name="Alice", user_principal_name="a@x"),
    ]
    assert [u.display_name for u in sorted(users, key=user_sort_key("DISPLAYNAME"))] == [
        "Alice",
        "bob",
    ]
    assert [u.display_name for u in sorted(users, key=user_sort_key("userPrincipalName"))] == [
        "Alice",
        "bob",
    ]
    raises("Sorting not supported for current query.", lambda: user_sort_key("mail"))
    check_user_orderby([("displayName", False)], has_filter=False, advanced=False)
    check_user_orderby([("displayName", False)], has_filter=True, advanced=True)
    err = raises(
        "Sorting not supported for current query.",
        lambda: check_user_orderby([("displayName", False)], has_filter=True, advanced=False),
    )
    assert err.code == "Request_UnsupportedQuery"


def test_message_model_round_trip_is_untouched() -> None:
    # Compiling and running filters never mutates the messages they look at.
    msg = make_message()
    snapshot = replace(msg)
    msg_filter("subject eq 'x' or categories/any(c:c eq 'Red category')")(msg)
    assert msg == snapshot


def test_offset_datetime_literals_compare_as_utc() -> None:
    tz = timezone(timedelta(hours=-5))
    msg = make_message(received=datetime(2024, 1, 15, 4, 0, tzinfo=tz).astimezone(UTC))
    assert msg_filter("receivedDateTime eq 2024-01-15T04:00:00-05:00")(msg)
    assert msg_filter("receivedDateTime eq 2024-01-15T09:00:00Z")(msg)
