"""Analysing a parsed report: run the engines concurrently, each within a time limit, apply
exclusions, and fold what they found into a verdict (see `verdict`).

An engine that raises or overruns its time limit never fails the analysis: it becomes a
warning (and an `engine.error` / `engine.timeout` indicator with score 0, so the evidence
shows the analysis was partial). The time limit is enforced with `asyncio.timeout`, which
interrupts engines at their awaits; the built-in offline engines bound their own work instead
(every loop over report content is capped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mailtrawl.analysis.engines import default_engines
from mailtrawl.analysis.exclusions import Exclusions
from mailtrawl.analysis.model import (
    AnalysisContext,
    Engine,
    Indicator,
    ParsedReport,
    Verdict,
)
from mailtrawl.analysis.verdict import assess

DEFAULT_ENGINE_TIMEOUT = 30.0  # seconds, per engine


@dataclass(frozen=True)
class AnalysisResult:
    """The outcome of analysing one report."""

    verdict: Verdict
    score: int  # 0-100
    indicators: tuple[Indicator, ...]  # highest score first
    evidence: tuple[str, ...]  # the indicators' sentences, highest score first
    warnings: tuple[str, ...]  # parse warnings, then engine failures
    engine_timings: dict[str, float] = field(default_factory=dict)  # milliseconds per engine
    report_sha256: str = ""
    fidelity: str = "original"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (plain types only)."""
        return {
            "verdict": self.verdict.value,
            "score": self.score,
            "report_sha256": self.report_sha256,
            "fidelity": self.fidelity,
            "evidence": list(self.evidence),
            "indicators": [
                {
                    "engine": i.engine,
                    "kind": i.kind,
                    "verdict": i.verdict.value,
                    "score": i.score,
                    "evidence": i.evidence,
                    "value": i.value,
                }
                for i in self.indicators
            ],
            "warnings": list(self.warnings),
            "engine_timings_ms": {name: round(ms, 3) for name, ms in self.engine_timings.items()},
        }


async def analyze(
    report: ParsedReport,
    *,
    context: AnalysisContext,
    engines: Sequence[Engine] | None = None,
    exclusions: Exclusions | None = None,
    engine_timeout: float = DEFAULT_ENGINE_TIMEOUT,
) -> AnalysisResult:
    """Run `engines` (default: the built-in offline ones) on `report` and give a verdict."""
    chosen = list(engines) if engines is not None else default_engines()
    exclusions = exclusions or Exclusions()
    visible = exclusions.filter_report(report)
    runs = await asyncio.gather(
        *(_run(engine, visible, context, engine_timeout) for engine in chosen)
    )
    indicators: list[Indicator] = []
    warnings = list(report.warnings)
    timings: dict[str, float] = {}
    for engine, (found, warning, elapsed_ms) in zip(chosen, runs, strict=True):
        name = _engine_name(engine)
        timings[name] = timings.get(name, 0.0) + elapsed_ms
        indicators.extend(found)
        if warning:
            warnings.append(warning)
    kept = exclusions.filter_indicators(indicators)
    assessment = assess(kept)
    ordered = sorted(kept, key=lambda i: -i.score)
    return AnalysisResult(
        verdict=assessment.verdict,
        score=assessment.score,
        indicators=tuple(ordered),
        evidence=assessment.evidence,
        warnings=tuple(warnings),
        engine_timings=timings,
        report_sha256=report.sha256,
        fidelity=report.fidelity,
    )


async def _run(
    engine: Engine, report: ParsedReport, context: AnalysisContext, limit_seconds: float
) -> tuple[list[Indicator], str | None, float]:
    """One engine's indicators, a warning if it failed, and its time in milliseconds."""
    name = _engine_name(engine)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit_seconds):
            found = await engine.analyze(report, context)
        indicators = [i for i in found if isinstance(i, Indicator)]
        return indicators, None, (time.perf_counter() - started) * 1000
    except TimeoutError:
        message = (
            f"engine {name} did not finish within {limit_seconds:g} s; its findings are missing"
        )
        kind = "engine.timeout"
    except Exception as exc:  # an engine's bug must not cost the whole analysis
        message = f"engine {name} failed ({type(exc).__name__}: {str(exc)[:200]}); its findings are missing"
        kind = "engine.error"
    elapsed = (time.perf_counter() - started) * 1000
    return [Indicator(name, kind, Verdict.UNDETECTED, 0, message)], message, elapsed


def _engine_name(engine: Engine) -> str:
    return str(getattr(engine, "name", type(engine).__name__))
