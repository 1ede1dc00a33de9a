"""Verdict rules, the analysis service (concurrency, failures, time limits), exclusions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from mailtrawl.analysis.engines import (
    available_engines,
    default_engines,
    register_engine,
    unregister_engine,
)
from mailtrawl.analysis.exclusions import Exclusions
from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict
from mailtrawl.analysis.parsing import parse_report
from mailtrawl.analysis.service import analyze
from mailtrawl.analysis.verdict import assess, combine_scores
from tests.analysis.builders import PE_HEAD, SAMPLES, message

pytestmark = pytest.mark.anyio
CONTOSO = AnalysisContext(own_domains=("contoso.com",))


def found(verdict: Verdict, score: int, kind: str = "k") -> Indicator:
    return Indicator("test", kind, verdict, score, f"{kind} {score}")


def test_scores_combine_with_diminishing_returns() -> None:
    assert combine_scores([]) == 0
    assert combine_scores([50, 50]) == 75
    assert combine_scores([100, 10]) == 100
    assert combine_scores([20] * 3) == 49


def test_verdict_rules() -> None:
    assert assess([]).verdict is Verdict.UNDETECTED
    assert assess([found(Verdict.UNDETECTED, 20)]).verdict is Verdict.UNDETECTED
    assert assess([found(Verdict.UNDETECTED, 20)] * 2).verdict is Verdict.SUSPICIOUS  # 36
    assert assess([found(Verdict.SUSPICIOUS, 40)] * 3).verdict is Verdict.PHISHING  # 78
    assert assess([found(Verdict.PHISHING, 60)]).verdict is Verdict.PHISHING
    malicious = assess([found(Verdict.MALICIOUS, 85), found(Verdict.SUSPICIOUS, 10, "z")])
    assert malicious.verdict is Verdict.MALICIOUS
    assert malicious.evidence[0] == "k 85"
    drill = assess([found(Verdict.MALICIOUS, 90), found(Verdict.SIMULATION, 0)])
    assert drill.verdict is Verdict.SIMULATION
    assert drill.score == 90


async def test_sample_phish_is_phishing_with_evidence() -> None:
    report = parse_report((SAMPLES / "credential_phish.eml").read_bytes())
    result = await analyze(report, context=CONTOSO)
    assert result.verdict is Verdict.PHISHING
    assert result.score >= 90
    assert any("paypa1" in line for line in result.evidence)
    assert set(result.engine_timings) == {e.name for e in default_engines()}
    data = json.loads(json.dumps(result.as_dict()))
    assert data["verdict"] == "phishing"
    assert data["indicators"][0]["score"] >= 50


async def test_benign_and_simulation_samples() -> None:
    benign = await analyze(
        parse_report((SAMPLES / "benign_newsletter.eml").read_bytes()), context=CONTOSO
    )
    assert (benign.verdict, benign.score, benign.indicators) == (Verdict.UNDETECTED, 0, ())
    drill = await analyze(parse_report((SAMPLES / "simulation.eml").read_bytes()), context=CONTOSO)
    assert drill.verdict is Verdict.SIMULATION


async def test_executable_attachment_is_malicious() -> None:
    raw = message(attachments=(("invoice.pdf.exe", "application/pdf", PE_HEAD),))
    result = await analyze(parse_report(raw), context=CONTOSO)
    assert result.verdict is Verdict.MALICIOUS


class Broken:
    name = "broken"
    online = False

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        raise RuntimeError("boom")


class Slow:
    name = "slow"
    online = True

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        await asyncio.sleep(30)
        return []


class Fixed:
    online = False

    def __init__(self, name: str, indicator: Indicator) -> None:
        self.name = name
        self.indicator = indicator

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        return [self.indicator]


async def test_failing_and_slow_engines_become_warnings() -> None:
    report = parse_report(message())
    hit = Fixed("fixed", found(Verdict.PHISHING, 60))
    result = await analyze(
        report, context=CONTOSO, engines=[Broken(), Slow(), hit], engine_timeout=0.2
    )
    assert result.verdict is Verdict.PHISHING  # the working engine still counts
    assert any("engine broken failed (RuntimeError: boom)" in w for w in result.warnings)
    assert any("engine slow did not finish within 0.2 s" in w for w in result.warnings)
    kinds = {i.kind for i in result.indicators}
    assert {"engine.error", "engine.timeout"} <= kinds
    assert result.engine_timings["slow"] < 5_000


async def test_exclusions_suppress_links_domains_ips_and_extensions() -> None:
    raw = message(
        sender="PayPal <service@paypa1.com>",
        text=None,
        html='<a href="http://198.51.100.7/a">x</a> <a href="https://bit.ly/safe/1">y</a>',
        attachments=(("tool.exe", "application/octet-stream", PE_HEAD),),
    )
    report = parse_report(raw)
    before = await analyze(report, context=CONTOSO)
    kinds = {i.kind for i in before.indicators}
    assert {"url.ip_host", "url.shortener", "attachment.executable"} <= kinds
    assert "lookalike.brand.homoglyph" in kinds
    exclusions = Exclusions(
        domains=("*.paypa1.com", "paypa1.com"),
        urls=("https://bit.ly/safe/*",),
        ips=("198.51.100.0/24",),
        extensions=(".exe",),
    )
    after = await analyze(report, context=CONTOSO, exclusions=exclusions)
    assert after.indicators == ()
    assert after.verdict is Verdict.UNDETECTED


def test_invalid_exclusions_are_rejected() -> None:
    with pytest.raises(ValueError, match="CIDR"):
        Exclusions(ips=("not-an-ip",))
    with pytest.raises(ValueError, match="never closed"):
        Exclusions(urls=("https://x.example/[abc",))


def test_registry_adds_configured_engines_only() -> None:
    class Extra:
        name = "extra"
        online = True

        async def analyze(
            self, report: ParsedReport, context: AnalysisContext
        ) -> Sequence[Indicator]:
            return []

    register_engine("extra", lambda settings: Extra() if settings == "on" else None)
    register_engine("off", lambda settings: None)
    try:
        assert [e.name for e in available_engines("on")][-1] == "extra"
        assert "extra" not in [e.name for e in available_engines("off")]
        assert "extra" not in [e.name for e in available_engines("on", online=False)]
    finally:
        unregister_engine("extra")
        unregister_engine("off")
