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


# Stored cases -----------------------------------------------------------------------------

intel_app = typer.Typer(
    help="Threat-intelligence lists used by the analysis.", no_args_is_help=True
)
tokens_app = typer.Typer(
    help="Reporter tokens: for add-ins and mail gateways; they can only submit reports.",
    no_args_is_help=True,
)
reports_app.add_typer(intel_app, name="intel")
reports_app.add_typer(tokens_app, name="tokens")


@reports_app.command("submit")
def submit_command(
    files: list[Path] = typer.Argument(..., help="Reported messages: .eml or .msg files."),
    reporter: str | None = typer.Option(
        None, "--reporter", help="Who reported them (default: the sender of a wrapping report)."
    ),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Analyse now; --no-wait leaves it to the worker."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Store reported messages as cases (the same message twice is one case) and analyse them."""
    from mailtrawl.analysis.errors import ReportParseError
    from mailtrawl.audit.service import Actor
    from mailtrawl.cli.common import cli_actor, fail, open_store
    from mailtrawl.reports import actions
    from mailtrawl.reports.intake import InvalidReporter
    from mailtrawl.reports.models import Channel
    from mailtrawl.storage.engine import write_session

    actor = cli_actor()
    results: list[dict[str, Any]] = []
    with open_store() as store:
        box = store.box
        for path in files:
            try:
                raw = path.read_bytes()
            except OSError as exc:
                results.append({"file": str(path), "error": f"cannot read: {exc.strerror or exc}"})
                continue
            try:
                with write_session(store.sessions) as session:
                    result = actions.submit(
                        session,
                        box=box,
                        raw=raw,
                        filename=path.name,
                        channel=Channel.CLI,
                        actor=Actor(actor),
                        reporter=reporter,
                        analyse=not wait,
                    )
                    entry: dict[str, Any] = {
                        "file": str(path),
                        "case_id": str(result.case.id),
                        "created": result.created,
                        "reporter": result.reporter,
                        "fidelity": result.fidelity,
                    }
            except InvalidReporter as exc:
                fail(exc.message)
            except ReportParseError as exc:
                results.append({"file": str(path), "error": exc.message})
                continue
            if wait and entry["created"]:
                asyncio.run(_analyse_now(store, str(entry["case_id"])))
            with store.sessions() as session:
                from mailtrawl.reports.service import get_case

                case = get_case(session, ref=str(entry["case_id"]))
                entry |= {"verdict": case.verdict, "score": case.score, "status": case.status}
            results.append(entry)
    if as_json:
        echo_json(results)
    else:
        for item in results:
            if "error" in item:
                typer.echo(f"{item['file']}: error: {item['error']}")
            else:
                joined = "new case" if item["created"] else "joined the existing case"
                verdict = item["verdict"] or "not analysed yet"
                typer.echo(f"{item['file']}: {joined} {item['case_id']} ({verdict})")
    if any("error" in item for item in results):
        raise typer.Exit(1)


async def _analyse_now(store: Any, case_id: str) -> None:
    import uuid

    from mailtrawl.reports.engine import ReportEngine
    from mailtrawl.tasks.worker import provider_factory

    box = store.box
    engine = ReportEngine(
        store.sessions, box, provider_factory(store.sessions, box), app_settings=store.settings
    )
    await engine.analyse_case(uuid.UUID(case_id))


@reports_app.command("list")
def list_command(
    status: list[str] = typer.Option(
        [], "--status", help="open, in_analysis, in_progress, closed, false_positive"
    ),
    verdict: list[str] = typer.Option([], "--verdict", help="a verdict, or 'pending'"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The newest cases first."""
    from mailtrawl.cli.common import open_store
    from mailtrawl.reports.service import CaseFilters, list_cases

    with open_store() as store, store.sessions() as session:
        page = list_cases(
            session,
            filters=CaseFilters(status=status or None, verdict=verdict or None),
            limit=limit,
        )
    if as_json:
        echo_json(page.model_dump(mode="json"))
        return
    if not page.items:
        typer.echo("No cases.")
        return
    for item in page.items:
        verdict_text = f"{item.verdict or 'pending'}" + (
            f" {item.score}" if item.score is not None else ""
        )
        typer.echo(
            f"{item.id}  {item.last_reported_at:%Y-%m-%d %H:%M}  {item.status:<14} "
            f"{verdict_text:<15} x{item.reporter_count}  {item.sender or '(no sender)'}  "
            f"{item.subject[:60]}"
        )
    if page.total > len(page.items):
        typer.echo(f"... {page.total - len(page.items)} more (use --limit)")


@reports_app.command("show")
def show_command(
    case_id: str = typer.Argument(..., help="The case id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A case: verdict and evidence, reporters, timeline."""
    from mailtrawl.cli.common import open_store
    from mailtrawl.reports.service import case_view, get_case

    with open_store() as store, store.sessions() as session:
        view = case_view(session, get_case(session, ref=case_id))
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    typer.echo(f"case:      {view.id}")
    typer.echo(f"subject:   {view.subject}")
    typer.echo(f"from:      {view.sender or '(none)'}")
    typer.echo(f"status:    {view.status}")
    typer.echo(
        f"verdict:   {(view.verdict or 'pending').upper()}"
        + (f" (score {view.score}/100, by {view.verdict_source})" if view.verdict else "")
    )
    if view.fidelity == "forward":
        typer.echo("note:      an inline forward; the original headers were not available")
    if view.tags:
        typer.echo(f"tags:      {', '.join(view.tags)}")
    if view.cluster_id:
        typer.echo(f"cluster:   {view.cluster_id}")
    for investigation in view.investigation_ids:
        typer.echo(f"investigation: {investigation}")
    for line in (view.analysis or {}).get("evidence", [])[:_TOP_EVIDENCE]:
        typer.echo(f"   - {line}")
    typer.echo(f"reporters ({len(view.reporters)}):")
    for reporter in view.reporters:
        claimed = " (claimed by token)" if reporter.claimed else ""
        typer.echo(
            f"   {reporter.address or '(anonymous)'}{claimed} via {reporter.channel} at "
            f"{reporter.reported_at:%Y-%m-%d %H:%M}"
        )
    typer.echo("timeline:")
    for event in view.timeline:
        typer.echo(f"   {event.at:%Y-%m-%d %H:%M:%S}  {event.kind:<20} {event.message[:120]}")


@reports_app.command("verdict")
def verdict_command(
    case_id: str = typer.Argument(..., help="The case id."),
    verdict: str = typer.Argument(
        ..., help="undetected, suspicious, phishing, malicious or simulation"
    ),
    message: str | None = typer.Option(None, "--message", help="Shown to the reporters."),
    notify: bool = typer.Option(True, "--notify/--no-notify", help="Tell the reporters."),
) -> None:
    """Set a case's verdict (kept over re-analyses); the reporters are told by the worker."""
    from mailtrawl.audit.service import Actor
    from mailtrawl.cli.common import cli_actor, fail, open_store
    from mailtrawl.reports import actions
    from mailtrawl.reports.models import CaseVerdict
    from mailtrawl.reports.schemas import VerdictChange
    from mailtrawl.reports.service import get_case
    from mailtrawl.storage.engine import write_session

    if verdict not in {v.value for v in CaseVerdict}:
        fail(f"unknown verdict '{verdict}'; use {', '.join(v.value for v in CaseVerdict)}")
    actor = cli_actor()
    with open_store() as store, write_session(store.sessions) as session:
        case = get_case(session, ref=case_id)
        data = VerdictChange(verdict=verdict, message=message, notify=notify)  # type: ignore[arg-type]
        actions.set_verdict(session, case=case, data=data, actor=Actor(actor))
    typer.echo(
        f"case {case_id}: verdict {verdict}" + (" (reporters will be told)" if notify else "")
    )


@intel_app.command("import")
def intel_import_command(
    file: Path = typer.Argument(..., help="CSV, one value per line, STIX 2.x or MISP JSON."),
    name: str | None = typer.Option(None, "--name", help="Default: the file name."),
    kind: str | None = typer.Option(None, "--kind", help="csv, lines, stix or misp (detected)."),
    strict: bool = typer.Option(False, "--strict", help="Refuse the list on any bad value."),
) -> None:
    """Import (or replace, by name) a threat-intelligence list used by every analysis."""
    from mailtrawl.analysis.intel import IntelFormatError
    from mailtrawl.audit.service import Actor
    from mailtrawl.cli.common import cli_actor, fail, open_store
    from mailtrawl.reports import actions
    from mailtrawl.reports.service import ReportsRejected
    from mailtrawl.storage.engine import write_session

    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    actor = cli_actor()
    with open_store() as store:
        try:
            with write_session(store.sessions) as session:
                record = actions.import_intel_list(
                    session,
                    data=data,
                    name=name or file.name,
                    kind=kind,
                    actor=Actor(actor),
                    strict=strict,
                )
                summary = (record.name, record.kind, record.indicator_count, list(record.warnings))
        except (IntelFormatError, ReportsRejected) as exc:
            fail(str(exc))
    typer.echo(f"imported {summary[0]} ({summary[1]}): {summary[2]} indicators")
    for warning in summary[3][:5]:
        typer.echo(f"   skipped: {warning}")


@tokens_app.command("create")
def tokens_create_command(
    name: str = typer.Argument(..., help="What uses it, e.g. 'Outlook add-in'."),
    expires_in_days: int = typer.Option(365, "--expires-in-days", min=0, help="0: never."),
) -> None:
    """Create a reporter token; it is printed once."""
    from datetime import timedelta

    from mailtrawl.audit.service import Actor
    from mailtrawl.cli.common import cli_actor, open_store
    from mailtrawl.reports import actions
    from mailtrawl.storage.engine import write_session

    actor = cli_actor()
    with open_store() as store, write_session(store.sessions) as session:
        issued = actions.create_reporter_token(
            session,
            name=name,
            expires_in=timedelta(days=expires_in_days) if expires_in_days else None,
            actor=Actor(actor),
        )
    typer.echo(issued.token)
    typer.echo(
        f"reporter token {issued.name} ({issued.id}); it is shown only now. Send it as "
        "'Authorization: Bearer <token>' with a 'Reporter' header to POST /api/v1/reports.",
        err=True,
    )


@tokens_app.command("list")
def tokens_list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Reporter tokens (never the token itself)."""
    from mailtrawl.cli.common import open_store
    from mailtrawl.reports.service import list_reporter_tokens

    with open_store() as store, store.sessions() as session:
        tokens = list_reporter_tokens(session)
    if as_json:
        echo_json([t.model_dump(mode="json") for t in tokens])
        return
    if not tokens:
        typer.echo("No reporter tokens.")
    for token in tokens:
        state = "revoked" if token.revoked_at else "active"
        expires = f"expires {token.expires_at:%Y-%m-%d}" if token.expires_at else "no expiry"
        typer.echo(f"{token.id}  {token.prefix}…  {state:<8} {expires}  {token.name}")


@tokens_app.command("revoke")
def tokens_revoke_command(token: str = typer.Argument(..., help="The token's id or name.")) -> None:
    """Revoke a reporter token at once."""
    from mailtrawl.audit.service import Actor
    from mailtrawl.cli.common import cli_actor, fail, open_store
    from mailtrawl.reports import actions
    from mailtrawl.reports.service import ReportsNotFound
    from mailtrawl.storage.engine import write_session

    actor = cli_actor()
    with open_store() as store:
        try:
            with write_session(store.sessions) as session:
                record = actions.revoke_reporter_token(session, ref=token, actor=Actor(actor))
                name = record.name
        except ReportsNotFound as exc:
            fail(exc.message)
    typer.echo(f"revoked reporter token {name}")
