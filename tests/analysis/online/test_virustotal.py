from __future__ import annotations

import base64

import httpx
import pytest

from mailtrawl.analysis.model import AnalysisContext, Verdict
from mailtrawl.analysis.online import VirusTotalConfig, VirusTotalEngine, url_identifier
from tests.analysis.intel.reports import attachment, link, make_report
from tests.analysis.online.helpers import FakeClock, Recorder

pytestmark = pytest.mark.anyio

DROPPER = attachment("invoice.exe", b"MZ dropper")
UNKNOWN = attachment("notes.txt", b"never seen")
PHISH_URL = "https://login-micros0ft.example/owa/?a=1"


def stats(malicious: int, suspicious: int = 0, harmless: int = 60, undetected: int = 10) -> dict:
    return {
        "data": {
            "type": "file",
            "id": "x",
            "attributes": {
                "last_analysis_stats": {
                    "malicious": malicious,
                    "suspicious": suspicious,
                    "harmless": harmless,
                    "undetected": undetected,
                    "timeout": 0,
                }
            },
        }
    }


def not_found(what: str) -> httpx.Response:
    return httpx.Response(
        404, json={"error": {"code": "NotFoundError", "message": f"{what} not found"}}
    )


def virustotal(request: httpx.Request) -> httpx.Response:
    assert request.headers["x-apikey"] == "vt-secret"
    path = request.url.path
    if path == f"/api/v3/files/{DROPPER.sha256}":
        return httpx.Response(200, json=stats(malicious=41, suspicious=2))
    if path == f"/api/v3/files/{UNKNOWN.sha256}":
        return not_found("File")
    if path == f"/api/v3/urls/{url_identifier('https://login-micros0ft.example/owa/?a=1')}":
        return httpx.Response(200, json=stats(malicious=7))
    if path == "/api/v3/domains/micros0ft.example":
        return httpx.Response(200, json=stats(malicious=1))
    if path == "/api/v3/domains/partner.example":
        return httpx.Response(200, json=stats(malicious=0))
    return not_found("Resource")


def engine(client: httpx.AsyncClient, **overrides: object) -> VirusTotalEngine:
    config = VirusTotalConfig(enabled=True, api_key="vt-secret", **overrides)  # type: ignore[arg-type]
    return VirusTotalEngine(config, client)


def test_url_identifier_is_unpadded_urlsafe_base64() -> None:
    url = "http://www.example.com/?q=~~~"
    ident = url_identifier(url)
    assert "=" not in ident
    assert "/" not in ident
    assert "+" not in ident
    assert base64.urlsafe_b64decode(ident + "=" * (-len(ident) % 4)).decode() == url


async def test_files_urls_and_domains_are_judged_by_engine_counts() -> None:
    recorder = Recorder(virustotal)
    report = make_report(
        attachments=(DROPPER, UNKNOWN),
        urls=(link(PHISH_URL, domain="micros0ft.example"),),
        domains=("partner.example",),
    )
    async with recorder.client() as client:
        indicators = await engine(client, rate_per_minute=60).analyze(report, AnalysisContext())
    by_value = {i.value: i for i in indicators}
    dropper = by_value[DROPPER.sha256]
    assert (dropper.kind, dropper.verdict) == ("virustotal.file", Verdict.MALICIOUS)
    assert dropper.score >= 90
    assert "41 of 113 engines call it malicious, 2 suspicious" in dropper.evidence
    assert by_value[UNKNOWN.sha256].kind == "virustotal.file_unknown"
    assert by_value[UNKNOWN.sha256].score == 0
    url = by_value["https://login-micros0ft.example/owa/?a=1"]
    assert (url.verdict, url.score) == (Verdict.PHISHING, 81)
    domain = by_value["micros0ft.example"]
    assert (domain.verdict, domain.score) == (Verdict.SUSPICIOUS, 30)  # below the threshold
    assert by_value["partner.example"].score == 0
    assert len(recorder.requests) == 5


async def test_answers_are_cached_between_reports() -> None:
    recorder = Recorder(virustotal)
    report = make_report(attachments=(DROPPER,), domains=())
    async with recorder.client() as client:
        vt = engine(client)
        first = await vt.analyze(report, AnalysisContext())
        second = await vt.analyze(report, AnalysisContext())
    assert first == second
    assert len(recorder.requests) == 1


async def test_own_domains_never_leave_the_machine() -> None:
    recorder = Recorder(virustotal)
    report = make_report(urls=(link("https://intranet.contoso.com/hr"),), domains=("contoso.com",))
    async with recorder.client() as client:
        indicators = await engine(client).analyze(
            report, AnalysisContext(own_domains=("contoso.com",))
        )
    assert indicators == []
    assert recorder.requests == []


async def test_wrong_key_is_one_note_and_stops_the_engine() -> None:
    recorder = Recorder(
        lambda request: httpx.Response(
            401,
            json={"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}},
        )
    )
    report = make_report(
        attachments=(DROPPER, UNKNOWN), domains=("a.example", "b.example", "c.example")
    )
    async with recorder.client() as client:
        indicators = await engine(client, concurrency=1).analyze(report, AnalysisContext())
    (note,) = indicators
    assert (note.kind, note.score, note.verdict) == (
        "virustotal.unavailable.auth",
        0,
        Verdict.UNDETECTED,
    )
    assert note.evidence == (
        "VirusTotal refused the credentials (HTTP 401 WrongCredentialsError); "
        "5 lookups were not checked."
    )
    assert len(recorder.requests) == 1


async def test_quota_exceeded_pauses_the_engine_for_retry_after() -> None:
    clock = FakeClock()
    recorder = Recorder(
        lambda request: httpx.Response(
            429,
            headers={"Retry-After": "120"},
            json={"error": {"code": "QuotaExceededError", "message": "Quota exceeded"}},
        )
    )
    report = make_report(attachments=(DROPPER,), domains=())
    async with recorder.client() as client:
        config = VirusTotalConfig(enabled=True, api_key="vt-secret")  # type: ignore[arg-type]
        vt = VirusTotalEngine(config, client, clock=clock, sleep=clock.sleep)
        (first,) = await vt.analyze(report, AnalysisContext())
        assert first.kind == "virustotal.unavailable.quota"
        assert "QuotaExceededError" in first.evidence
        clock.now += 60
        (second,) = await vt.analyze(report, AnalysisContext())
        assert "paused for 60 s" in second.evidence
        clock.now += 61
        await vt.analyze(report, AnalysisContext())
    assert len(recorder.requests) == 2  # nothing was sent while paused


async def test_network_failure_and_malformed_answers_are_notes() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v3/files/"):
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"data": {"attributes": {}}})

    report = make_report(attachments=(DROPPER,), domains=("x.example",))
    async with Recorder(broken).client() as client:
        indicators = await engine(client).analyze(report, AnalysisContext())
    assert {i.kind: i.evidence for i in indicators} == {
        "virustotal.unavailable.network": (
            "VirusTotal could not be reached (ConnectError); 1 lookup was not checked."
        ),
        "virustotal.unavailable.response": (
            "VirusTotal answered something unexpected (no data.attributes.last_analysis_stats); "
            "1 lookup was not checked."
        ),
    }


async def test_rate_limit_skips_what_the_budget_cannot_wait_for() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=stats(malicious=0)))
    report = make_report(domains=tuple(f"d{n}.example" for n in range(6)))
    async with recorder.client() as client:
        indicators = await engine(client, budget_s=5).analyze(report, AnalysisContext())
    assert len(recorder.requests) == 4  # the public API's 4 a minute, then 15 s per token
    notes = [i for i in indicators if i.kind.startswith("virustotal.unavailable")]
    assert [n.evidence for n in notes] == [
        "VirusTotal was rate-limited (the rate limit left no time for it within the budget); "
        "2 lookups were not checked."
    ]


async def test_lookups_per_report_are_capped() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=stats(malicious=0)))
    report = make_report(domains=tuple(f"d{n}.example" for n in range(8)))
    async with recorder.client() as client:
        indicators = await engine(client, rate_per_minute=600, max_lookups_per_report=3).analyze(
            report, AnalysisContext()
        )
    assert len(recorder.requests) == 3
    assert indicators[0].evidence == "Only the first 3 of 8 lookups were sent to VirusTotal."
