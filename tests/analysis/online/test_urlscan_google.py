from __future__ import annotations

import json

import httpx
import pytest

from mailtrawl.analysis.model import AnalysisContext, Verdict
from mailtrawl.analysis.online import (
    SafeBrowsingConfig,
    SafeBrowsingEngine,
    UrlscanConfig,
    UrlscanEngine,
    WebRiskConfig,
    WebRiskEngine,
)
from tests.analysis.intel.reports import link, make_report
from tests.analysis.online.helpers import FakeClock, Recorder

pytestmark = pytest.mark.anyio

BAD_SCAN = "0196d976-07f6-7aae-8a57-aa019145f31c"
GOOD_SCAN = "0196d976-07f6-7aae-8a57-aa019145f31d"
NEW_SCAN = "0196d976-07f6-7aae-8a57-aa019145f31e"


def urlscan(request: httpx.Request) -> httpx.Response:
    assert request.headers["API-Key"] == "us-secret"
    path = request.url.path
    if path == "/api/v1/search/":
        query = request.url.params["q"]
        hits = {
            "page.domain:kit.evil.example": [
                {
                    "_id": BAD_SCAN,
                    "task": {"url": "https://kit.evil.example/", "visibility": "public"},
                    "page": {"domain": "kit.evil.example", "ip": "203.0.113.9"},
                    "result": f"https://urlscan.io/api/v1/result/{BAD_SCAN}/",
                }
            ],
            "page.domain:www.partner.example": [
                {"_id": GOOD_SCAN, "page": {"domain": "www.partner.example"}}
            ],
        }.get(query, [])
        return httpx.Response(200, json={"results": hits, "total": len(hits), "has_more": False})
    if path == f"/api/v1/result/{BAD_SCAN}/":
        return httpx.Response(
            200, json={"verdicts": {"overall": {"score": 100, "malicious": True}}}
        )
    if path == f"/api/v1/result/{GOOD_SCAN}/":
        return httpx.Response(200, json={"verdicts": {"overall": {"score": 0, "malicious": False}}})
    if path == "/api/v1/scan/":
        body = json.loads(request.content)
        return httpx.Response(
            200,
            json={
                "message": "Submission successful",
                "uuid": NEW_SCAN,
                "result": f"https://urlscan.io/result/{NEW_SCAN}/",
                "api": f"https://urlscan.io/api/v1/result/{NEW_SCAN}/",
                "visibility": body["visibility"],
                "url": body["url"],
            },
        )
    return httpx.Response(404, json={"message": "not found", "status": 404})


REPORT = make_report(
    urls=(
        link("https://kit.evil.example/login"),
        link("https://www.partner.example/q3"),
        link("https://fresh.example/landing?id=7"),
    )
)


async def test_urlscan_reads_verdicts_of_existing_scans_without_submitting() -> None:
    recorder = Recorder(urlscan)
    config = UrlscanConfig(enabled=True, api_key="us-secret")  # type: ignore[arg-type]
    async with recorder.client() as client:
        indicators = await UrlscanEngine(config, client).analyze(REPORT, AnalysisContext())
    (malicious,) = indicators
    assert (malicious.kind, malicious.verdict, malicious.value) == (
        "urlscan.malicious",
        Verdict.PHISHING,
        "kit.evil.example",
    )
    assert f"https://urlscan.io/result/{BAD_SCAN}/" in malicious.evidence
    assert "score 100" in malicious.evidence
    assert [r.method for r in recorder.requests].count("POST") == 0


async def test_urlscan_submits_unknown_links_privately_only_when_enabled() -> None:
    recorder = Recorder(urlscan)
    config = UrlscanConfig(enabled=True, api_key="us-secret", submit=True)  # type: ignore[arg-type]
    async with recorder.client() as client:
        engine = UrlscanEngine(config, client)
        indicators = await engine.analyze(REPORT, AnalysisContext())
        await engine.analyze(REPORT, AnalysisContext())
    submitted = [i for i in indicators if i.kind == "urlscan.submitted"]
    assert [(i.value, i.score) for i in submitted] == [("https://fresh.example/landing?id=7", 0)]
    posts = [r for r in recorder.requests if r.method == "POST"]
    assert len(posts) == 2  # a submission is not cached: the next report searches again
    assert json.loads(posts[0].content) == {
        "url": "https://fresh.example/landing?id=7",
        "visibility": "private",
    }


SB_KEY = "sb-secret"


def safe_browsing(request: httpx.Request) -> httpx.Response:
    assert request.url.params["key"] == SB_KEY
    body = json.loads(request.content)
    info = body["threatInfo"]
    assert info["platformTypes"] == ["ANY_PLATFORM"]
    assert info["threatEntryTypes"] == ["URL"]
    assert set(info["threatTypes"]) == {
        "MALWARE",
        "SOCIAL_ENGINEERING",
        "UNWANTED_SOFTWARE",
        "POTENTIALLY_HARMFUL_APPLICATION",
    }
    assert body["client"]["clientId"] == "mailtrawl"
    listed = {
        "https://kit.evil.example/login": "SOCIAL_ENGINEERING",
        "https://fresh.example/landing?id=7": "MALWARE",
    }
    matches = [
        {
            "threatType": listed[entry["url"]],
            "platformType": "ANY_PLATFORM",
            "threatEntryType": "URL",
            "threat": {"url": entry["url"]},
            "cacheDuration": "300s",
        }
        for entry in info["threatEntries"]
        if entry["url"] in listed
    ]
    return httpx.Response(200, json={"matches": matches} if matches else {})


async def test_safe_browsing_checks_all_links_in_one_request_and_honours_cache_duration() -> None:
    clock = FakeClock()
    recorder = Recorder(safe_browsing)
    config = SafeBrowsingConfig(enabled=True, api_key=SB_KEY)  # type: ignore[arg-type]
    async with recorder.client() as client:
        engine = SafeBrowsingEngine(config, client, clock=clock, sleep=clock.sleep)
        indicators = await engine.analyze(REPORT, AnalysisContext())
        assert len(recorder.requests) == 1
        assert {(i.value, i.verdict, i.score) for i in indicators} == {
            ("https://kit.evil.example/login", Verdict.PHISHING, 85),
            ("https://fresh.example/landing?id=7", Verdict.MALICIOUS, 90),
        }
        assert "lists https://kit.evil.example/login as social engineering" in next(
            i.evidence for i in indicators if i.verdict is Verdict.PHISHING
        )
        await engine.analyze(REPORT, AnalysisContext())
        assert len(recorder.requests) == 1  # all three answers cached
        clock.now += 301  # past the matches' cacheDuration; the clean answer is still fresh
        await engine.analyze(REPORT, AnalysisContext())
    assert len(recorder.requests) == 2
    entries = json.loads(recorder.requests[1].content)["threatInfo"]["threatEntries"]
    assert sorted(e["url"] for e in entries) == [
        "https://fresh.example/landing?id=7",
        "https://kit.evil.example/login",
    ]


async def test_safe_browsing_invalid_key_is_an_auth_note() -> None:
    recorder = Recorder(
        lambda request: httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                }
            },
        )
    )
    config = SafeBrowsingConfig(enabled=True, api_key="bad")  # type: ignore[arg-type]
    async with recorder.client() as client:
        (note,) = await SafeBrowsingEngine(config, client).analyze(REPORT, AnalysisContext())
    assert note.kind == "safe_browsing.unavailable.auth"
    assert note.evidence.endswith("3 lookups were not checked.")
    assert "bad" not in note.evidence  # the key itself is never echoed


def web_risk(request: httpx.Request) -> httpx.Response:
    assert request.url.path == "/v1/uris:search"
    assert request.url.params["key"] == "wr-secret"
    assert request.url.params.get_list("threatTypes") == [
        "MALWARE",
        "SOCIAL_ENGINEERING",
        "UNWANTED_SOFTWARE",
    ]
    if request.url.params["uri"] == "https://kit.evil.example/login":
        return httpx.Response(
            200,
            json={
                "threat": {
                    "threatTypes": ["SOCIAL_ENGINEERING"],
                    "expireTime": "2999-01-01T00:00:00.123456789Z",
                }
            },
        )
    return httpx.Response(200, json={})


async def test_web_risk_searches_each_link() -> None:
    recorder = Recorder(web_risk)
    config = WebRiskConfig(enabled=True, api_key="wr-secret")  # type: ignore[arg-type]
    async with recorder.client() as client:
        indicators = await WebRiskEngine(config, client).analyze(REPORT, AnalysisContext())
    assert [(i.kind, i.value, i.verdict) for i in indicators] == [
        ("web_risk.social_engineering", "https://kit.evil.example/login", Verdict.PHISHING)
    ]
    assert len(recorder.requests) == 3
