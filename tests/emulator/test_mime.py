"""RFC 822 parsing and synthesis, as Exchange exposes mail through Graph."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from datetime import UTC, datetime

import pytest

from mailtrawl.emulator.mime import (
    MAX_ATTACHMENTS,
    MAX_DEPTH,
    MimeError,
    content_type_for,
    conversation_id_for,
    decode_rfc2047,
    message_from_rfc822,
    parse_rfc822,
    rfc822_from_message,
)
from mailtrawl.emulator.state import (
    Attachment,
    EmailAddress,
    Mailbox,
    Message,
    graph_id,
    new_mailbox,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n1 0 obj\n<</Type/Catalog>>\nendobj\ntrailer\n<</Root 1 0 R>>\n%%EOF\n"


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def parse(raw: bytes, received: datetime | None = None) -> tuple[Message, Mailbox]:
    box = new_mailbox("user-1")
    msg = message_from_rfc822(raw, box=box, folder_id=box.well_known["inbox"], received=received)
    return msg, box


RICH = crlf(
    f"""Received: from EXCH2.contoso.com (10.0.0.2) by EXCH1.contoso.com with HTTPS;
 Tue, 14 May 2024 09:12:40 +0000
Received: from mail.fabrikam.com (mail.fabrikam.com [198.51.100.7])
\tby EXCH2.contoso.com with ESMTPS; Tue, 14 May 2024 09:12:33 +0000
From: =?utf-8?q?Ren=C3=A9e_Dupont?= <renee@fabrikam.com>
Sender: Assistant <assistant@fabrikam.com>
To: "Smith, Anna" <anna@contoso.com>, bob@contoso.com
Cc: =?iso-8859-1?q?J=F6rg_M=FCller?= <joerg@contoso.com>
Reply-To: replies@fabrikam.com
Subject: =?utf-8?B?UXVhcnRhbHNiZXJpY2h0IMO8YmVyIGRhcyBKYWhy?=
 =?utf-8?B?IOKAkyBGaW5hbA==?=
Date: Tue, 14 May 2024 11:12:30 +0200
Message-ID: <CAF1234@mail.fabrikam.com>
Importance: high
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

This is a multi-part message in MIME format.
--mixed
Content-Type: multipart/related; boundary="rel"; type="multipart/alternative"

--rel
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Plain rendition that Graph does not show.
--alt
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body><p>Sch=C3=B6ne Gr=C3=BC=C3=9Fe</p><img src=3D"cid:logo@fabrikam"></body></html>
--alt--

--rel
Content-Type: image/png; name="logo.png"
Content-Disposition: inline; filename="logo.png"
Content-ID: <logo@fabrikam>
Content-Transfer-Encoding: base64

{base64.b64encode(PNG).decode()}
--rel--

--mixed
Content-Type: application/pdf; name="=?utf-8?q?Rechnung_M=C3=A4rz.pdf?="
Content-Disposition: attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf
Content-Transfer-Encoding: base64

{base64.b64encode(PDF).decode()}
--mixed--
"""
)


def test_multipart_alternative_with_attachments_and_inline_image() -> None:
    msg, box = parse(RICH)
    assert msg.subject == "Quartalsbericht über das Jahr – Final"
    assert msg.from_ == EmailAddress("Renée Dupont", "renee@fabrikam.com")
    assert msg.sender == EmailAddress("Assistant", "assistant@fabrikam.com")
    assert msg.to == [
        EmailAddress("Smith, Anna", "anna@contoso.com"),
        EmailAddress("", "bob@contoso.com"),
    ]
    assert msg.cc == [EmailAddress("Jörg Müller", "joerg@contoso.com")]
    assert msg.reply_to == [EmailAddress("", "replies@fabrikam.com")]
    assert msg.body_type == "html"
    assert "Schöne Grüße" in msg.body
    assert "Plain rendition" not in msg.body
    assert msg.sent == datetime(2024, 5, 14, 9, 12, 30, tzinfo=UTC)
    # The newest (topmost) Received header is the delivery time.
    assert msg.received == datetime(2024, 5, 14, 9, 12, 40, tzinfo=UTC)
    assert msg.internet_message_id == "<CAF1234@mail.fabrikam.com>"
    assert msg.importance == "high"
    assert msg.mime == RICH
    assert not msg.is_read
    assert not msg.is_draft
    assert msg.created == msg.last_modified == msg.received
    names = [(a.name, a.content_type, a.is_inline, a.content_id) for a in msg.attachments]
    assert names == [
        ("logo.png", "image/png", True, "logo@fabrikam"),
        ("Rechnung März.pdf", "application/pdf", False, None),
    ]
    assert msg.attachments[0].content == PNG
    assert msg.attachments[1].content == PDF
    assert msg.has_attachments
    assert [a.id for a in msg.attachments] == [
        graph_id(msg.immutable_id, "att", i, prefix=b"AAMkAGAT") for i in range(2)
    ]
    assert box.messages == {}  # the caller adds it


def test_headers_are_unfolded_raw_values_in_order() -> None:
    msg, _ = parse(RICH)
    names = [n for n, _ in msg.headers]
    assert names[:3] == ["Received", "Received", "From"]
    assert names.count("Received") == 2
    values = dict(msg.headers)
    # Unfolded, RFC 2047 words left encoded, exactly as in the message.
    assert values["Subject"] == (
        "=?utf-8?B?UXVhcnRhbHNiZXJpY2h0IMO8YmVyIGRhcyBKYWhy?= =?utf-8?B?IOKAkyBGaW5hbA==?="
    )
    assert msg.headers[1][1] == (
        "from mail.fabrikam.com (mail.fabrikam.com [198.51.100.7])\tby EXCH2.contoso.com "
        "with ESMTPS; Tue, 14 May 2024 09:12:33 +0000"
    )
    assert all("\r" not in v and "\n" not in v for _, v in msg.headers)


def test_received_argument_wins_and_ids_come_from_the_box() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    box = new_mailbox("user-1")
    first = message_from_rfc822(RICH, box=box, folder_id="f", received=when)
    second = message_from_rfc822(RICH, box=box, folder_id="f", received=when)
    assert first.received == when
    assert first.immutable_id != second.immutable_id
    again = new_mailbox("user-1")
    assert message_from_rfc822(RICH, box=again, folder_id="f").immutable_id == first.immutable_id


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("=?UTF-8?B?w4Rw ZmVs?=", "=?UTF-8?B?w4Rw ZmVs?="),  # not a valid encoded word
        ("=?UTF-8?B?w4RwZmVs?=", "Äpfel"),
        ("=?utf-8?q?caf=C3=A9_cr=C3=A8me?=", "café crème"),
        ("=?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=", "Grüße aus München"),
        ("=?iso-8859-1?b?R3L832U=?=", "Grüße"),
        ("Re: =?utf-8?q?Caf=C3=A9?= meeting", "Re: Café meeting"),
        # A multi-byte character split across two words survives.
        ("=?utf-8?B?4oI=?= =?utf-8?B?rA==?=", "€"),
        ("=?utf-8?q?a?=   =?utf-8?q?b?=", "ab"),
        ("=?x-unknown?q?caf=C3=A9?=", "café"),
        ("=?utf-8?B?!!!bad base64?=", "=?utf-8?B?!!!bad base64?="),
        ("=?utf-8?B?w4RwZmVs", "=?utf-8?B?w4RwZmVs"),  # unterminated
        ("=?punycode?q?abc?=", "abc"),  # refused codec, falls back to UTF-8
        ("=?utf-8*en?q?hello?=", "hello"),  # RFC 2231 language tag
    ],
)
def test_rfc2047_decoding(header: str, expected: str) -> None:
    assert decode_rfc2047(header) == expected


@pytest.mark.parametrize(
    ("subject_header", "expected"),
    [
        ("=?UTF-8?B?8J+TniBOZXcgdm9pY2VtYWls?=", "📞 New voicemail"),
        (
            "=?utf-8?Q?Gehaltsanpassung_2024_=E2=80=93_bitte_best=C3=A4tigen?=",
            "Gehaltsanpassung 2024 – bitte bestätigen",
        ),
        ("=?ISO-8859-1?Q?Facture_impay=E9e_n=B0_4821?=", "Facture impayée n° 4821"),
        ("Plain\r\n  folded subject", "Plain  folded subject"),
    ],
)
def test_subjects_are_decoded_and_unfolded(subject_header: str, expected: str) -> None:
    raw = crlf(f"From: a@example.com\nSubject: {subject_header}\n\nbody\n")
    msg, _ = parse(raw)
    assert msg.subject == expected


def test_quoted_printable_soft_break_inside_url() -> None:
    url = "https://login.m1crosoft-support.com/owa/reset?session=8f3a9c2d7e6b5a4f3e2d1c0b9a8f7e6d&u=anna"
    html = f'<html><body><p>Reset now: <a href="{url}">Keep my password</a></p></body></html>'
    encoded = html.replace("=", "=3D")
    # Break the line in the middle of the URL, as a 76-column QP encoder does.
    cut = encoded.index("reset?")
    qp_body = encoded[:cut] + "=\n" + encoded[cut:]
    raw = crlf(
        "From: alerts@m1crosoft-support.com\nTo: anna@contoso.com\nSubject: x\nMIME-Version: 1.0\n"
        "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
        + qp_body
        + "\n"
    )
    assert url.encode() not in raw
    msg, _ = parse(raw)
    assert msg.body_type == "html"
    assert url in msg.body
    assert msg.attachments == []


def test_html_only_and_text_only() -> None:
    html_raw = crlf(
        "From: news@example.com\nSubject: News\nContent-Type: text/html; charset=utf-8\n\n<p>Hi</p>\n"
    )
    msg, _ = parse(html_raw)
    assert (msg.body_type, msg.body.strip()) == ("html", "<p>Hi</p>")
    text_raw = crlf("From: a@example.com\nSubject: Plain\n\nJust text.\n")
    msg, _ = parse(text_raw)
    assert (msg.body_type, msg.body.strip()) == ("text", "Just text.")
    assert not msg.has_attachments


def test_forwarded_message_becomes_an_item_attachment() -> None:
    inner = crlf(
        f"""From: "Microsoft 365 Security" <alerts@m1crosoft-support.com>
To: anna@contoso.com
Subject: =?utf-8?q?Action_required=3A_password_expires?=
Message-ID: <phish-1@m1crosoft-support.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="inner"

--inner
Content-Type: text/plain

Click here.
--inner
Content-Type: application/pdf; name="notice.pdf"
Content-Disposition: attachment; filename="notice.pdf"
Content-Transfer-Encoding: base64

{base64.b64encode(PDF).decode()}
--inner--
"""
    )
    outer = (
        crlf(
            """From: Anna Smith <anna@contoso.com>
To: security@contoso.com
Subject: FW: Action required: password expires
Message-ID: <fw-1@contoso.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain; charset=utf-8

Is this legit?
--outer
Content-Type: message/rfc822
Content-Disposition: attachment

"""
        )
        + inner
        + b"\r\n--outer--\r\n"
    )
    msg, _ = parse(outer)
    assert msg.body.strip() == "Is this legit?"
    assert len(msg.attachments) == 1  # the inner PDF is not a top-level attachment
    item = msg.attachments[0]
    assert item.kind == "item"
    assert item.content_type == "message/rfc822"
    assert item.name == "Action required: password expires"
    reparsed, _ = parse(item.content)
    assert reparsed.internet_message_id == "<phish-1@m1crosoft-support.com>"
    assert reparsed.from_ == EmailAddress("Microsoft 365 Security", "alerts@m1crosoft-support.com")
    assert [a.content for a in reparsed.attachments] == [PDF]


def test_base64_encoded_attached_message_is_decoded() -> None:
    inner = crlf("From: x@example.com\nSubject: Inner one\n\nhello\n")
    raw = crlf(
        "From: a@example.com\nSubject: outer\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: message/rfc822\n"
        "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(inner).decode() + "--b--\n"
    )
    msg, _ = parse(raw)
    assert msg.attachments[0].kind == "item"
    assert msg.attachments[0].name == "Inner one"
    assert msg.attachments[0].content == inner


def test_missing_message_id_is_generated_like_exchange() -> None:
    raw = crlf("From: a@example.com\nSubject: no id\n\nbody\n")
    first, _ = parse(raw)
    second, _ = parse(raw)
    assert re.fullmatch(
        r"<[A-Z0-9]+@[A-Z0-9]+\.namprd\d\d\.prod\.outlook\.com>", first.internet_message_id
    )
    assert first.internet_message_id == second.internet_message_id
    other, _ = parse(raw + b"more\r\n")
    assert other.internet_message_id != first.internet_message_id


def test_message_id_without_brackets_gets_them() -> None:
    msg, _ = parse(crlf("From: a@example.com\nMessage-ID: abc@example.com\n\nx\n"))
    assert msg.internet_message_id == "<abc@example.com>"


@pytest.mark.parametrize(
    ("charset", "payload", "expected"),
    [
        ("x-bogus-charset", "Grüße".encode(), "Grüße"),
        ("utf-8", "Grüße".encode("latin-1"), "Grüße"),  # mislabelled Latin-1
        ("us-ascii", "café".encode(), "café"),
        ("punycode", b"abc-xyz", "abc-xyz"),
        ("iso-8859-1", b"\x80 price", "€ price"),  # Windows-1252, as mail clients read it
        ('"utf-8"', "ok ✓".encode(), "ok ✓"),
    ],
)
def test_broken_and_odd_charsets(charset: str, payload: bytes, expected: str) -> None:
    raw = (
        crlf(f"From: a@example.com\nSubject: c\nContent-Type: text/plain; charset={charset}\n")
        + b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + payload
        + b"\r\n"
    )
    msg, _ = parse(raw)
    assert msg.body.strip() == expected


def test_raw_8bit_headers_are_read_as_utf8() -> None:
    raw = "From: Jürgen Groß <j@example.de>\r\nSubject: Grüße\r\n\r\nx\r\n".encode()
    msg, _ = parse(raw)
    assert msg.subject == "Grüße"
    assert msg.from_ == EmailAddress("Jürgen Groß", "j@example.de")
    assert dict(msg.headers)["Subject"] == "Grüße"


def test_bad_base64_attachment_does_not_raise() -> None:
    raw = crlf(
        "From: a@example.com\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nhi\n"
        "--b\nContent-Type: application/octet-stream; name=x.bin\nContent-Transfer-Encoding: base64\n\n"
        "!!!not*base64@@@===\nQUJD\n--b--\n"
    )
    msg, _ = parse(raw)
    assert msg.attachments[0].name == "x.bin"
    assert isinstance(msg.attachments[0].content, bytes)


def test_importance_and_conversation() -> None:
    raw = crlf("From: a@example.com\nSubject: RE: Budget 2025\nX-Priority: 5 (Lowest)\n\nx\n")
    msg, _ = parse(raw)
    assert msg.importance == "low"
    assert msg.conversation_id == conversation_id_for("Budget 2025")
    assert conversation_id_for("FW: RE: budget 2025") == conversation_id_for("Budget 2025")
    assert conversation_id_for("Budget 2026") != conversation_id_for("Budget 2025")


def test_undisclosed_recipients_and_missing_headers() -> None:
    msg, _ = parse(crlf("From: a@example.com\nTo: undisclosed-recipients:;\n\nx\n"))
    assert msg.to == []
    assert msg.subject == ""
    assert msg.sent == msg.received


# --------------------------------------------------------------------------- hostile input


def nested_multipart(depth: int) -> bytes:
    out = [b"From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"]
    out += [
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    ]
    out.append(b"Content-Type: text/plain\r\n\r\ndeepest\r\n")
    out += [b"--b%d--\r\n" % i for i in reversed(range(depth))]
    return b"".join(out)


@pytest.mark.parametrize("depth", [MAX_DEPTH - 2, 2000, 20000])
def test_deeply_nested_multiparts_are_bounded(depth: int) -> None:
    raw = nested_multipart(depth)
    started = time.perf_counter()
    msg, _ = parse(raw)
    assert time.perf_counter() - started < 5
    assert msg.subject == "deep"
    if depth < MAX_DEPTH:
        assert msg.body.strip() == "deepest"


def test_deeply_nested_attached_messages_are_bounded() -> None:
    raw = b"From: a@example.com\r\nSubject: outer\r\n" + (
        b"Content-Type: message/rfc822\r\n\r\nSubject: level\r\n" * 5000
    )
    msg, _ = parse(raw)
    assert msg.subject == "outer"
    assert len(msg.attachments) == 1
    assert msg.attachments[0].kind == "item"


def test_nested_comments_in_content_type_do_not_recurse() -> None:
    raw = crlf(
        "From: a@example.com\nSubject: parens\nContent-Type: text/plain; "
        + "(" * 5000
        + "\nContent-Disposition: attachment; "
        + "(" * 5000
        + "\nContent-Transfer-Encoding: "
        + "(" * 5000
        + "\n\nhello\n"
    )
    msg, _ = parse(raw)
    assert msg.subject == "parens"


def test_nested_comments_in_address_headers() -> None:
    raw = crlf("From: " + "(" * 5000 + "a@example.com\nTo: (" * 3 + "b@example.com\n\nx\n")
    msg, _ = parse(raw)
    assert msg.subject == ""


def test_huge_header_lines_are_bounded() -> None:
    raw = crlf(
        "From: a@example.com\nSubject: "
        + "A" * 2_000_000
        + "\nX-Long: "
        + "b " * 500_000
        + "\n\nx\n"
    )
    started = time.perf_counter()
    msg, _ = parse(raw)
    assert time.perf_counter() - started < 5
    assert 0 < len(msg.subject) <= 16 * 1024
    assert all(len(v) <= 32 * 1024 for _, v in msg.headers)


def test_many_parts_are_bounded() -> None:
    parts = "".join(
        f"--b\nContent-Type: application/octet-stream; name=f{i}.bin\n\nx\n" for i in range(3000)
    )
    raw = crlf(
        "From: a@example.com\nSubject: many\nContent-Type: multipart/mixed; boundary=b\n\n"
        + parts
        + "--b--\n"
    )
    msg, _ = parse(raw)
    assert len(msg.attachments) == MAX_ATTACHMENTS


def test_header_injection_in_encoded_words_stays_in_one_header() -> None:
    raw = crlf(
        "From: =?utf-8?q?Eve=0D=0ABcc=3A_victim=40example.com?= <eve@example.com>\n"
        "Subject: =?utf-8?q?hello=0D=0ABcc=3A_victim=40example.com?=\n\nbody\n"
    )
    msg, _ = parse(raw)
    assert "\n" not in msg.subject
    assert "\r" not in msg.subject
    assert msg.from_ is not None
    assert "\n" not in msg.from_.name
    assert msg.bcc == []
    msg.mime = None
    out = rfc822_from_message(msg)
    reparsed, _ = parse(out)
    assert reparsed.bcc == []
    assert not any(line.lower().startswith(b"bcc:") for line in out.split(b"\r\n"))


@pytest.mark.parametrize(
    "raw", [b"", b"   \r\n\r\n", b"\x00\x01\x02 binary garbage without headers"]
)
def test_nothing_parseable_raises_mime_error(raw: bytes) -> None:
    with pytest.raises(MimeError):
        parse(raw)


def test_oversized_input_raises_mime_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailtrawl.emulator.mime as mime

    monkeypatch.setattr(mime, "MAX_MIME_BYTES", 100)
    with pytest.raises(MimeError):
        parse(b"Subject: x\r\n\r\n" + b"a" * 200)


def test_bare_cr_line_endings_and_nul_bytes() -> None:
    raw = b"From: a@example.com\rSubject: cr only\r\rbody\x00text\r"
    msg, _ = parse(raw)
    assert msg.subject == "cr only"


# --------------------------------------------------------------------------- synthesis


def structured_message() -> Message:
    box = new_mailbox("user-2")
    immutable, rest = box.new_item_ids()
    inner = crlf(
        "From: x@evil.example\nSubject: =?utf-8?q?Inner_=E2=9C=93?=\nMessage-ID: <in@x>\n\nInner body\n"
    )
    return Message(
        immutable_id=immutable,
        rest_id=rest,
        folder_id="f",
        internet_message_id="<structured-1@contoso.com>",
        subject='Größenänderung, "quoted" =?not-encoded?= – ✓',
        from_=EmailAddress("Zoë Ångström", "zoe@contoso.com"),
        sender=EmailAddress("Zoë Ångström", "zoe@contoso.com"),
        to=[EmailAddress("Smith, Anna", "anna@contoso.com"), EmailAddress("", "bob@contoso.com")],
        cc=[EmailAddress("José", "jose@fabrikam.com")],
        bcc=[],
        reply_to=[EmailAddress("", "replies@contoso.com")],
        received=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
        sent=datetime(2024, 5, 1, 7, 59, 30, tzinfo=UTC),
        body='<html><body><p>Hello <a href="https://contoso.sharepoint.com/sites/x?a=1&b=2">docs</a></p>'
        + "<p>"
        + "long line " * 40
        + '</p><img src="cid:img1"></body></html>',
        body_type="html",
        headers=[
            ("Received", "from a by b with HTTPS; Wed, 01 May 2024 08:00:00 +0000"),
            ("X-Custom", "Wert mit Umlaut ä"),
            ("Content-Type", "text/plain"),  # structural: replaced by the real structure
        ],
        attachments=[
            Attachment(
                "a1",
                'Übersicht "Q2".xlsx',
                "application/vnd.ms-excel",
                b"PK\x03\x04" + bytes(range(256)),
            ),
            Attachment("a2", "image001.png", "image/png", PNG, is_inline=True, content_id="img1"),
            Attachment("a3", "Inner ✓", "message/rfc822", inner, kind="item"),
        ],
        importance="high",
    )


def test_round_trip_of_a_structured_message() -> None:
    original = structured_message()
    raw = rfc822_from_message(original)
    assert raw.isascii() or b"\r\n\r\n" in raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()  # non-ASCII headers are RFC 2047 encoded
    back, _ = parse(raw)
    assert back.subject == original.subject
    assert back.from_ == original.from_
    assert back.to == original.to
    assert back.cc == original.cc
    assert back.reply_to == original.reply_to
    assert back.body == original.body
    assert back.body_type == "html"
    assert back.sent == original.sent
    assert back.received == original.received  # from the kept Received header
    assert back.internet_message_id == original.internet_message_id
    assert back.importance == "high"
    # Inline parts come first in the MIME (multipart/related), so compare regardless of order.
    assert sorted(
        (a.name, a.content, a.kind, a.is_inline, a.content_id) for a in back.attachments
    ) == sorted(
        (a.name, a.content, a.kind, a.is_inline, a.content_id) for a in original.attachments
    )
    assert dict(back.headers)["X-Custom"] == "=?utf-8?q?Wert_mit_Umlaut_=C3=A4?="
    assert [n for n, _ in back.headers][:2] == ["Received", "X-Custom"]


def test_round_trip_text_and_no_attachments() -> None:
    msg = structured_message()
    msg.body, msg.body_type, msg.attachments, msg.headers = (
        "Line one\r\nLine two ✓\r\n",
        "text",
        [],
        [],
    )
    raw = rfc822_from_message(msg)
    assert b"Content-Type: text/plain" in raw
    back, _ = parse(raw)
    assert back.body == msg.body
    assert back.body_type == "text"


def test_synthesis_is_deterministic_and_honours_declared_structure() -> None:
    msg = structured_message()
    assert rfc822_from_message(msg) == rfc822_from_message(structured_message())
    msg.attachments = []
    msg.headers = [("Content-Type", content_type_for(msg, html_only=True))]
    raw = rfc822_from_message(msg)
    assert b'Content-Type: text/html; charset="utf-8"' in raw
    msg.headers = [("Content-Type", content_type_for(msg))]
    declared = content_type_for(msg)
    assert declared.startswith("multipart/alternative")
    assert f"Content-Type: {declared}".encode() in rfc822_from_message(msg)


def test_stored_mime_is_returned_verbatim() -> None:
    msg, _ = parse(RICH)
    assert rfc822_from_message(msg) is msg.mime


def test_synthesis_refuses_header_injection_from_fields() -> None:
    msg = structured_message()
    msg.subject = "hi\r\nBcc: evil@example.com"
    msg.attachments[0].name = 'bad"\r\nContent-Type: text/html'
    msg.attachments[0].content_type = "text/plain\r\nX-Injected: 1"
    raw = rfc822_from_message(msg)
    lines = raw.split(b"\r\n")
    assert not any(line.lower().startswith((b"bcc:", b"x-injected:")) for line in lines)
    back, _ = parse(raw)
    assert back.bcc == []
    injected = next(a for a in back.attachments if a.name.startswith("bad"))
    assert injected.content_type == "application/octet-stream"
    assert "\n" not in injected.name


def test_item_attachment_bytes_survive_round_trip() -> None:
    msg, _ = parse(RICH)
    inner = rfc822_from_message(msg)
    outer = structured_message()
    outer.attachments = [Attachment("x", "whatever", "message/rfc822", inner, kind="item")]
    back, _ = parse(rfc822_from_message(outer))
    item = back.attachments[0]
    assert item.name == msg.subject
    assert hashlib.sha256(item.content).digest() == hashlib.sha256(inner).digest()


def test_parse_rfc822_is_pure() -> None:
    assert parse_rfc822(RICH) == parse_rfc822(RICH)
