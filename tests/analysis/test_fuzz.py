"""Fuzzing parse_report + analyze over MIME structure, transfer encodings, charsets and headers:
no input may raise anything but ReportTooLarge / ReportParseError."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailtrawl.analysis.errors import ReportParseError
from mailtrawl.analysis.model import AnalysisContext
from mailtrawl.analysis.parsing import extract_original, parse_report
from mailtrawl.analysis.service import analyze

CONTEXT = AnalysisContext(own_domains=("contoso.com",), colleague_names=("Jane Smith",))
HEADER_NAMES = st.sampled_from(
    ["From", "To", "Reply-To", "Subject", "Received", "Authentication-Results", "Return-Path",
     "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "X-PHISHTEST",
     "Message-ID", "Date", "X-Originating-IP", "ARC-Authentication-Results", "Received-SPF"]
)  # fmt: skip
TOKENS = st.sampled_from(
    [b"=?utf-8?B?", b"=?iso-8859-1?Q?", b"?=", b"=0D=0A", b"\r\n", b"\r", b"\n", b"\n ",
     b"<", b">", b"@", b'"', b";", b"boundary=", b"multipart/mixed", b"message/rfc822",
     b"text/html", b"base64", b"quoted-printable", b"charset=", b"x-unknown", b"spf=fail",
     b"dkim=pass", b"dmarc=fail", b"from [203.0.113.5]", b"by mx", b"<a href=", b"http://",
     b"xn--80ak6aa92e.com", b"\xff\xfe", b"\x00", b"PK\x03\x04", b"MZ", b"\xd0\xcf\x11\xe0",
     b"filename=", b"a.exe", b"--", b"==", b"\t"]
)  # fmt: skip
FRAGMENT = st.one_of(TOKENS, st.binary(max_size=40))
HEADER_VALUE = st.lists(FRAGMENT, max_size=12).map(b"".join)


@st.composite
def mime_parts(draw: st.DrawFn, depth: int = 0) -> bytes:
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUE), max_size=6))
    kind = draw(
        st.sampled_from(["leaf", "leaf", "multipart", "rfc822"]) if depth < 3 else st.just("leaf")
    )
    lines = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers)
    if kind == "multipart":
        boundary = draw(st.sampled_from([b"b1", b"b2", b"", b"--", b"x y"]))
        children = draw(st.lists(mime_parts(depth + 1), max_size=3))
        body = b"".join(b"--" + boundary + b"\r\n" + child + b"\r\n" for child in children)
        body += draw(st.sampled_from([b"--" + boundary + b"--\r\n", b""]))
        lines += b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n"
    elif kind == "rfc822":
        body = draw(mime_parts(depth + 1))
        lines += b"Content-Type: message/rfc822\r\n"
    else:
        encoding = draw(st.sampled_from([b"base64", b"quoted-printable", b"8bit", b"x-weird"]))
        lines += b"Content-Transfer-Encoding: " + encoding + b"\r\n"
        body = draw(st.lists(FRAGMENT, max_size=20).map(b"".join))
    return lines + draw(st.sampled_from([b"\r\n", b"\n", b""])) + body


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(raw=mime_parts())
def test_parse_and_analyze_never_raise(raw: bytes) -> None:
    try:
        report = parse_report(raw)
        unwrapped = extract_original(raw)
    except ReportParseError:  # includes ReportTooLarge: the only allowed refusals
        return
    assert unwrapped.fidelity in ("original", "forward")
    result = asyncio.run(analyze(report, context=CONTEXT))
    assert 0 <= result.score <= 100
    assert not any(i.kind == "engine.error" for i in result.indicators), result.warnings
