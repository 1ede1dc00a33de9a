"""The built-in offline engines, each on messages built to trigger (or not trigger) it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mailtrawl.analysis.domains import find_lookalike, registrable_domain, skeleton
from mailtrawl.analysis.engines import (
    AttachmentRiskEngine,
    LookalikeDomainEngine,
    SenderAuthenticationEngine,
    SimulationEngine,
    UrlHeuristicsEngine,
)
from mailtrawl.analysis.model import AnalysisContext, Engine, Indicator, Verdict
from mailtrawl.analysis.parsing import parse_report
from tests.analysis.builders import PE_HEAD, SAMPLES, message, zip_bytes

pytestmark = pytest.mark.anyio
CONTOSO = AnalysisContext(own_domains=("contoso.com",), colleague_names=("Jane Smith",))


async def run(
    engine: Engine, raw: bytes, context: AnalysisContext = CONTOSO
) -> dict[str, Indicator]:
    found: Sequence[Indicator] = await engine.analyze(parse_report(raw), context)
    return {i.kind: i for i in found}


async def test_authentication_failures_and_own_domain_spoof() -> None:
    raw = message(
        sender="IT <it@contoso.com>",
        headers={
            "Authentication-Results": "mx.contoso.com; spf=fail smtp.mailfrom=contoso.com; "
            "dkim=none; dmarc=fail header.from=contoso.com; compauth=fail reason=000"
        },
    )
    kinds = await run(SenderAuthenticationEngine(), raw)
    assert {"auth.spf_fail", "auth.dmarc_fail", "auth.compauth_fail"} <= set(kinds)
    spoof = kinds["sender.own_domain_spoof"]
    assert spoof.verdict is Verdict.PHISHING
    assert "contoso.com" in spoof.evidence


async def test_passing_internal_mail_has_no_sender_findings() -> None:
    raw = message(
        sender="Jane Smith <jane@contoso.com>",
        headers={"Authentication-Results": "mx.contoso.com; spf=pass; dkim=pass; dmarc=pass"},
    )
    assert await run(SenderAuthenticationEngine(), raw) == {}


async def test_colleague_display_name_from_outside_and_reply_to_freemail() -> None:
    raw = message(
        sender='"Smith, Jane" <jane.smith.ceo@outside.example>',
        headers={"Reply-To": "ceo.jane@gmail.com", "Return-Path": "<b@bulk.example>"},
    )
    kinds = await run(SenderAuthenticationEngine(), raw)
    spoof = kinds["sender.display_name_spoof"]
    assert spoof.verdict is Verdict.PHISHING
    assert "Jane Smith" in spoof.evidence
    assert kinds["sender.reply_to_divergence"].verdict is Verdict.SUSPICIOUS
    assert kinds["sender.return_path_divergence"].score == 10


async def test_display_name_holding_another_address() -> None:
    raw = message(sender='"security@paypal.com" <x@evil.example>')
    kinds = await run(SenderAuthenticationEngine(), raw)
    assert "security@paypal.com" in kinds["sender.display_name_address"].evidence


@pytest.mark.parametrize(
    ("host", "how"),
    [
        ("paypa1.com", "homoglyph"),
        ("xn--pypal-4ve.com", "homoglyph"),  # Cyrillic а
        ("rnicrosoft.com", "homoglyph"),
        ("microsoft-login.example", "embedded"),
        ("paypal.com.account-check.example", "embedded"),
        ("dropboxx.com", "edit_distance"),
    ],
)
def test_brand_lookalikes(host: str, how: str) -> None:
    found = find_lookalike(host)
    assert found is not None
    assert found.how == how


@pytest.mark.parametrize(
    "host",
    [
        "www.paypal.com",
        "login.microsoftonline.com",
        "amazon.de",
        "groups.example",
        "stream.example",
    ],
)
def test_real_and_unrelated_domains_are_not_lookalikes(host: str) -> None:
    assert find_lookalike(host) is None


def test_own_domain_lookalikes() -> None:
    own = ("contoso.com",)
    assert find_lookalike("contoso.co", own).how == "other_suffix"  # type: ignore[union-attr]
    assert find_lookalike("c0ntoso.com", own).how == "homoglyph"  # type: ignore[union-attr]
    assert find_lookalike("contosso.com", own).how == "edit_distance"  # type: ignore[union-attr]
    assert find_lookalike("mail.contoso.com", own) is None
    assert skeleton("ｃｏｎｔｏｓｏ") == skeleton("contoso")  # full-width letters
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"


async def test_lookalike_engine_on_sender_and_links() -> None:
    raw = message(
        sender="PayPal <service@paypa1.com>",
        html='<a href="https://contoso-benefits.example/x">benefits</a>',
        text=None,
    )
    kinds = await run(LookalikeDomainEngine(), raw)
    brand = kinds["lookalike.brand.homoglyph"]
    assert brand.verdict is Verdict.PHISHING
    assert "From" in brand.evidence
    assert "lookalike.own_domain.embedded" in kinds


async def test_url_heuristics_on_the_sample_phish() -> None:
    kinds = await run(UrlHeuristicsEngine(), (SAMPLES / "credential_phish.eml").read_bytes())
    assert kinds["url.anchor_mismatch"].value == "https://paypa1.com/signin/verify"
    assert "www.paypal.com" in kinds["url.anchor_mismatch"].evidence
    assert kinds["url.ip_host"].value == "http://203.0.113.77/login.php"
    # The message asks to sign in, so sign-in paths count as credential harvesting.
    assert kinds["url.credential_path"].verdict is Verdict.SUSPICIOUS


async def test_url_heuristics_shortener_tld_punycode_data_uri_redirect() -> None:
    html = (
        '<a href="https://bit.ly/abc">a</a> <a href="https://free-prizes.tk/">b</a>'
        '<a href="https://xn--80ak6aa92e.com/">c</a> <a href="data:text/html;base64,PGh0bWw+">d</a>'
        '<a href="https://redirect.example/r?to=https://evil.example/x">e</a>'
    )
    kinds = await run(UrlHeuristicsEngine(), message(text=None, html=html))
    assert {
        "url.shortener",
        "url.suspicious_tld",
        "url.punycode",
        "url.data_uri",
        "url.redirect",
    } <= set(kinds)


async def test_many_links_of_one_kind_make_one_indicator() -> None:
    html = "".join(f'<a href="http://198.51.100.{n}/x">l</a>' for n in range(1, 30))
    found = await UrlHeuristicsEngine().analyze(
        parse_report(message(text=None, html=html)), CONTOSO
    )
    (ip,) = [i for i in found if i.kind == "url.ip_host"]
    assert ip.evidence.startswith("29 links with a raw IP address as host: e.g. http")


async def test_benign_newsletter_triggers_nothing() -> None:
    raw = (SAMPLES / "benign_newsletter.eml").read_bytes()
    for engine in (
        SenderAuthenticationEngine(),
        LookalikeDomainEngine(),
        UrlHeuristicsEngine(),
        AttachmentRiskEngine(),
    ):
        assert await run(engine, raw) == {}


async def test_attachment_risks() -> None:
    onenote = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3") + b"\0" * 64
    raw = message(
        attachments=(
            ("invoice.pdf.exe", "application/pdf", PE_HEAD),
            ("photo.jpg", "image/jpeg", PE_HEAD),
            ("run.vbs", "text/plain", b"WScript.Echo 1"),
            ("scan.html", "text/html", b"<html><form action='x'><input type=password></form>"),
            ("disk.iso", "application/octet-stream", b"\0" * 0x8001 + b"CD001"),
            ("notes.one", "application/octet-stream", onenote),
            ("secret.zip", "application/zip", zip_bytes({"a.exe": PE_HEAD}, encrypted={"a.exe"})),
            ("invoice\u202efdp.scr", "application/octet-stream", b"data"),
            ("budget.xlsm", "application/octet-stream", b"not really"),
        )
    )
    found = await AttachmentRiskEngine().analyze(parse_report(raw), CONTOSO)
    by_name: dict[str, set[str]] = {}
    for item in found:
        by_name.setdefault(item.evidence.split("'")[1], set()).add(item.kind)
    assert {"attachment.double_extension", "attachment.executable"} <= by_name["invoice.pdf.exe"]
    assert "attachment.type_mismatch" in by_name["photo.jpg"]
    assert "attachment.script" in by_name["run.vbs"]
    assert "attachment.html_form" in by_name["scan.html"]
    assert "attachment.disk_image" in by_name["disk.iso"]
    assert "attachment.onenote" in by_name["notes.one"]
    assert "attachment.encrypted" in by_name["secret.zip"]
    assert any("bidi_name" in kind for name, kinds in by_name.items() for kind in kinds)
    assert "attachment.macro_extension" in by_name["budget.xlsm"]
    executable = next(i for i in found if i.kind == "attachment.executable")
    assert executable.verdict is Verdict.MALICIOUS
    assert executable.value


async def test_simulation_headers_builtin_and_configured() -> None:
    kinds = await run(SimulationEngine(), (SAMPLES / "simulation.eml").read_bytes())
    assert kinds["simulation.header"].verdict is Verdict.SIMULATION
    assert "KnowBe4" in kinds["simulation.header"].evidence
    custom = AnalysisContext(simulation_headers=(("X-Our-Drill", "q3-campaign"),))
    raw = message(headers={"X-Our-Drill": "Q3-Campaign 7"})
    assert "simulation.header" in await run(SimulationEngine(), raw, custom)
    raw = message(headers={"X-Our-Drill": "something else"})
    assert await run(SimulationEngine(), raw, custom) == {}
