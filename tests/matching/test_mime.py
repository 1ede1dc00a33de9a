"""Parsing raw, hostile email: never raises, records what was wrong."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailtrawl.matching.mime import MailParseError, ParsedEmail, parse_email


def test_headers_addresses_and_rfc2047_subject() -> None:
    raw = (
        b"Received: from x ([203.0.113.5]) by y\r\n"
        b"From: =?utf-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.com>\r\n"
        b"Sender: bounce@example.com\r\n"
        b'To: "Doe, Jane" <jane@example.org>, bob@example.org\r\n'
        b"To: carol@example.org\r\n"
        b"Cc: undisclosed-recipients:;\r\n"
        b"Bcc: =?iso-8859-1?q?Ren=E9?= <rene@example.org>\r\n"
        b"Reply-To: <reply@evil.example>\r\n"
        b"Subject: =?UTF-8?B?w5xiZXJ3ZWlzdW5n?= =?ISO-8859-1?Q?f=E4llig_heute?=\r\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0200\r\n"
        b"Message-ID: <abc@example.com>\r\n"
        b"\r\n"
        b"Hello\r\n"
    )
    email = parse_email(raw)
    assert email.subject == "Überweisungfällig heute"
    assert email.from_ == ("Jürgen Müller", "juergen@example.com")
    assert email.sender == ("", "bounce@example.com")
    assert email.to == (
        ("Doe, Jane", "jane@example.org"),
        ("", "bob@example.org"),
        ("", "carol@example.org"),
    )
    assert email.cc == ()
    assert email.bcc == (("René", "rene@example.org"),)
    assert email.reply_to == (("", "reply@evil.example"),)
    assert email.date == datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=2)))
    assert email.message_id == "<abc@example.com>"
    assert email.headers[0] == ("Received", "from x ([203.0.113.5]) by y")
    assert email.headers[-1] == ("Message-ID", "<abc@example.com>")
    assert email.text == "Hello\r\n"
    assert email.html is None
    assert email.attachments == ()


def test_rfc2047_q_subject_in_latin1_and_raw_utf8_headers() -> None:
    raw = (
        b"Subject: =?ISO-8859-1?Q?Rechnung_f=FCr_M=E4rz?=\n"
        b"From: M\xc3\xbcller <m@example.com>\n"
        b"X-Raw: caf\xe9\n\nx"
    )
    email = parse_email(raw)
    assert email.subject == "Rechnung für März"
    assert email.from_ == ("Müller", "m@example.com")
    assert email.headers[2] == ("X-Raw", "caf\ufffd")


def test_unknown_date_zone_is_utc_and_bad_date_is_none() -> None:
    assert parse_email(b"Date: Mon, 1 Jan 2024 10:00:00 -0000\n\nx").date == datetime(
        2024, 1, 1, 10, tzinfo=UTC
    )
    assert parse_email(b"Date: someday\n\nx").date is None


def test_html_only_body() -> None:
    raw = (
        b"Content-Type: text/html; charset=utf-8\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(b"<p>Sch\xc3\xb6n</p>")
    )
    email = parse_email(raw)
    assert email.text is None
    assert email.html == "<p>Schön</p>"


def test_quoted_printable_soft_line_breaks_are_joined() -> None:
    raw = (
        b"Content-Type: text/plain; charset=iso-8859-1\n"
        b"Content-Transfer-Encoding: quoted-printable\n\n"
        b"Go to https://evil.example/very/long/pa=\n"
        b"th?x=3D1 now =E4\n"
    )
    assert parse_email(raw).text == "Go to https://evil.example/very/long/path?x=1 now ä\n"


MULTIPART = (
    b"From: a@example.com\n"
    b"Subject: outer\n"
    b'Content-Type: multipart/mixed; boundary="outer"\n\n'
    b"--outer\n"
    b'Content-Type: multipart/alternative; boundary="alt"\n\n'
    b"--alt\n"
    b"Content-Type: text/plain\n\nplain body\n"
    b"--alt\n"
    b"Content-Type: text/html\n\n<p>html body</p>\n"
    b"--alt--\n"
    b"--outer\n"
    b"Content-Type: image/png\n"
    b"Content-Disposition: inline; filename=logo.png\n"
    b"Content-Transfer-Encoding: base64\n\n"
    b"iVBORw0KGgo=\n"
    b"--outer\n"
    b"Content-Type: message/rfc822\n\n"
    b"Subject: inner forwarded\n"
    b"From: evil@example.net\n\n"
    b"inner body http://evil.example/\n"
    b"--outer\n"
    b"Content-Type: application/octet-stream; name=x.eml\n"
    b"Content-Disposition: attachment; filename=x.eml\n"
    b"Content-Transfer-Encoding: base64\n\n"
    + base64.encodebytes(b"Subject: attached eml\nFrom: b@example.org\n\neml body\n")
    + b"--outer\n"
    b"Content-Type: application/pdf\n"
    b"Content-Disposition: attachment; filename*=utf-8''%C3%BCber.pdf\n\n"
    b"%PDF\n"
    b"--outer--\n"
)


def test_multipart_with_attachments_and_attached_emails() -> None:
    email = parse_email(MULTIPART)
    assert email.subject == "outer"
    assert email.text == "plain body"
    assert email.html == "<p>html body</p>"
    assert [(a.name, a.content_type, a.is_inline) for a in email.attachments] == [
        ("logo.png", "image/png", True),
        ("inner forwarded", "message/rfc822", False),
        ("x.eml", "application/octet-stream", False),
        ("über.pdf", "application/pdf", False),
    ]
    logo = email.attachments[0]
    assert logo.content == b"\x89PNG\r\n\x1a\n"
    assert logo.size == 8
    assert b"Subject: inner forwarded" in email.attachments[1].content
    assert [e.subject for e in email.attached_emails] == ["inner forwarded", "attached eml"]
    inner, eml = email.attached_emails
    assert inner.from_ == ("", "evil@example.net")
    assert inner.text == "inner body http://evil.example/"
    assert eml.text == "eml body\n"
    assert email.defects == ()


def test_broken_base64_is_decoded_leniently() -> None:
    raw = b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nSGVsbG8g!!V29ybGQ\n"
    email = parse_email(raw)
    assert email.text == "Hello World"
    assert any("Base64" in defect for defect in email.defects)


def test_unknown_charset_falls_back_to_utf8() -> None:
    raw = b"Content-Type: text/plain; charset=x-unknown\n\nna\xc3\xafve \xff\n"
    email = parse_email(raw)
    assert email.text == "naïve \ufffd\n"
    assert "unknown charset 'x-unknown'; read as UTF-8" in email.defects


def test_missing_boundary_is_read_as_text() -> None:
    raw = b"Content-Type: multipart/mixed\n\n--b\nContent-Type: text/plain\n\nhidden text\n--b--\n"
    email = parse_email(raw)
    assert email.text is not None
    assert "hidden text" in email.text
    assert "NoBoundaryInMultipartDefect" in email.defects


def test_broken_boundaries_never_raise() -> None:
    raw = b'Content-Type: multipart/mixed; boundary="b"\n\nno start boundary at all, just text\n'
    email = parse_email(raw)
    assert any("Boundary" in defect for defect in email.defects)
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nunclosed'
    )
    assert parse_email(raw).text == "unclosed"


def _nested(levels: int) -> bytes:
    message = b"Subject: level %d\n\nbottom\n" % levels
    for level in range(levels - 1, -1, -1):
        message = b"Subject: level %d\nContent-Type: message/rfc822\n\n" % level + message
    return message


def test_nesting_bomb_stops_at_max_depth() -> None:
    email = parse_email(_nested(6))
    chain = [email]
    while chain[-1].attached_emails:
        chain.append(chain[-1].attached_emails[0])
    assert [e.subject for e in chain] == ["level 0", "level 1", "level 2", "level 3"]
    assert chain[-1].defects == ("an email attached more than 3 levels deep was not parsed",)
    assert [a.content_type for a in chain[-1].attachments] == ["message/rfc822"]
    assert len(parse_email(_nested(6), max_depth=0).attached_emails) == 0


def test_thousands_of_nested_parts_keep_the_headers() -> None:
    raw = b"Subject: deep\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(5_000)
    )
    email = parse_email(raw)
    assert email.subject == "deep"
    assert email.defects[0] == "MIME structure nested too deeply; only the headers were parsed"


def test_part_budget() -> None:
    parts = b"".join(b"--b\nContent-Type: text/plain\n\npart %d\n" % i for i in range(20))
    raw = b'Content-Type: multipart/mixed; boundary="b"\n\n' + parts + b"--b--\n"
    email = parse_email(raw, max_parts=5)
    assert email.text == "part 0\npart 1\npart 2\npart 3"
    assert "too many MIME parts; the rest were not parsed" in email.defects


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage without headers",
        b"From: " + b"(" * 5_000 + b"a@b\n\nx",
        b"Message-ID: " + b"<" * 1_000 + b"\n\nx",
        b"To: " + b"a." * 10_000 + b"@example.com\n\nx",
        b"Content-Type: text/plain; charset=" + b"x" * 10_000 + b"\n\nx",
        b'Content-Type: text/plain; charset="utf-8\x00"\n\nx',
        b"Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n#86)C\n`\nend\n",
        b"Content-Type: (((((((((((\n\nx",
        b"Content-Disposition: attachment; filename*=bogus''%ZZ%\n\nx",
        b"Subject: =?utf-8?B?!!!?= =?bogus?Q?x?=\n\nx",
        b"Content-Type: message/rfc822\n\n",
    ],
)
def test_hostile_input_never_raises(raw: bytes) -> None:
    assert isinstance(parse_email(raw), ParsedEmail)


def test_long_address_header_is_scanned_for_addresses() -> None:
    raw = b"From: " + b"(" * 20_000 + b" evil@example.com\n\nx"
    email = parse_email(raw)
    assert email.from_ == ("", "evil@example.com")
    assert any("longer than 8192" in defect for defect in email.defects)


def test_malformed_from_takes_the_bracketed_address_not_one_in_the_display_name() -> None:
    # The display name spoofs a colleague's address; the parser gives up on the header.
    for raw in (
        b"From: victim@contoso.com <evil@attacker.example>\n\nx",
        b"From: IT Desk victim@contoso.com <evil@attacker.example>\n\nx",
    ):
        email = parse_email(raw)
        assert email.from_ == ("", "evil@attacker.example"), raw
    # A well-formed header keeps its display name.
    email = parse_email(b'From: "victim@contoso.com" <evil@attacker.example>\n\nx')
    assert email.from_ == ("victim@contoso.com", "evil@attacker.example")


def test_size_limit() -> None:
    with pytest.raises(MailParseError, match="more than the 10 allowed"):
        parse_email(b"Subject: x\n\n0123456789", max_bytes=10)
    assert isinstance(MailParseError("x"), ValueError)
