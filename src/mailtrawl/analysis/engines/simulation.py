"""Phishing-simulation recognition: a header set by an awareness-training tool marks a drill.

Built-in headers cover tools that stamp their messages with a documented or well-known header;
organisations add their own (or a header their mail-flow rule stamps on simulations, which is
how Microsoft's Attack simulation training is usually recognised) through
`AnalysisContext.simulation_headers`, as (header name, value or None for "present").
A value matches when it appears in the header, case-insensitively.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailtrawl.analysis.engines.base import indicator, shorten
from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict

NAME = "simulation"

# (header, value or None, tool) for tools that mark every simulation they send.
DEFAULT_SIMULATION_HEADERS: tuple[tuple[str, str | None, str], ...] = (
    ("X-PHISHTEST", None, "KnowBe4"),
    ("X-ThreatSim-ID", None, "Proofpoint Security Awareness (Wombat ThreatSim)"),
    ("X-ThreatSim-Header", None, "Proofpoint Security Awareness (Wombat ThreatSim)"),
    ("X-PhishMe", None, "Cofense PhishMe"),
    ("X-PhishMe-Tracking", None, "Cofense PhishMe"),
    ("X-Gophish-Contact", None, "GoPhish"),
    ("X-Gophish-Signature", None, "GoPhish"),
    ("X-Keepnet-Tid", None, "Keepnet"),
    ("X-Lucy-Campaign", None, "Lucy Security"),
    ("X-SimulatedPhish", None, "a phishing simulation"),
)


class SimulationEngine:
    """Recognises phishing-simulation messages by their headers (offline)."""

    name = NAME
    online = False

    def __init__(self, *, include_defaults: bool = True) -> None:
        self.include_defaults = include_defaults

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        rules = [
            (header, value, "your simulation rule") for header, value in context.simulation_headers
        ]
        if self.include_defaults:
            rules += DEFAULT_SIMULATION_HEADERS
        present: dict[str, list[str]] = {}
        for name, value in report.headers:
            present.setdefault(name.strip().lower(), []).append(value)
        for header, wanted, tool in rules:
            values = present.get(header.strip().lower())
            if values is None:
                continue
            if wanted is None or any(wanted.casefold() in v.casefold() for v in values):
                shown = f"{header}: {shorten(values[0], 60)}"
                return [
                    indicator(
                        NAME,
                        "simulation.header",
                        Verdict.SIMULATION,
                        0,
                        f"the header {shown!r} marks a phishing simulation ({tool})",
                        header,
                    )
                ]
        return []
