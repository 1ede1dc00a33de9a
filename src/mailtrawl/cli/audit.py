"""`mailtrawl audit`: read, verify and export the audit log."""

from __future__ import annotations

import sys
from datetime import datetime

import typer

from mailtrawl.cli.common import echo_json, open_store

audit_app = typer.Typer(help="The audit log: who changed what, when.", no_args_is_help=True)


@audit_app.command("list")
def list_cmd(
    operation: str | None = typer.Option(None, "--operation", help="e.g. investigation.create"),
    actor: str | None = typer.Option(None, "--actor"),
    entity_id: str | None = typer.Option(None, "--entity-id"),
    since: datetime | None = typer.Option(None, "--since", help="ISO time, UTC if no offset."),
    until: datetime | None = typer.Option(None, "--until", help="ISO time, UTC if no offset."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Entries, newest first."""
    from datetime import UTC

    from mailtrawl.audit.service import list_entries

    def utc(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value

    with open_store() as store, store.sessions.begin() as session:
        page = list_entries(
            session,
            operation=operation,
            actor=actor,
            entity_id=entity_id,
            since=utc(since),
            until=utc(until),
            limit=limit,
            offset=offset,
        )
    if as_json:
        echo_json(page.model_dump(mode="json"))
        return
    for e in page.items:
        typer.echo(
            f"{e.seq:>6}  {e.at:%Y-%m-%d %H:%M:%S}  {e.actor:<24} {e.operation:<24} "
            f"{e.entity_id or '-':<36} {e.outcome}"
        )
    typer.echo(f"({len(page.items)} of {page.total})")


@audit_app.command("verify")
def verify_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Check the hash chain; exits 1 and names the entry (seq) where it is broken."""
    from mailtrawl.audit.service import verify

    with open_store() as store, store.sessions.begin() as session:
        report = verify(session)
    if as_json:
        echo_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "problems": [vars(p) for p in report.problems],
            }
        )
    elif report.ok:
        typer.echo(f"OK: {report.entries} entries, the chain is intact.")
    else:
        for problem in report.problems:
            typer.echo(f"seq {problem.seq}: {problem.kind}: {problem.message}", err=True)
        typer.echo(f"BROKEN: {len(report.problems)} problem(s) in {report.entries} entries.")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def export_cmd(
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
) -> None:
    """Every entry, oldest first, to standard output."""
    from mailtrawl.audit.service import export
    from mailtrawl.cli.common import fail

    if fmt not in ("jsonl", "csv"):
        fail("--format must be jsonl or csv")
    with open_store() as store, store.sessions.begin() as session:
        out = sys.stdout.buffer
        for chunk in export(session, "csv" if fmt == "csv" else "jsonl"):
            out.write(chunk)
        out.flush()
