from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailtrawl.analysis.intel import (
    IntelEngine,
    IntelIndex,
    IntelIndicator,
    IntelList,
    IntelType,
    load_intel_file,
)
from mailtrawl.analysis.model import AnalysisContext, Indicator, Verdict
from mailtrawl.matching.literals import available_backends
from tests.analysis.intel.reports import attachment, link, make_report

pytestmark = pytest.mark.anyio
DATA = Path(__file__).parent / "data"


def intel(name: str, *entries: tuple[IntelType, str]) -> IntelList:
    return IntelList(name, "csv", tuple(IntelIndicator(kind, value) for kind, value in entries))


@pytest.fixture(scope="module")
def index() -> IntelIndex:
    return IntelIndex(
        load_intel_file(DATA / name)
        for name in ("phishing.csv", "feed.txt", "bundle.json", "misp_event.json")
    )


def by_kind(indicators: list[Indicator] | tuple[Indicator, ...]) -> dict[str, list[Indicator]]:
    grouped: dict[str, list[Indicator]] = {}
    for indicator in indicators:
        grouped.setdefault(indicator.kind, []).append(indicator)
    return grouped


# Index lookups ---------------------------------------------------------------------------------


def test_domain_entry_matches_subdomains_only_at_label_boundaries(index: IntelIndex) -> None:
    assert [h.indicator.value for h in index.match_domain("evil-payments.example")] == [
        "evil-payments.example"
    ]
    assert [h.indicator.value for h in index.match_domain("Pay.EVIL-payments.example.")] == [
        "evil-payments.example"
    ]
    assert index.match_domain("notevil-payments.example") == ()
    assert index.match_domain("evil-payments.example.net") == ()


def test_ip_exact_and_cidr_ranges(index: IntelIndex) -> None:
    assert [h.indicator.value for h in index.match_ip("203.0.113.66")] == ["203.0.113.66"]
    assert [h.indicator.value for h in index.match_ip("198.51.100.250")] == ["198.51.100.0/24"]
    assert [h.indicator.value for h in index.match_ip("2001:db8:bad:1::5")] == ["2001:db8:bad::/48"]
    assert [h.indicator.value for h in index.match_ip("::ffff:192.0.2.200")] == ["192.0.2.128/25"]
    assert index.match_ip("192.0.2.127") == ()
    assert index.match_ip("not-an-ip") == ()


def test_overlapping_ranges_all_report() -> None:
    overlapping = IntelIndex(
        [intel("a", (IntelType.CIDR, "10.0.0.0/8")), intel("b", (IntelType.CIDR, "10.1.0.0/16"))]
    )
    assert {h.list_name for h in overlapping.match_ip("10.1.2.3")} == {"a", "b"}
    assert {h.list_name for h in overlapping.match_ip("10.2.0.1")} == {"a"}


def test_url_exact_and_prefix_at_boundaries(index: IntelIndex) -> None:
    def listed(url: str) -> list[str]:
        return [h.indicator.value for h in index.match_url(url)]

    # Exact after normalisation; scheme does not matter; tracking parameters are ignored.
    assert listed("http://LOGIN-micros0ft.example/owa/auth.php?utm_medium=x") == [
        "https://login-micros0ft.example/owa/auth.php"
    ]
    assert listed("https://login-micros0ft.example/owa/auth.php?user=bob") == [
        "https://login-micros0ft.example/owa/auth.php"
    ]
    assert listed("http://files.example.net/payload/stage2.exe") == [
        "http://files.example.net/payload/"
    ]
    assert listed("https://secure-update.example/login/step2") == [
        "http://secure-update.example/login"
    ]
    assert listed("https://secure-update.example/login.php") == []  # another resource
    assert listed("https://login-micros0ft.example/owa/auth.php5") == []
    assert listed("mailto:someone@example.org") == []


def test_hashes_and_emails(index: IntelIndex) -> None:
    assert index.match_hash("44D88612FEA8A8F36DE82E1278ABB02F")[0].indicator.source == "eicar.org"
    assert index.match_email("Billing@EVIL-payments.example")[0].list_name == "phishing.csv"
    assert index.match_email("nobody@evil-payments.example") == ()


@pytest.mark.parametrize("backend", available_backends())
def test_text_literals_respect_host_boundaries(backend: str) -> None:
    index = IntelIndex(
        [
            intel(
                "t",
                (IntelType.DOMAIN, "evil.example"),
                (IntelType.DOMAIN, "xn--bcher-kva.example"),
                (IntelType.URL, "http://site.example/phish"),
            )
        ],
        literal_backend=backend,
    )

    def found(text: str) -> set[str]:
        return {hit.literal for hit in index.match_text(text)}

    assert found("Please visit EVIL.example today.") == {"evil.example"}
    assert found("Log in at portal.evil.example/login") == {"evil.example"}
    assert found("see notevil.example or my-evil.example or evil.example.net") == set()
    assert found("Bestellen Sie bei bücher.example!") == {"bücher.example"}
    assert found("go to site.example/phish?id=1") == {"site.example/phish"}
    assert found("go to site.example/phishing or a.site.example/phish") == set()
    assert found("") == set()


def test_text_scan_is_linear_on_hostile_repetition() -> None:
    index = IntelIndex([intel("t", (IntelType.DOMAIN, "evil.example"))])
    text = "xevil.example " * 200_000  # every occurrence fails the boundary check
    started = time.perf_counter()
    assert index.match_text(text) == []
    assert time.perf_counter() - started < 5


# The engine ------------------------------------------------------------------------------------


async def test_engine_reports_each_kind_with_list_and_value(index: IntelIndex) -> None:
    eicar_like = attachment("invoice.js", b"test")  # md5 098f6bcd... is in the STIX bundle
    report = make_report(
        sender=make_report().sender.__class__("billing@evil-payments.example", "Billing"),
        urls=(
            link("https://o365-verify.example/session/start?x=1"),
            link("http://198.51.100.7/login"),
            link("https://cdn.badcdn.example/kit.js"),
        ),
        domains=("evil-payments.example", "o365-verify.example"),
        ips=("203.0.113.66", "10.0.0.1"),
        attachments=(eicar_like,),
        text="If the link fails use paypa1-support.example instead.",
    )
    engine = IntelEngine(index)
    assert (engine.name, engine.online) == ("intel", False)
    indicators = await engine.analyze(report, AnalysisContext())
    kinds = by_kind(indicators)

    (hash_hit,) = kinds["intel.hash"]
    assert hash_hit.verdict is Verdict.MALICIOUS
    assert hash_hit.score >= 90
    assert "invoice.js" in hash_hit.evidence
    assert "bundle.json" in hash_hit.evidence
    assert hash_hit.value == eicar_like.sha1  # SHA-256 first, then SHA-1: one finding per list

    (url_hit,) = kinds["intel.url"]
    assert (url_hit.verdict, url_hit.score) == (Verdict.PHISHING, 80)
    assert "under the listed https://o365-verify.example/session/start" in url_hit.evidence
    assert "misp_event.json" in url_hit.evidence
    assert "CIRCL-like Sharing Group" in url_hit.evidence

    ip_hits = {i.value: i for i in kinds["intel.ip"]}
    assert ip_hits["198.51.100.7"].verdict is Verdict.PHISHING  # a link to a listed range
    assert ip_hits["203.0.113.66"].verdict is Verdict.SUSPICIOUS  # a listed relay
    assert "10.0.0.1" not in ip_hits

    domains = {i.value for i in kinds["intel.domain"]}
    assert domains == {"o365-verify.example", "cdn.badcdn.example", "evil-payments.example"}
    (email_hit,) = kinds["intel.email"]
    assert email_hit.value == "billing@evil-payments.example"
    assert "sender" in email_hit.evidence

    (text_hit,) = kinds["intel.text"]
    assert text_hit.value == "paypa1-support.example"
    assert all(i.engine == "intel" for i in indicators)


async def test_engine_one_indicator_per_listed_entry(index: IntelIndex) -> None:
    report = make_report(
        urls=tuple(link(f"https://evil-payments.example/p{n}") for n in range(30)),
        domains=("evil-payments.example",),
        text="evil-payments.example " * 5,
    )
    indicators = await IntelEngine(index).analyze(report, AnalysisContext())
    assert [(i.kind, i.value) for i in indicators] == [("intel.domain", "evil-payments.example")]


async def test_clean_report_and_empty_index() -> None:
    clean = make_report(urls=(link("https://www.partner.example/q3"),))
    index = IntelIndex([load_intel_file(DATA / "phishing.csv")])
    assert await IntelEngine(index).analyze(clean, AnalysisContext()) == []
    assert await IntelEngine(IntelIndex([])).analyze(clean, AnalysisContext()) == []


async def test_large_body_is_scanned_off_the_event_loop(index: IntelIndex) -> None:
    report = make_report(text="filler " * 100_000 + " see phish-bank.example")
    indicators = await IntelEngine(index).analyze(report, AnalysisContext())
    assert [(i.kind, i.value) for i in indicators] == [("intel.text", "phish-bank.example")]
