"""extract_original (forward fidelity) and Outlook .msg reports (genuine .msg built in-test)."""

from __future__ import annotations

import builtins
from types import SimpleNamespace
from typing import Any

import pytest

from mailtrawl.analysis import filetypes
from mailtrawl.analysis.errors import ReportParseError
from mailtrawl.analysis.msg import message_to_mime
from mailtrawl.analysis.parsing import extract_original, parse_report, parse_reported_email
from tests.analysis.builders import PE_HEAD, SAMPLES, message
from tests.analysis.msgbuild import build_msg

ORIGINAL = (SAMPLES / "credential_phish.eml").read_bytes()
PHISH_HEADERS = (
    "Received: from out.evil.example ([198.51.100.9]) by mx.contoso.com; "
    "Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    "From: Billing <billing@paypa1.com>\r\nTo: bob@contoso.com\r\nSubject: Invoice due\r\n"
    "Authentication-Results: mx.contoso.com; spf=fail; dmarc=fail\r\n\r\n"
)


def test_forward_as_attachment_gives_the_original_and_the_reporter() -> None:
    report = message(
        sender="Bob Reporter <bob@contoso.com>",
        to="phishing@contoso.com",
        subject="Suspicious: Your account has been limited",
        text="Please look at this.",
        attached_emails=(ORIGINAL,),
    )
    unwrapped = extract_original(report)
    assert unwrapped.fidelity == "original"
    assert unwrapped.reporter is not None
    assert unwrapped.reporter.address == "bob@contoso.com"
    assert unwrapped.wrapper_subject == "Suspicious: Your account has been limited"
    parsed = parse_report(unwrapped.original)
    assert parsed.sender.address == "service@paypa1.com"
    assert parsed.auth.dmarc == "fail"
    assert parsed.received[0].from_ip == "198.51.100.23"


def test_microsoft_report_wrapper_with_eml_attachment() -> None:
    # The report button sends from the reporter and attaches the original as an .eml file.
    wrapper = message(
        sender="bob@contoso.com",
        to="reports@contoso.com",
        subject="Phish | Your account has been limited",
        text="This message was reported by bob@contoso.com",
        attachments=(("Your account has been limited.eml", "application/octet-stream", ORIGINAL),),
    )
    report, unwrapped = parse_reported_email(wrapper)
    assert unwrapped.fidelity == "original"
    assert report.fidelity == "original"
    assert unwrapped.reporter is not None
    assert unwrapped.reporter.address == "bob@contoso.com"
    assert report.subject == "Your account has been limited"


def test_inline_forward_is_the_message_itself_with_forward_fidelity() -> None:
    forward = message(
        sender="bob@contoso.com",
        subject="FW: Your account has been limited",
        text="---------- Forwarded message ---------\nFrom: PayPal <service@paypa1.com>\n...",
    )
    unwrapped = extract_original(forward)
    assert unwrapped.original == forward
    assert unwrapped.fidelity == "forward"
    assert unwrapped.reporter is not None
    assert unwrapped.reporter.address == "bob@contoso.com"
    report, _ = parse_reported_email(forward)
    assert report.fidelity == "forward"


def test_a_message_that_wraps_nothing_is_its_own_original() -> None:
    unwrapped = extract_original(ORIGINAL)
    assert (unwrapped.original, unwrapped.fidelity, unwrapped.reporter) == (
        ORIGINAL,
        "original",
        None,
    )


def test_genuine_msg_report_is_parsed_through_extract_msg() -> None:
    raw = build_msg(
        subject="Invoice due",
        sender="billing@paypa1.com",
        to="bob@contoso.com",
        body="Pay now at https://paypa1.com/pay",
        headers=PHISH_HEADERS,
        attachments=(("invoice.pdf.exe", "application/octet-stream", PE_HEAD),),
    )
    assert raw.startswith(b"\xd0\xcf\x11\xe0")
    report = parse_report(raw, filename="reported.msg")
    assert report.subject == "Invoice due"
    assert report.sender.address == "billing@paypa1.com"
    assert report.auth.spf == "fail"
    assert report.auth.dmarc == "fail"
    assert report.originating_ip == "198.51.100.9"
    assert [u.url for u in report.urls] == ["https://paypa1.com/pay"]
    (attachment,) = report.attachments
    assert attachment.name == "invoice.pdf.exe"
    assert attachment.sniffed_type == filetypes.PE
    assert report.size == len(raw)


def test_msg_attached_to_a_report_is_unwrapped() -> None:
    original = build_msg(
        subject="Invoice due",
        sender="billing@paypa1.com",
        to="bob@contoso.com",
        body="Pay now",
        headers=PHISH_HEADERS,
    )
    wrapper = message(
        sender="bob@contoso.com",
        subject="Report",
        attachments=(("Invoice due.msg", "application/vnd.ms-outlook", original),),
    )
    report, unwrapped = parse_reported_email(wrapper)
    assert unwrapped.fidelity == "original"
    assert report.subject == "Invoice due"
    assert report.sender.address == "billing@paypa1.com"


def test_msg_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def without_extract_msg(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "extract_msg" or name.startswith("extract_msg."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_extract_msg)
    raw = build_msg(subject="s", sender="a@b.example", to="c@d.example", body="x")
    with pytest.raises(ReportParseError, match=r"pip install 'mailtrawl\[msg\]'"):
        parse_report(raw)


def test_conversion_of_an_object_without_transport_headers() -> None:
    inner = SimpleNamespace(
        headerText=None,
        subject="Inner",
        sender="x@inner.example",
        to="y@contoso.com",
        cc=None,
        date=None,
        messageId=None,
        body="inner body",
        htmlBody=None,
        attachments=[],
    )
    outer = SimpleNamespace(
        headerText="",
        subject="Outer\r\nBcc: injected@evil.example",
        sender="Sender <s@evil.example>",
        to="bob@contoso.com",
        cc="",
        date=None,
        messageId="<id@evil.example>",
        body="text https://evil.example/x",
        htmlBody=b"<a href='https://evil.example/h'>h</a>",
        attachments=[
            SimpleNamespace(longFilename="a.txt", mimetype="text/plain", data=b"hello"),
            SimpleNamespace(longFilename="Inner.msg", mimetype=None, data=inner),
            SimpleNamespace(longFilename="broken.bin", mimetype=None, data=None),
        ],
    )
    mime, warnings = message_to_mime(outer)
    report = parse_report(mime)
    assert report.subject == "Outer Bcc: injected@evil.example"  # folded into one line
    assert not any(name.lower() == "bcc" for name, _ in report.headers)
    assert report.sender.address == "s@evil.example"
    assert {u.url for u in report.urls} >= {"https://evil.example/x", "https://evil.example/h"}
    names = [a.name for a in report.attachments]
    assert "a.txt" in names
    assert "Inner.msg" in names
    assert any("broken.bin" in w for w in warnings)
