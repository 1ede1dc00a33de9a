"""Small helpers the built-in engines share."""

from __future__ import annotations

from mailtrawl.analysis.model import Indicator, Verdict


def indicator(
    engine: str, kind: str, verdict: Verdict, score: int, evidence: str, value: str | None = None
) -> Indicator:
    """An Indicator with its evidence cut to a readable length."""
    return Indicator(
        engine=engine,
        kind=kind,
        verdict=verdict,
        score=max(0, min(100, score)),
        evidence=evidence if len(evidence) <= 500 else f"{evidence[:497]}...",
        value=None if value is None else value[:2_000],
    )


def shorten(value: str, limit: int = 120) -> str:
    """A value for evidence text: control characters shown escaped, long values cut."""
    printable = "".join(
        char if char.isprintable() else f"\\u{ord(char):04x}" for char in value[: limit * 2]
    )
    return printable if len(printable) <= limit else f"{printable[: limit - 3]}..."
