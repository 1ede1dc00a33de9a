"""KQL `$search`: parsing (OData quoting, KQL grammar) and content-index matching semantics."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailtrawl.emulator.bodies import html_to_text
from mailtrawl.emulator.query import kql
from mailtrawl.emulator.query.kql import (
    AllOf,
    AnyOf,
    Negation,
    Term,
    compile_search,
    normalize,
    parse_search,
    tokenize,
)
from mailtrawl.emulator.query.odata import QueryError
from mailtrawl.emulator.state import Attachment, EmailAddress, Message

RECEIVED = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def make_message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "immutable_id": "imm-1",
        "rest_id": "rest-1",
        "folder_id": "folder-inbox",
        "internet_message_id": "<abc@contoso.com>",
        "subject": "Invoice overdue",
        "from_": EmailAddress("Alice Smith", "alice.smith@contoso.com"),
        "sender": None,
        "to": [EmailAddress("Bob Jones", "bob@fabrikam.com")],
        "cc": [EmailAddress("Carol White", "carol@sub.fabrikam.com")],
        "bcc": [EmailAddress("Dave", "dave@northwind.example")],
        "reply_to": [],
        "received": RECEIVED,
        "sent": RECEIVED - timedelta(hours=2),
        "body": "Please wire the payment today. Regards, Alice",
        "body_type": "text",
        "headers": [],
        "attachments": [],
    }
    fields.update(overrides)
    return Message(**fields)


def search(query: str) -> Callable[[Message], bool]:
    return compile_search(parse_search(query))


def matches(query: str, **overrides: Any) -> bool:
    return search(query)(make_message(**overrides))


def raises(text: str, call: Callable[[], object]) -> QueryError:
    with pytest.raises(QueryError) as info:
        call()
    assert text in info.value.message, info.value.message
    return info.value


# --------------------------------------------------------------------------- OData layer


def test_graph_error_for_unquoted_property_search() -> None:
    # The exact text Graph answered in jasonjoh/node-outlook #12.
    err = raises(
        "Syntax error: character ':' is not valid at position 4 in "
        "'from:noreply.ap@notification.ap.org'.",
        lambda: parse_search("from:noreply.ap@notification.ap.org"),
    )
    assert (err.status, err.code) == (400, "RequestBroker--ParseUri")


def test_graph_error_for_unquoted_digit() -> None:
    # msgraph-sdk-powershell #402: "Backup Config 0" fails at the digit.
    raises(
        "Syntax error: character '0' is not valid at position 14 in 'Backup Config 0'.",
        lambda: parse_search("Backup Config 0"),
    )


def test_unquoted_letters_only_are_accepted_like_graph() -> None:
    assert parse_search("Backup Config") == AllOf((Term("Backup"), Term("Config")))
    assert parse_search("pizza OR pasta") == AnyOf((Term("pizza"), Term("pasta")))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Expression expected at position 0 in ''."),
        ("   ", "Expression expected at position 0"),
        ('"abc', "There is an unterminated string literal at position 4 in '\"abc'."),
        ('"abc\\"', "unterminated string literal"),
        ("subject_x", "character '_' is not valid at position 7"),
        ('"a" + "b"', "character '+' is not valid at position 4"),
    ],
)
def test_odata_level_errors(value: str, message: str) -> None:
    err = raises(message, lambda: parse_search(value))
    assert err.code == "RequestBroker--ParseUri"


def test_escaped_quotes_and_backslashes_inside_the_value() -> None:
    expr = parse_search(r'"subject:\"Acme Corp\" body:a\\b"')
    assert expr == AllOf((Term("Acme Corp", "subject", phrase=True), Term("a\\b", "body")))


def test_several_quoted_strings_combine_with_odata_operators() -> None:
    expr = parse_search('"from:alice" OR ("subject:x" "body:y") NOT "z"')
    assert expr == AnyOf(
        (
            Term("alice", "from"),
            AllOf((AllOf((Term("x", "subject"), Term("y", "body"))), Negation(Term("z")))),
        )
    )


# --------------------------------------------------------------------------- KQL grammar


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"pizza"', Term("pizza")),
        (
            '"from:alice subject:invoice"',
            AllOf((Term("alice", "from"), Term("invoice", "subject"))),
        ),
        ('"a AND b"', AllOf((Term("a"), Term("b")))),
        ('"a b OR c"', AnyOf((AllOf((Term("a"), Term("b"))), Term("c")))),
        ('"a OR b c"', AnyOf((Term("a"), AllOf((Term("b"), Term("c")))))),
        ('"(a OR b) c"', AllOf((AnyOf((Term("a"), Term("b"))), Term("c")))),
        ('"NOT a b"', AllOf((Negation(Term("a")), Term("b")))),
        ('"NOT NOT a"', Negation(Negation(Term("a")))),
        ('"a -b"', AllOf((Term("a"), Negation(Term("b"))))),
        ('"+a"', Term("a")),
        ('"a and b or c not d"', AllOf(tuple(map(Term, ["a", "and", "b", "or", "c", "not", "d"])))),
        ('"\\"wire transfer\\""', Term("wire transfer", phrase=True)),
        ('"subject:\\"wire transfer\\""', Term("wire transfer", "subject", phrase=True)),
        ('"SUBJECT:x"', Term("x", "subject")),
        ('"HasAttachment:true"', Term("true", "hasattachments")),
        ('"hasAttachments:false"', Term("false", "hasattachments")),
        ('"attachments:x.pdf"', Term("x.pdf", "attachment")),
        ('"received>=2024-01-01"', Term("2024-01-01", "received", ">=")),
        ('"received<2024-02-01"', Term("2024-02-01", "received", "<")),
        ('"received<=2024-02-01"', Term("2024-02-01", "received", "<=")),
        ('"received>2024-02-01"', Term("2024-02-01", "received", ">")),
        ('"received=2024-02-01"', Term("2024-02-01", "received", "=")),
        ('"subject<>spam"', Term("spam", "subject", "<>")),
        ('"received:2024-01-01..2024-01-31"', Term("2024-01-01..2024-01-31", "received")),
        ('"subject:(a OR b)"', AnyOf((Term("a", "subject"), Term("b", "subject")))),
        ('"subject:(a from:b)"', AllOf((Term("a", "subject"), Term("b", "from")))),
        ('"foo:bar"', Term("foo:bar")),
        ('"foo>=3"', Term("foo>=3")),
        ('"foo:\\"x y\\""', Term("foo:x y")),
        ('"foo:(a)"', AllOf((Term("foo"), Term("a")))),
        ('"subject: invoice"', AllOf((Term("subject:"), Term("invoice")))),
        ('"subject:"', Term("subject:")),
        ('"http://evil.example/login"', Term("http://evil.example/login")),
        ('"from:a@b.com:x"', Term("a@b.com:x", "from")),
    ],
)
def test_kql_grammar(query: str, expected: object) -> None:
    assert parse_search(query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('""', "empty query"),
        ('"   "', "empty query"),
        ('"(a OR b"', "missing ')'"),
        ('"a OR b)"', "unexpected ')'"),
        ('"a OR"', "unexpected end of query"),
        ('"AND a"', "unexpected 'AND'"),
        ('"a AND OR b"', "unexpected 'OR'"),
        ('"NOT"', "unexpected end of query"),
        ('"()"', "unexpected ')'"),
        ('"subject:)"', "unexpected ')'"),
        ('"subject:\\"abc"', "unterminated phrase"),
    ],
)
def test_kql_syntax_errors(query: str, message: str) -> None:
    err = raises(message, lambda: parse_search(query))
    assert (err.status, err.code) == (400, "BadRequest")
    assert f"in '{query}'" in err.message


def test_kql_error_positions_point_into_the_raw_value() -> None:
    raises("at position 8: missing ')'", lambda: parse_search('"(a OR b"  '))
    raises("at position 6: unexpected ')'", lambda: parse_search('"a OR )"'))
    # An escaped quote takes two raw characters.
    raises("at position 10: unexpected ')'", lambda: parse_search(r'"\"x\" OR )"'))


def test_deep_nesting_is_a_query_error_not_recursion() -> None:
    ok = '"' + "(" * kql.MAX_DEPTH + "a" + ")" * kql.MAX_DEPTH + '"'
    assert parse_search(ok) == Term("a")
    raises("nesting deeper than 100", lambda: parse_search('"' + "(" * 101 + "a" + ")" * 101 + '"'))
    raises("nesting deeper", lambda: parse_search('"' + "(" * 50_000 + "a" + ")" * 50_000 + '"'))
    raises("nesting deeper", lambda: parse_search('"' + "NOT " * 5_000 + 'a"'))
    raises("nesting deeper", lambda: parse_search('"' + "-" * 5_000 + 'a"'))
    raises("nesting deeper", lambda: parse_search("(" * 500 + '"a"' + ")" * 500))


def test_long_flat_queries_compile_and_run() -> None:
    words = " OR ".join(f"w{i}" for i in range(5_000))
    predicate = search(f'"{words} OR invoice"')
    assert predicate(make_message())
    terms = " ".join(f"subject:s{i}" for i in range(3_000))
    assert not search(f'"{terms}"')(make_message())


def test_very_long_terms() -> None:
    word = "x" * 200_000
    assert matches(f'"{word}"', body=f"pre {word}suffix")
    assert not matches(f'"{word}"', body="x" * 1000)


def test_random_garbage_only_ever_raises_query_error() -> None:
    rng = random.Random(1234)
    alphabet = 'abcAND OR NOT()"\\:<>=-+*.@/ \t'
    for _ in range(2_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        for candidate in (value, f'"{value}"'):
            try:
                predicate = compile_search(parse_search(candidate))
            except QueryError:
                continue
            predicate(make_message())


# --------------------------------------------------------------------------- tokenization


def test_tokenize_splits_on_everything_but_letters_and_digits() -> None:
    assert tokenize("Re: INVOICE #4711 (wire_transfer) e-mail, naïve") == [
        "re", "invoice", "4711", "wire", "transfer", "e", "mail", "naïve",
    ]  # fmt: skip


def test_normalize_is_nfkc_and_casefold_keeping_diacritics() -> None:
    assert normalize("ＩＮＶＯＩＣＥ") == "invoice"  # fullwidth letters
    assert normalize("Straße") == "strasse"
    assert normalize("Café") == "café"
    assert normalize("ﬁle") == "file"  # ligature
    assert normalize("Cafe\u0301") == "café"  # combining accent composes


def test_cjk_runs_are_one_token() -> None:
    assert tokenize("請求書 invoice") == ["請求書", "invoice"]


# --------------------------------------------------------------------------- text matching


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"subject:invoice"', True),
        ('"subject:INVOIC"', True),  # prefix of a token
        ('"subject:voice"', False),  # not a substring search
        ('"subject:invoic*"', True),
        ('"subject:overdue"', True),
        ('"subject:\\"invoice overdue\\""', True),
        ('"subject:\\"invoice over\\""', True),  # last token of a phrase is a prefix
        ('"subject:\\"invoic overdue\\""', False),  # earlier tokens must be whole
        ('"subject:\\"overdue invoice\\""', False),  # order matters
        ('"subject:wire"', False),
        ('"body:wire"', True),
        ('"body:\\"wire the payment\\""', True),
        ('"body:\\"wire payment\\""', False),
        ('"body:invoice"', False),
        ('"body:regards"', True),
        ('"body:\\"today regards\\""', True),  # punctuation between tokens is ignored
        ('"body:!!!"', False),  # no tokens at all
        ('"subject:re"', False),
        ('"subject<>invoice"', False),
        ('"subject<>spam"', True),
        ('"subject>invoice"', False),  # relational operators mean nothing on text
    ],
)
def test_text_properties(query: str, expected: bool) -> None:
    assert matches(query) is expected


def test_bare_terms_search_from_subject_and_body_only() -> None:
    assert matches('"invoice"')  # subject
    assert matches('"payment"')  # body
    assert matches('"alice"')  # from display name
    assert matches('"alice.smith@contoso.com"')  # from address
    assert not matches('"bob"')  # a recipient: bare terms do not search to/cc/bcc
    assert not matches('"fabrikam"')


def test_token_start_found_after_rejected_overlapping_hits() -> None:
    assert matches('"body:\\"ab ab\\""', body="xab ab ab")
    assert not matches('"body:\\"ab ab\\""', body="xab ab")
    assert matches('"body:aa"', body="xaaa aab")
    assert matches('"body:wire"', body="wire")  # a hit at the very start
    assert not matches('"body:ire"', body="wire wire2")
    assert matches('"body:ire"', body="wire_ire2")  # "_" separates tokens
    assert matches('"body:ire2"', body="wire_ire2")


def test_multi_token_bare_terms_are_phrases() -> None:
    assert matches('"e-mail"', body="Send the E-Mail now")
    assert matches('"e-mail"', body="send e mail")
    assert not matches('"e-mail"', body="mail e")


def test_unknown_properties_search_the_whole_text() -> None:
    assert matches('"foo:bar"', body="the foo: bar thing")
    assert not matches('"foo:bar"', body="foo baz bar")
    assert matches('"http://evil.example/login"', body="go to http://evil.example/login?x=1 now")


def test_diacritics_are_kept_and_nfkc_applies() -> None:
    assert not matches('"cafe"', body="Meet at the café")
    assert matches('"café"', body="Meet at the CAFÉ")
    assert matches('"invoice"', body="ＩＮＶＯＩＣＥ attached")
    assert matches('"strasse"', body="Straße 1")
    assert not matches('"strasse"', body="Hauptstraße 1")  # tokens match from their start


def test_html_bodies_are_searched_as_visible_text() -> None:
    body = (
        "<html><head><title>secret title</title><style>.x{color:red}</style></head><body>"
        "<p>Pay the in<b>voice</b> today</p><div>caf&eacute; &amp; more</div>"
        "<script>var hidden = 'payload';</script><!-- comment words -->"
        "<a href='http://hidden.example/'>click</a><p>line</p><p>break</p></body></html>"
    )
    assert matches('"body:invoice"', body=body, body_type="html")  # inline tags join words
    assert matches('"body:café"', body=body, body_type="html")
    assert matches('"body:click"', body=body, body_type="html")
    assert matches('"body:\\"line break\\""', body=body, body_type="html")
    for hidden in ("secret", "color", "payload", "comment", "hidden", "href", "voice"):
        assert not matches(f'"body:{hidden}"', body=body, body_type="html"), hidden
    assert not matches('"body:linebreak"', body=body, body_type="html")  # block tags separate


HTML_SAMPLES = [
    "<p>Hello <b>wor</b>ld</p><p>next</p>",
    "<div>a<br>b<br/>c</div><table><tr><td>x</td><td>y</td></tr></table>",
    "<HTML><HEAD><TITLE>t</TITLE></HEAD><BODY><P>Upper&nbsp;Case &AMP; Co</P></BODY></HTML>",
    "no tags at all &lt;b&gt; &#72;ello &#x57;orld",
    "<script>if (a < b) { x = '</p>'; }</script>after",
    "<style>p{}</style><p>styled</p><!-- <p>hidden</p> -->visible",
    "a < b and c > d <img src='x.png' alt='alt text'> tail",
    "<ul><li>one</li><li>two</li></ul><h1>Head</h1><blockquote>quote</blockquote><hr>end",
    "<p>unclosed <i>italic",
    "<span>in</span><span>line</span> <em>em</em>phasis",
    "<p>Ünïcödé — “quotes” ｆｕｌｌ</p>",
]


@pytest.mark.parametrize("markup", HTML_SAMPLES)
def test_fast_html_text_has_the_same_tokens_as_html_to_text(markup: str) -> None:
    assert tokenize(kql._html_visible_text(markup)) == tokenize(html_to_text(markup))


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"from:alice.smith@contoso.com"', True),
        ('"from:ALICE.SMITH@CONTOSO.COM"', True),
        ('"from:smith@contoso.com"', False),  # full addresses must be equal
        ('"from:alice.smith@contoso.co"', False),
        ('"from:alice"', True),  # local part prefix
        ('"from:alice.sm"', True),
        ('"from:ali*"', True),
        ('"from:lice"', False),
        ('"from:contoso.com"', True),  # domain
        ('"from:CONTOSO.COM"', True),
        ('"from:toso.com"', False),
        ('"from:@contoso.com"', True),
        ('"from:@toso.com"', False),
        ('"from:Smith"', True),  # display name token
        ('"from:\\"Alice Smith\\""', True),
        ('"from:\\"Smith Alice\\""', False),
        ('"from:bob"', False),
        ('"to:bob"', True),
        ('"to:fabrikam.com"', True),
        ('"to:carol"', False),
        ('"cc:fabrikam.com"', True),  # parent domain of sub.fabrikam.com
        ('"cc:sub.fabrikam.com"', True),
        ('"cc:White"', True),
        ('"bcc:dave@northwind.example"', True),
        ('"bcc:bob"', False),
        ('"participants:alice"', True),
        ('"participants:dave"', True),
        ('"participants:nobody"', False),
        ('"recipients:alice"', False),
        ('"recipients:carol"', True),
        ('"recipients:northwind.example"', True),
        ('"from<>alice"', False),
        ('"to<>alice"', True),
    ],
)
def test_address_properties(query: str, expected: bool) -> None:
    assert matches(query) is expected


def test_lookalike_addresses_do_not_match() -> None:
    assert not matches('"from:alice@contoso.com"', from_=EmailAddress("", "malice@contoso.com"))
    assert not matches('"from:alice@contoso.com"', from_=EmailAddress("", "alice@contoso.com.evil"))
    assert not matches('"from:contoso.com"', from_=EmailAddress("", "x@contoso.com.evil"))
    assert matches('"from:contoso.com"', from_=EmailAddress("", "x@mail.contoso.com"))


def test_messages_without_from_or_recipients() -> None:
    assert not matches('"from:alice"', from_=None)
    assert not matches('"alice"', from_=None, subject="", body="")
    assert not matches('"to:bob"', to=[])


# --------------------------------------------------------------------------- attachments


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"attachment:invoice"', True),
        ('"attachment:invoice_2024.pdf"', True),
        ('"attachment:INVOICE_2024.PDF"', True),
        ('"attachment:2024"', True),
        ('"attachment:pdf"', True),
        ('"attachment:api-catalog.md"', True),
        ('"attachment:catalog"', True),
        ('"attachment:voice"', False),
        ('"attachment:report.docx"', False),
        ('"attachment:\\"payroll q1\\""', True),
        ('"attachment:payroll*"', True),
    ],
)
def test_attachment_names(query: str, expected: bool) -> None:
    attachments = [
        Attachment("1", "Invoice_2024.pdf", "application/pdf", b"%PDF"),
        Attachment("2", "api-catalog.md", "text/markdown", b"#"),
        Attachment("3", "payroll Q1.xlsx", "application/vnd.ms-excel", b"x"),
    ]
    assert matches(query, attachments=attachments) is expected


def test_attachment_whole_name_with_only_punctuation() -> None:
    att = [Attachment("1", "!!!", "text/plain", b"x")]
    assert matches('"attachment:!!!"', attachments=att)
    assert not matches('"attachment:!!!"')


# --------------------------------------------------------------------------- dates and flags


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"received:2024-01-15"', True),
        ('"received:2024-01-14"', False),
        ('"received:01/15/2024"', True),  # US month/day/year
        ('"received:1/15/2024"', True),
        ('"received:15/01/2024"', False),  # not a valid US date: matches nothing
        ('"received:2024/01/15"', True),
        ('"received:01-15-2024"', True),
        ('"received=2024-01-15"', True),
        ('"received>=2024-01-15"', True),
        ('"received>2024-01-15"', False),  # after that whole day
        ('"received>2024-01-14"', True),
        ('"received<2024-01-15"', False),
        ('"received<2024-01-16"', True),
        ('"received<=2024-01-15"', True),
        ('"received<=2024-01-14"', False),
        ('"received<>2024-01-15"', False),
        ('"received<>2024-01-16"', True),
        ('"received:2024-01-01..2024-01-31"', True),
        ('"received:2024-01-15..2024-01-15"', True),
        ('"received:2024-01-16..2024-01-31"', False),
        ('"received:2024-01-01..2024-01-14"', False),
        ('"received>=2024-01-01..2024-01-31"', False),  # a range only with ":"
        ('"received:2024-01-01..garbage"', False),
        ('"received:yesterday"', False),
        ('"received:2024-02-30"', False),
        ('"received>=2024-01-01 received<2024-02-01"', True),
        ('"sent:2024-01-15"', True),
        ('"sent:01/15/2024"', True),
        ('"sent>2024-01-15"', False),
    ],
)
def test_dates(query: str, expected: bool) -> None:
    assert matches(query) is expected


def test_date_edges_are_utc_days() -> None:
    late = datetime(2024, 1, 15, 23, 59, 59, tzinfo=UTC)
    assert matches('"received:2024-01-15"', received=late)
    assert not matches('"received:2024-01-15"', received=late + timedelta(seconds=1))
    assert matches('"received<2024-01-16"', received=late)


def test_missing_sent_date_never_matches() -> None:
    for query in ('"sent:2024-01-15"', '"sent<2099-01-01"', '"sent<>2024-01-15"'):
        assert not matches(query, sent=None)


def test_has_attachments() -> None:
    inline = Attachment("1", "logo.png", "image/png", b"x", is_inline=True)
    real = Attachment("2", "a.pdf", "application/pdf", b"x")
    assert matches('"hasAttachments:true"', attachments=[real])
    assert matches('"hasattachment:TRUE"', attachments=[inline, real])
    assert not matches('"hasAttachments:true"', attachments=[inline])
    assert matches('"hasAttachments:false"', attachments=[inline])
    assert not matches('"hasAttachments:false"', attachments=[real])
    assert not matches('"hasAttachments:maybe"', attachments=[real])
    assert not matches('"hasAttachments:maybe"')


@pytest.mark.parametrize(
    ("importance", "query", "expected"),
    [
        ("high", '"importance:high"', True),
        ("high", '"importance:HIGH"', True),
        ("normal", '"importance:medium"', True),
        ("normal", '"importance:normal"', True),
        ("low", '"importance:low"', True),
        ("low", '"importance:high"', False),
        ("high", '"importance:urgent"', False),
        ("high", '"importance<>high"', False),
    ],
)
def test_importance(importance: str, query: str, expected: bool) -> None:
    assert matches(query, importance=importance) is expected


def test_kind() -> None:
    assert matches('"kind:email"')
    assert matches('"kind:Email subject:invoice"')
    assert not matches('"kind:meetings"')
    assert not matches('"kind:voicemail"')


def test_size() -> None:
    mime = b"x" * 5000
    assert matches('"size:1..500000"', mime=mime)
    assert matches('"size>4999"', mime=mime)
    assert not matches('"size>5000"', mime=mime)
    assert matches('"size>=5000"', mime=mime)
    assert matches('"size:5000"', mime=mime)
    assert matches('"size<5001"', mime=mime)
    assert not matches('"size<5000"', mime=mime)
    assert not matches('"size:big"', mime=mime)
    att = [Attachment("1", "a.bin", "application/octet-stream", b"y" * 10_000)]
    assert matches('"size>10000"', attachments=att)


# --------------------------------------------------------------------------- boolean logic


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"from:alice subject:invoice"', True),
        ('"from:alice subject:refund"', False),
        ('"from:alice AND subject:refund"', False),
        ('"from:bob OR subject:invoice"', True),
        ('"from:bob OR subject:refund"', False),
        ('"NOT subject:refund"', True),
        ('"NOT subject:invoice"', False),
        ('"-subject:invoice"', False),
        ('"invoice -refund"', True),
        ('"(from:bob OR from:alice) AND NOT body:spam"', True),
        ('"subject:(refund OR overdue)"', True),
        ('"subject:(refund OR paid)"', False),
        ('"from:alice" OR "from:bob"', True),
        ('"from:bob" OR "to:alice"', False),
    ],
)
def test_boolean_combinations(query: str, expected: bool) -> None:
    assert matches(query) is expected


# --------------------------------------------------------------------------- laziness and speed


def test_only_referenced_fields_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(body: str, is_html: bool) -> str:
        raise AssertionError("the body was tokenized")

    monkeypatch.setattr(kql, "_body_text", boom)
    assert search('"subject:invoice from:alice"')(make_message())
    assert not search('"subject:refund"')(make_message())
    # Cheap fields are tested first, so a failing subject spares the body.
    assert not search('"body:payment subject:refund"')(make_message())
    assert search('"subject:invoice OR body:payment"')(make_message())
    with pytest.raises(AssertionError, match="tokenized"):
        search('"body:payment"')(make_message())


def test_each_field_is_normalised_once_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = kql._body_text.__wrapped__

    def counting(body: str, is_html: bool) -> str:
        calls.append(body)
        return real(body, is_html)

    monkeypatch.setattr(kql, "_body_text", counting)
    search('"body:a OR body:b OR body:c OR zzz"')(make_message())
    assert len(calls) == 1


def _html_body(rng: random.Random, words: list[str]) -> str:
    paragraphs = []
    size = 0
    while size < 2000:
        text = " ".join(rng.choice(words) for _ in range(12))
        para = f"<p style='margin:0'>{text} <b>{rng.choice(words)}</b> &amp; <a href='https://x.example/{size}'>link</a></p>"
        paragraphs.append(para)
        size += len(para)
    return (
        "<html><head><style>p{color:#333}</style></head><body>"
        + "".join(paragraphs)
        + "</body></html>"
    )


def test_body_search_over_many_html_bodies_finds_phrases_only_in_text() -> None:
    """Phrases match the text of HTML bodies, never tags or attributes (speed: make bench)."""
    rng = random.Random(7)
    words = [f"word{i}" for i in range(500)] + ["payment", "invoice", "urgent"]
    planted = {
        0: "<p>please send the wire <b>transfer</b> today</p>",  # across inline markup
        1: "<p>the transfer wire is late</p>",  # wrong order
        2: "<p><a title='wire transfer' href='https://x.example/'>link</a></p>",  # attribute
        3: "<p>WIRE</p><p>Transfer</p>",  # across block elements, other case
    }
    messages = []
    for i in range(300):
        body = _html_body(rng, words)
        if i % 10 in planted:
            body = body.replace("<body>", "<body>" + planted[i % 10], 1)
        messages.append(make_message(immutable_id=f"m{i}", body=body, body_type="html"))
    kql._body_text.cache_clear()
    predicate = search('"body:zebra OR body:\\"wire transfer\\""')
    found = {int(m.immutable_id[1:]) % 10 for m in messages if predicate(m)}
    assert found == {0, 3}
    assert not search('"body:style"')(messages[0])  # a tag attribute, not text


def test_body_text_cache_is_bounded() -> None:
    info = kql._body_text.cache_info()
    assert info.maxsize == kql.BODY_CACHE_SIZE
