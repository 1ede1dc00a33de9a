"""Folding indicators into one verdict, a 0-100 risk score and the evidence behind them.

The rules, in order:

1. **Simulation** wins: any indicator with verdict `simulation` (a simulation header) makes the
   verdict `simulation`, whatever else was found; the score is still computed and reported.
2. The **score** combines every indicator's score with diminishing returns, as independent
   probabilities: ``100 * (1 - Π(1 - sᵢ/100))``, rounded and capped at 100. Two findings of 50
   give 75, not 100; findings of 0 add nothing.
3. The verdict is the worse of two readings:
   - the worst verdict any single indicator points to (`malicious` > `phishing` >
     `suspicious` > `undetected`): an executable attachment is malicious on its own;
   - the score: at least `PHISHING_SCORE` (70) reads as `phishing`, at least
     `SUSPICIOUS_SCORE` (30) as `suspicious`, below that `undetected`.
4. The **evidence** is every indicator's sentence, highest score first.

Engines therefore give weak signals (a Reply-To elsewhere, a URL shortener) the verdict
`undetected` with a small score, so that only several of them together raise the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailtrawl.analysis.model import Indicator, Verdict

PHISHING_SCORE = 70
SUSPICIOUS_SCORE = 30
_SEVERITY = {
    Verdict.UNDETECTED: 0,
    Verdict.SUSPICIOUS: 1,
    Verdict.PHISHING: 2,
    Verdict.MALICIOUS: 3,
}


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    score: int
    evidence: tuple[str, ...]


def combine_scores(scores: Iterable[int]) -> int:
    """100 * (1 - product of (1 - s/100)), rounded, within 0..100."""
    remaining = 1.0
    for score in scores:
        remaining *= 1 - max(0, min(100, score)) / 100
    return max(0, min(100, round(100 * (1 - remaining))))


def verdict_for_score(score: int) -> Verdict:
    if score >= PHISHING_SCORE:
        return Verdict.PHISHING
    if score >= SUSPICIOUS_SCORE:
        return Verdict.SUSPICIOUS
    return Verdict.UNDETECTED


def assess(indicators: Iterable[Indicator]) -> Assessment:
    """The verdict, score and evidence for a set of indicators (see the module's rules)."""
    found = sorted(indicators, key=lambda i: (-i.score, -_SEVERITY.get(i.verdict, 0), i.kind))
    score = combine_scores(i.score for i in found)
    evidence = tuple(i.evidence for i in found)
    if any(i.verdict is Verdict.SIMULATION for i in found):
        return Assessment(Verdict.SIMULATION, score, evidence)
    verdict = verdict_for_score(score)
    for item in found:
        if _SEVERITY.get(item.verdict, 0) > _SEVERITY[verdict]:
            verdict = item.verdict
    return Assessment(verdict, score, evidence)
