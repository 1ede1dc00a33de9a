"""`mailtrawl reports`: reported emails. `analyze` runs the offline analysis on files, storing
nothing: verdict, score, evidence and indicators, for people or (--json) for scripts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from mailtrawl.cli.common import echo_json

reports_app = typer.Typer(help="Reported (suspicious) emails.", no_args_is_help=True)

_TOP_EVIDENCE = 8


@reports_app.command("analyze")
def analyze_command(
    files: list[Path] = typer.Argument(
        ..., help="Reported messages: .eml (MIME) or Outlook .msg files."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list with one object per file."
    ),
    own_domains: list[str] = typer.Option(
        [], "--own-domain", help="Your organisation's domain (repeat for several)."
    ),
    colleagues: list[str] = typer.Option(
        [], "--colleague", help="A colleague's display name, to catch impersonation (repeat)."
    ),
    unwrap: bool = typer.Option(
        True,
        "--unwrap/--no-unwrap",
        help="Analyse the original attached to a report (forward-as-attachment, report button).",
    ),
) -> None:
    """Analyse reported messages offline and print a verdict for each; stores nothing.

    The exit status is 1 only when a file could not be read (missing, too large, or a .msg
    without the optional extract-msg package); a phishing verdict is still a success.
    """
    from mailtrawl.analysis.model import AnalysisContext

    context = AnalysisContext(
        own_domains=tuple(d.strip().lower() for d in own_domains if d.strip()),
        colleague_names=tuple(c.strip() for c in colleagues if c.strip()),
    )
    results = [_analyze_file(path, context, unwrap=unwrap) for path in files]
    if as_json:
        echo_json(results)
    else:
        for result in results:
            _print(result)
    if any("error" in result for result in results):
        raise typer.Exit(1)


def _analyze_file(path: Path, context: Any, *, unwrap: bool) -> dict[str, Any]:
    from mailtrawl.analysis.errors import ReportParseError
    from mailtrawl.analysis.parsing import parse_report, parse_reported_email
    from mailtrawl.analysis.service import analyze

    try:
        raw = path.read_bytes()
    except OSError as exc:
        return {"file": str(path), "error": f"cannot read the file: {exc.strerror or exc}"}
    reporter = None
    try:
        if unwrap:
            report, unwrapped = parse_reported_email(raw, filename=path.name)
            reporter = unwrapped.reporter.address if unwrapped.reporter else None
        else:
            report = parse_report(raw, filename=path.name)
    except ReportParseError as exc:
        return {"file": str(path), "error": exc.message}
    result = asyncio.run(analyze(report, context=context))
    return {
        "file": str(path),
        "subject": report.subject,
        "from": report.sender.address,
        "reporter": reporter,
        **result.as_dict(),
    }


def _print(result: dict[str, Any]) -> None:
    typer.echo(f"== {result['file']}")
    if "error" in result:
        typer.echo(f"   error: {result['error']}")
        return
    typer.echo(f"   subject:  {result['subject']}")
    typer.echo(f"   from:     {result['from'] or '(none)'}")
    if result["reporter"]:
        typer.echo(f"   reporter: {result['reporter']}")
    typer.echo(f"   verdict:  {result['verdict'].upper()}  (score {result['score']}/100)")
    if result["fidelity"] == "forward":
        typer.echo("   note:     an inline forward; the original headers were not available")
    evidence = result["evidence"][:_TOP_EVIDENCE]
    for line in evidence:
        typer.echo(f"   - {line}")
    hidden = len(result["evidence"]) - len(evidence)
    if hidden > 0:
        typer.echo(f"   ... and {hidden} more (use --json for all)")
    if result["warnings"]:
        typer.echo(f"   {len(result['warnings'])} parse warning(s), e.g.: {result['warnings'][0]}")
