"""Hostile reports: each gives a ParsedReport with a warning (or a quick refusal), never a crash."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

from mailtrawl.analysis.archives import ArchiveLimits, inspect_zip
from mailtrawl.analysis.model import AnalysisContext
from mailtrawl.analysis.parsing import parse_report
from mailtrawl.analysis.service import analyze
from tests.analysis.builders import message


def _zip_of_zeros(total: int) -> bytes:
    buffer = io.BytesIO()
    chunk = bytes(8 * 1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(total // len(chunk)):
            member.write(chunk)
    return buffer.getvalue()


def test_deeply_nested_multiparts() -> None:
    depth = 1_000
    head = (
        b"From: a@b.example\r\nSubject: nest\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    )
    body = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    raw = head + body + b"--b1000\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    started = time.perf_counter()
    report = parse_report(raw)
    assert time.perf_counter() - started < 10
    assert report.subject == "nest"
    assert report.warnings  # too deep / too many parts, recorded


@pytest.mark.slow
def test_huge_base64_line_is_refused_quickly_and_within_memory() -> None:
    # In a child process so its peak memory is measured alone.
    script = textwrap.dedent(
        """
        import base64, resource, sys, time
        from mailtrawl.analysis.errors import ReportTooLarge
        from mailtrawl.analysis.parsing import parse_report
        line = b"QUFB" * (100 * 1024 * 1024 // 4)
        raw = (b"From: a@b.example\\r\\nContent-Type: application/octet-stream\\r\\n"
               b"Content-Transfer-Encoding: base64\\r\\n\\r\\n" + line)
        started = time.perf_counter()
        try:
            parse_report(raw)
            outcome = "parsed"
        except ReportTooLarge:
            outcome = "refused"
        elapsed = time.perf_counter() - started
        del raw, line
        small = (b"From: a@b.example\\r\\nSubject: big\\r\\nContent-Type: application/octet-stream\\r\\n"
                 b"Content-Transfer-Encoding: base64\\r\\n\\r\\n" + b"QUFB" * (20 * 1024 * 1024 // 4))
        report = parse_report(small)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(outcome, round(elapsed, 3), report.attachments[0].size, round(peak_mb))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    outcome, elapsed, size, peak_mb = done.stdout.split()
    assert outcome == "refused"
    assert float(elapsed) < 1
    assert int(size) == 15 * 1024 * 1024  # a 20 MB base64 line within the limit still parses
    assert int(peak_mb) < 300


@pytest.mark.slow
def test_zip_bomb_gives_a_warning_not_a_blow_up() -> None:
    bomb = _zip_of_zeros(1024 * 1024 * 1024)
    assert len(bomb) < 8 * 1024 * 1024
    started = time.perf_counter()
    report = parse_report(message(attachments=(("bomb.zip", "application/zip", bomb),)))
    assert time.perf_counter() - started < 5
    _top, member = report.attachments
    assert any("decompression bomb" in w for w in report.warnings)
    assert member.name == "zeros.bin"
    assert member.sha256 == ""
    result = __import__("asyncio").run(analyze(report, context=AnalysisContext()))
    assert "attachment.archive_bomb" in {i.kind for i in result.indicators}


def test_member_and_total_read_limits_stop_streaming() -> None:
    archive = _zip_of_zeros(64 * 1024 * 1024)
    # A ratio limit high enough to let the member through: the byte limits must stop it.
    limits = ArchiveLimits(max_ratio=1_000_000, max_member_bytes=8 * 1024 * 1024)
    listing = inspect_zip(archive, "big.zip", limits)
    (member,) = listing.members
    assert not member.complete
    assert member.digests is None
    assert member.content is None
    assert member.size <= 8 * 1024 * 1024 + 256 * 1024
    assert "reading stopped" in listing.warnings[0]
    budget = ArchiveLimits(max_ratio=1_000_000, max_total_bytes=1024 * 1024)
    assert "reading stopped" in inspect_zip(archive, "big.zip", budget).warnings[0]


def test_many_member_zip_is_not_opened() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(300):
            archive.writestr(f"f{n}.txt", b"")
    listing = inspect_zip(buffer.getvalue(), "many.zip", ArchiveLimits(max_declared_members=100))
    assert listing.members == []
    assert "declares 300 members" in listing.warnings[0]


def test_header_injection_is_flagged() -> None:
    raw = (
        b"From: a@b.example\r\n"
        b"Subject: =?utf-8?q?Hello=0D=0ABcc=3A_victim=40contoso=2Ecom?=\r\n"
        b"X-Note: one\rInjected: two\r\n"
        b"\r\nbody\r\n"
    )
    report = parse_report(raw)
    assert "\n" not in report.subject
    assert "\r" not in report.subject
    assert not any(name.lower() == "bcc" for name, _ in report.headers)
    assert any("header injection" in w for w in report.warnings)


def test_malformed_rfc2047_and_unknown_charsets() -> None:
    raw = (
        b"From: =?utf-8?B?!!!notbase64?= <a@b.example>\r\n"
        b"Subject: =?x-unknown-charset?Q?caf=E9?= =?utf-8?Q?broken\r\n"
        b"Content-Type: text/plain; charset=x-klingon\r\n"
        b"\r\nbody \xff\xfe bytes\r\n"
    )
    report = parse_report(raw)
    assert report.sender.address == "a@b.example"
    assert "body" in report.text
    assert report.warnings
