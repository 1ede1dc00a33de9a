"""parse_report: headers, trace, authentication, links, attachments, archives, Office files."""

from __future__ import annotations

import hashlib

import pytest

from mailtrawl.analysis import filetypes
from mailtrawl.analysis.model import Address
from mailtrawl.analysis.parsing import ReportTooLarge, is_external_ip, parse_report
from tests.analysis.builders import PE_HEAD, SAMPLES, message, zip_bytes
from tests.analysis.cfb import build_cfb


def test_sample_phish_headers_trace_and_authentication() -> None:
    raw = (SAMPLES / "credential_phish.eml").read_bytes()
    report = parse_report(raw)
    assert report.sha256 == hashlib.sha256(raw).hexdigest()
    assert report.size == len(raw)
    assert report.subject == "Your account has been limited"
    assert report.sender == Address("service@paypa1.com", "PayPal Service")
    assert report.reply_to == (Address("paypal.support.desk@gmail.com"),)
    assert report.return_path == "bounce@paypa1-secure.example"
    assert report.message_id == "<20240102081500.1@paypa1.com>"
    assert [hop.from_ip for hop in report.received] == ["198.51.100.23", "192.168.1.20"]
    assert report.received[0].by_host == "mx1.contoso.com"
    assert report.received[0].when is not None
    assert report.received[0].when.hour == 8
    # The private hop is not external; the oldest external one is where the mail came from.
    assert report.originating_ip == "198.51.100.23"
    assert report.auth.spf == "fail"
    assert report.auth.dkim == "none"
    assert report.auth.dmarc == "fail"
    assert report.auth.compauth == "fail"
    assert report.auth.compauth_reason == "000"
    assert "paypa1.com" in report.domains
    assert "gmail.com" in report.domains
    assert "198.51.100.23" in report.ips
    assert "203.0.113.77" in report.ips


def test_links_are_unwrapped_and_anchor_mismatch_is_detected() -> None:
    report = parse_report((SAMPLES / "credential_phish.eml").read_bytes())
    by_url = {(u.url, u.source): u for u in report.urls}
    wrapped = by_url[("https://paypa1.com/signin/verify", "html")]
    assert wrapped.original.startswith("https://nam02.safelinks.protection.outlook.com/")
    assert wrapped.domain == "paypa1.com"
    assert wrapped.anchor_text == "https://www.paypal.com/signin"
    assert wrapped.anchor_mismatch is True
    ip_link = by_url[("http://203.0.113.77/login.php", "html")]
    assert ip_link.domain == "203.0.113.77"
    assert ip_link.anchor_mismatch is False  # "Check your activity" names no host
    assert ("https://www.paypal.com/signin", "text") in by_url
    assert not by_url[("https://www.paypal.com/signin", "text")].anchor_mismatch


def test_anchor_text_naming_the_same_registrable_domain_is_no_mismatch() -> None:
    html = '<a href="https://login.example.co.uk/x">www.example.co.uk</a> <a href="https://a.example/">file.pdf</a>'
    report = parse_report(message(text=None, html=html))
    assert report.urls
    assert not any(u.anchor_mismatch for u in report.urls)


def test_arc_and_received_spf_are_fallbacks() -> None:
    raw = message(
        headers={
            "ARC-Authentication-Results": "i=1; mx.example; dkim=pass header.d=x; dmarc=fail",
            "Received-SPF": "SoftFail (protection.outlook.com: domain does not designate)",
        }
    )
    report = parse_report(raw)
    assert (report.auth.spf, report.auth.dkim, report.auth.dmarc) == ("softfail", "pass", "fail")


def test_x_originating_ip_when_no_external_hop() -> None:
    raw = message(
        headers={
            "Received": "from [10.1.1.1] by internal.contoso.com; Mon, 1 Jan 2024 10:00:00 +0000",
            "X-Originating-IP": "[198.51.100.99]",
        }
    )
    assert parse_report(raw).originating_ip == "198.51.100.99"
    assert not is_external_ip("127.0.0.1")
    assert not is_external_ip("fd00::1")
    assert is_external_ip("8.8.8.8")


def test_attachment_hashes_sniffing_and_double_extension() -> None:
    raw = message(attachments=(("invoice.pdf.exe", "application/pdf", PE_HEAD),))
    (attachment,) = parse_report(raw).attachments
    assert attachment.name == "invoice.pdf.exe"
    assert attachment.declared_type == "application/pdf"
    assert attachment.sniffed_type == filetypes.PE
    assert attachment.size == len(PE_HEAD)
    assert attachment.md5 == hashlib.md5(PE_HEAD).hexdigest()  # noqa: S324
    assert attachment.sha1 == hashlib.sha1(PE_HEAD).hexdigest()  # noqa: S324
    assert attachment.sha256 == hashlib.sha256(PE_HEAD).hexdigest()
    assert attachment.sha512 == hashlib.sha512(PE_HEAD).hexdigest()
    assert attachment.content == PE_HEAD


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x7fELF\x02\x01", filetypes.ELF),
        (b"\xcf\xfa\xed\xfe\x07", filetypes.MACHO),
        (b"%PDF-1.7\n", filetypes.PDF),
        (b"Rar!\x1a\x07\x01\x00", filetypes.RAR),
        (b"7z\xbc\xaf\x27\x1c\x00\x04", filetypes.SEVEN_ZIP),
        (b"\x00" * 0x8001 + b"CD001", filetypes.ISO),
        (b"  <!DOCTYPE html><html>", filetypes.HTML),
        (b"#!/bin/sh\necho", filetypes.SHELL_SCRIPT),
        (bytes.fromhex("4c0000000114020000000000c000000000000046") + b"\0" * 8, filetypes.LNK),
        (bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3") + b"\0", filetypes.ONENOTE),
        (b"MSCF\0\0\0\0", filetypes.CAB),
        (b"\x1f\x8b\x08\x00", filetypes.GZIP),
        (b"just some words", filetypes.TEXT),
    ],
)
def test_sniffing_by_magic(data: bytes, expected: str) -> None:
    assert filetypes.sniff(data) == expected


def test_zip_members_are_listed_hashed_and_flagged_encrypted() -> None:
    archive = zip_bytes(
        {"docs/readme.txt": b"hello", "run.exe": PE_HEAD, "secret.docx": b"x" * 50},
        encrypted={"secret.docx"},
    )
    report = parse_report(message(attachments=(("files.zip", "application/zip", archive),)))
    top, *members = report.attachments
    assert top.sniffed_type == filetypes.ZIP
    assert top.encrypted
    by_name = {m.name: m for m in members}
    assert set(by_name) == {"docs/readme.txt", "run.exe", "secret.docx"}
    exe = by_name["run.exe"]
    assert exe.sniffed_type == filetypes.PE
    assert exe.container == "files.zip"
    assert exe.depth == 1
    assert exe.sha256 == hashlib.sha256(PE_HEAD).hexdigest()
    assert by_name["secret.docx"].encrypted
    assert by_name["secret.docx"].sha256 == ""


def test_nested_zip_is_opened_to_the_depth_limit() -> None:
    inner = zip_bytes({"payload.js": b"WScript.Echo(1)"})
    outer = zip_bytes({"inner.zip": inner})
    report = parse_report(message(attachments=(("outer.zip", "application/zip", outer),)))
    names = {(a.name, a.container, a.depth) for a in report.attachments}
    assert ("payload.js", "outer.zip/inner.zip", 2) in names


def test_ooxml_with_vba_project_has_macros() -> None:
    docm = zip_bytes(
        {
            "[Content_Types].xml": b"<Types/>",
            "word/document.xml": b"<w:document/>",
            "word/vbaProject.bin": b"\xd0\xcf\x11\xe0",
        }
    )
    report = parse_report(message(attachments=(("report.docm", "application/octet-stream", docm),)))
    (attachment,) = report.attachments  # the document's parts are not listed as attachments
    assert attachment.has_macros
    assert attachment.sniffed_type.endswith("wordprocessingml.document")


def test_ole2_word_document_with_vba_storage_has_macros() -> None:
    doc = build_cfb(
        {"WordDocument": b"w" * 5000, "Macros/VBA/ThisDocument": b"Attribute VB_Name" * 20}
    )
    clean = build_cfb({"WordDocument": b"w" * 5000})
    encrypted = build_cfb({"EncryptedPackage": b"e" * 5000, "EncryptionInfo": b"i" * 100})
    report = parse_report(
        message(
            attachments=(
                ("macro.doc", "application/msword", doc),
                ("clean.doc", "application/msword", clean),
                ("locked.docx", "application/octet-stream", encrypted),
            )
        )
    )
    macro, plain, locked = report.attachments
    assert macro.sniffed_type == "application/msword"
    assert macro.has_macros
    assert plain.sniffed_type == "application/msword"
    assert not plain.has_macros
    assert locked.encrypted
    assert not locked.has_macros


def test_urls_inside_html_attachments_and_attached_emails() -> None:
    page = (
        b'<html><form action="https://harvest.example/post"><input type="password"></form></html>'
    )
    inner = message(sender="x@inner.example", text="see https://inner-link.example/a")
    report = parse_report(
        message(attachments=(("scan.html", "text/html", page),), attached_emails=(inner,))
    )
    attachment_urls = {u.url for u in report.urls if u.source == "attachment"}
    assert "https://harvest.example/post" in attachment_urls
    assert "https://inner-link.example/a" in attachment_urls


def test_too_large_is_refused() -> None:
    with pytest.raises(ReportTooLarge, match="more than the 100 allowed"):
        parse_report(b"x" * 101, max_bytes=100)


def test_msg_named_file_that_is_mime_gets_a_warning() -> None:
    report = parse_report(message(), filename="report.msg")
    assert any("not an Outlook item" in w for w in report.warnings)
