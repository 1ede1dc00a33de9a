"""`mailtrawl investigate` (find every copy of an email) and `mailtrawl investigations …`.

`investigate` records the investigation and, unless `--background`, runs the job queue in
this process until it finishes, with a live progress line on stderr. Filters given as
options are combined (all of them; `--any` for any of them) and added to a hunt file's.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import typer

from mailtrawl.cli.common import cli_actor, echo_json, fail, open_store
from mailtrawl.storage.engine import write_session

investigations_app = typer.Typer(
    help="List investigations, read their progress and results, stop them.",
    no_args_is_help=True,
)

# Option name → query field (each option may be repeated: the values are alternatives).
_FILTER_OPTIONS: dict[str, str] = {
    "from_": "from",
    "from_domain": "from_domain",
    "subject": "subject",
    "sender_name": "sender_name",
    "to": "to",
    "cc": "cc",
    "reply_to": "reply_to",
    "sender_ip": "sender_ip",
    "message_id": "internet_message_id",
    "body": "body",
    "url": "url",
    "url_domain": "url_domain",
    "regex": "body_regex",
    "attachment_name": "attachment_name",
    "attachment_ext": "attachment_extension",
    "attachment_type": "attachment_type",
    "attachment_hash": "attachment_hash",
}


def _query_from_options(
    hunt_query: dict[str, Any],
    filters: dict[str, list[str]],
    *,
    subject_equals: list[str],
    min_size: str | None,
    max_size: str | None,
    any_of: bool,
    since: str | None,
    until: str | None,
    folders: list[str],
    attached_emails: bool | None,
) -> dict[str, Any]:
    query = dict(hunt_query)
    leaves: list[dict[str, Any]] = []
    for option, field in _FILTER_OPTIONS.items():
        values = filters.get(option) or []
        if values:
            leaves.append({field: values[0] if len(values) == 1 else values})
    if subject_equals:
        leaves.append(
            {
                "subject": {
                    "equals": subject_equals[0] if len(subject_equals) == 1 else subject_equals
                }
            }
        )
    if min_size or max_size:
        bounds = {k: v for k, v in (("min", min_size), ("max", max_size)) if v}
        leaves.append({"attachment_size": bounds})
    if leaves:
        combined: Any = leaves[0] if len(leaves) == 1 else {("any" if any_of else "all"): leaves}
        existing = query.get("match")
        query["match"] = combined if existing is None else {"all": [existing, combined]}
    if since or until:
        received = dict(query.get("received") or {})
        if since:
            received["after"] = since
        if until:
            received["before"] = until
        query["received"] = received
    if folders:
        query["folders"] = folders
    if attached_emails is not None:
        query["attached_emails"] = attached_emails
    return query


def _scope_option(text: str) -> dict[str, Any]:
    """`all`, `users:a@x,b@x`, `groups:Finance Team`, `departments:Sales,Legal`."""
    if text.strip().lower() == "all":
        return {"kind": "all", "values": []}
    kind, _, rest = text.partition(":")
    values = [v.strip() for v in rest.split(",") if v.strip()]
    if kind.strip().lower() not in ("users", "groups", "departments") or not values:
        fail("--scope takes all, users:a@x,b@x, groups:NAME[,NAME] or departments:NAME[,NAME]")
    return {"kind": kind.strip().lower(), "values": values}


def _scope(users: list[str], groups: list[str], departments: list[str]) -> dict[str, Any] | None:
    chosen = [
        (k, v) for k, v in (("users", users), ("groups", groups), ("departments", departments)) if v
    ]
    if len(chosen) > 1:
        fail("choose one scope: --user, --group or --department (each may be repeated)")
    return {"kind": chosen[0][0], "values": chosen[0][1]} if chosen else None


def _query_errors(exc: Any) -> str:
    return "the query is not valid:\n" + "\n".join(
        f"  {e.path or '(query)'}: {e.message}" for e in exc.errors
    )


def investigate(
    config: str = typer.Option(None, "--config", "-c", help="The mail configuration (name or id)."),
    hunt: Path | None = typer.Option(
        None, "--hunt", help="A YAML hunt file.", exists=True, dir_okay=False
    ),
    name: str | None = typer.Option(None, "--name", help="A name for the investigation."),
    from_: list[str] = typer.Option([], "--from", help="Sender address, or @domain."),
    from_domain: list[str] = typer.Option(
        [], "--from-domain", help="Sender domain (or a subdomain)."
    ),
    subject: list[str] = typer.Option([], "--subject", help="Subject contains."),
    subject_equals: list[str] = typer.Option([], "--subject-equals", help="Subject is exactly."),
    sender_name: list[str] = typer.Option(
        [], "--sender-name", help="Sender display name contains."
    ),
    to: list[str] = typer.Option([], "--to", help="A To address, or @domain."),
    cc: list[str] = typer.Option([], "--cc", help="A Cc address, or @domain."),
    reply_to: list[str] = typer.Option([], "--reply-to", help="A Reply-To address, or @domain."),
    sender_ip: list[str] = typer.Option(
        [], "--sender-ip", help="An IP or CIDR range in the Received chain."
    ),
    message_id: list[str] = typer.Option([], "--message-id", help="The Internet message id."),
    body: list[str] = typer.Option([], "--body", help="A keyword or phrase in the body."),
    url: list[str] = typer.Option([], "--url", help="A link in the body (normalised)."),
    url_domain: list[str] = typer.Option([], "--url-domain", help="The domain of a link."),
    regex: list[str] = typer.Option([], "--regex", help="An RE2 regular expression over the body."),
    attachment_name: list[str] = typer.Option([], "--attachment-name", help="A file name glob."),
    attachment_ext: list[str] = typer.Option([], "--attachment-ext", help="A file extension."),
    attachment_type: list[str] = typer.Option([], "--attachment-type", help="A content type glob."),
    attachment_hash: list[str] = typer.Option(
        [], "--attachment-hash", help="MD5/SHA-1/SHA-256/SHA-512."
    ),
    min_size: str | None = typer.Option(
        None, "--min-size", help="Attachment size at least (10KB)."
    ),
    max_size: str | None = typer.Option(None, "--max-size", help="Attachment size at most (5MB)."),
    any_of: bool = typer.Option(False, "--any", help="Match any of the option filters, not all."),
    since: str | None = typer.Option(
        None, "--since", help="Received on or after (2025-05-01, 7d)."
    ),
    until: str | None = typer.Option(None, "--until", help="Received before (2025-06-01)."),
    folder: list[str] = typer.Option(
        [], "--folder", help="A well-known folder (inbox, junkemail, ...)."
    ),
    attached_emails: bool | None = typer.Option(
        None,
        "--attached-emails/--no-attached-emails",
        help="Look inside attached emails (default on).",
    ),
    user: list[str] = typer.Option([], "--user", help="Scope: a user (repeatable)."),
    group: list[str] = typer.Option([], "--group", help="Scope: a group, nested members included."),
    department: list[str] = typer.Option([], "--department", help="Scope: a department."),
    scope_option: str | None = typer.Option(
        None, "--scope", help="Scope: all, users:a@x,b@x, groups:NAME, departments:NAME."
    ),
    explain: bool = typer.Option(
        False, "--explain", help="Show the plan and exit without running."
    ),
    background: bool = typer.Option(
        False, "--background", help="Only queue it (a running server or worker runs it)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the investigation and its results as JSON."
    ),
    limit: int = typer.Option(10_000, "--limit", help="At most this many results with --json."),
    duration: str | None = typer.Option(
        None,
        "--duration",
        help="Keep acting on new mail after the search: 1h, 24h, 7d, … or 'continuous'.",
    ),
    action: str | None = typer.Option(
        None,
        "--action",
        help="With --duration: warn, junk, trash, delete or purge each new copy found.",
    ),
) -> None:
    """Find every copy of an email across the mailboxes in scope (and keep watching)."""
    from mailtrawl.investigations.query import QueryError, load_hunt_file

    hunt_query: dict[str, Any] = {}
    hunt_name = hunt_config = None
    hunt_scope: dict[str, Any] | None = None
    if hunt is not None:
        try:
            loaded = load_hunt_file(hunt.read_text(encoding="utf-8"))
        except QueryError as exc:
            fail(f"{hunt}: " + _query_errors(exc))
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {hunt}: {exc}")
        hunt_query, hunt_name, hunt_config, hunt_scope = (
            loaded.query,
            loaded.name,
            loaded.configuration,
            loaded.scope,
        )
    options = dict(
        from_=from_,
        from_domain=from_domain,
        subject=subject,
        sender_name=sender_name,
        to=to,
        cc=cc,
        reply_to=reply_to,
        sender_ip=sender_ip,
        message_id=message_id,
        body=body,
        url=url,
        url_domain=url_domain,
        regex=regex,
        attachment_name=attachment_name,
        attachment_ext=attachment_ext,
        attachment_type=attachment_type,
        attachment_hash=attachment_hash,
    )
    query = _query_from_options(
        hunt_query,
        options,
        subject_equals=subject_equals,
        min_size=min_size,
        max_size=max_size,
        any_of=any_of,
        since=since,
        until=until,
        folders=folder,
        attached_emails=attached_emails,
    )
    if explain:
        from mailtrawl.investigations.service import explain_query

        try:
            plan = explain_query(query=query)
        except QueryError as exc:
            fail(_query_errors(exc))
        if as_json:
            echo_json(plan)
        else:
            _print_plan(plan)
        return
    chosen = config or hunt_config
    if not chosen:
        fail("give the mail configuration with --config (or `configuration:` in the hunt file)")
    scope = _scope(user, group, department)
    if scope_option is not None:
        if scope is not None:
            fail("give the scope either with --scope or with --user/--group/--department")
        scope = _scope_option(scope_option)
    scope = scope or hunt_scope
    _run(
        config=chosen,
        name=name or hunt_name or _default_name(query),
        scope=scope,
        query=query,
        background=background,
        as_json=as_json,
        limit=limit,
        duration=duration,
        action=action,
    )


def _default_name(query: dict[str, Any]) -> str:
    match = query.get("match")
    text = str(match)[:80] if match else "every message"
    return f"investigation: {text}"


def _print_plan(plan: dict[str, Any]) -> None:
    server = plan["server"]
    typer.echo(f"Server ({server['mode']}):")
    typer.echo(f"  folders: {', '.join(server['folders'])}")
    if server.get("received_after") or server.get("received_before"):
        typer.echo(
            f"  received: {server.get('received_after') or '…'} → {server.get('received_before') or '…'}"
        )
    for item in server["filters"]:
        typer.echo(f"  {item['filter']}  [{item['server']}]")
    if server.get("also_listed"):
        typer.echo(f"  also: {server['also_listed']}")
    typer.echo("Local:")
    for item in plan["local"] or [{"filter": "(nothing)", "reads": "", "when": ""}]:
        typer.echo(f"  {item['filter']}  ({item['reads']}, {item['when']})".rstrip(" (,)"))
    typer.echo(f"Fetched with the listing: {', '.join(plan['fetched_with_listing'])}")
    if plan["fetched_later"]:
        typer.echo(f"Fetched later, only when needed: {', '.join(plan['fetched_later'])}")
    estimate = plan["estimate"]
    typer.echo(
        f"Estimate: ~{estimate['requests_per_mailbox']} Graph requests per mailbox ({estimate['basis']}); {estimate['batched']}."
    )


def _run(
    *,
    config: str,
    name: str,
    scope: dict[str, Any] | None,
    query: dict[str, Any],
    background: bool,
    as_json: bool,
    limit: int,
    duration: str | None = None,
    action: str | None = None,
) -> None:
    from pydantic import ValidationError

    from mailtrawl.audit.service import Actor
    from mailtrawl.configurations.service import ConfigurationNotFound
    from mailtrawl.investigations import actions, service
    from mailtrawl.investigations.query import QueryError
    from mailtrawl.investigations.schemas import InvestigationCreate

    with open_store() as store:
        try:
            data = InvestigationCreate.model_validate(
                {
                    "name": name[:200],
                    "configuration": config,
                    "scope": scope,
                    "query": query,
                    "duration": duration,
                    "action": action,
                }
            )
        except ValidationError as exc:
            fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        with write_session(store.sessions) as session:
            try:
                record = actions.create(session, data=data, actor=Actor(cli_actor()))
            except QueryError as exc:
                fail(_query_errors(exc))
            except (ConfigurationNotFound, service.InvalidDuration) as exc:
                fail(exc.message)
            investigation_id = record.id
        if background:
            typer.echo(str(investigation_id))
            return
        try:
            asyncio.run(_run_foreground(store, investigation_id, quiet=False))
        except KeyboardInterrupt:
            with write_session(store.sessions) as session:
                service.stop_investigation(session, ref=investigation_id)
            fail(f"interrupted; investigation {investigation_id} stopped", code=130)
        with store.sessions() as session:
            view = service.to_view(service.get_investigation(session, ref=investigation_id))
            if as_json:
                hits = service.list_hits(
                    session,
                    ref=investigation_id,
                    sort="mailbox",
                    limit=min(limit, service.MAX_PAGE),
                )
                items = list(hits.items)
                while len(items) < min(limit, hits.total):
                    page = service.list_hits(
                        session,
                        ref=investigation_id,
                        sort="mailbox",
                        limit=service.MAX_PAGE,
                        offset=len(items),
                    )
                    if not page.items:
                        break
                    items.extend(page.items)
                echo_json(
                    {
                        "investigation": view.model_dump(mode="json"),
                        "results": [_result_json(h) for h in items[:limit]],
                    }
                )
            else:
                _print_summary(view)
                if view.watch is not None and view.watch.state == "active":
                    until = (
                        "until stopped"
                        if view.watch.active_until is None
                        else f"until {view.watch.active_until:%Y-%m-%d %H:%M} UTC"
                    )
                    typer.echo(
                        f"  active {until}: new mail is judged while `mailtrawl serve` or "
                        "`mailtrawl worker` runs; `mailtrawl watch` shows it"
                    )
                if view.progress.hits:
                    campaigns = service.list_campaigns(session, ref=investigation_id, limit=20)
                    typer.echo("Campaigns (by Internet message id):")
                    for c in campaigns.items:
                        typer.echo(
                            f"  {c.copies:>6} copies in {c.mailboxes:>5} mailboxes  {c.sender}  {c.subject[:70]!r}"
                        )
        if view.status == "failed":
            raise typer.Exit(1)


def _result_json(hit: Any) -> dict[str, Any]:
    data: dict[str, Any] = hit.model_dump(mode="json")
    return {
        "mailbox": data["mailbox"],
        "folder": data["folder"],
        "message_id": data["message_id"],
        "internet_message_id": data["internet_message_id"],
        "subject": data["subject"],
        "sender": data["sender"],
        "sender_name": data["sender_name"],
        "received": data["received"],
        "has_attachments": data["has_attachments"],
        "attachment_names": data["attachment_names"],
        "matched": data["matched"],
        "via_attached_email": data["via_attached_email"],
    }


async def _run_foreground(store: Any, investigation_id: Any, *, quiet: bool) -> None:
    from mailtrawl.investigations import service
    from mailtrawl.investigations.models import FINISHED
    from mailtrawl.tasks.worker import runner_for

    runner = runner_for(store.settings, store.sessions, store.box, poll_interval=0.2)
    await runner.start()
    show = sys.stderr.isatty() and not quiet
    last_line = 0.0
    try:
        while True:
            with store.sessions() as session:
                view = service.to_view(service.get_investigation(session, ref=investigation_id))
            if view.status in FINISHED:
                break
            now = time.monotonic()
            if show or now - last_line > 5:
                _progress_line(view, tty=show)
                last_line = now
            await asyncio.sleep(0.2)
    finally:
        if show:
            sys.stderr.write("\n")
        await runner.stop()


def _progress_line(view: Any, *, tty: bool) -> None:
    p = view.progress
    done = p.mailboxes_done + p.mailboxes_failed
    width = 24
    filled = int(width * p.percent / 100)
    bar = "█" * filled + "░" * (width - filled)
    eta = f"ETA {int(p.eta_seconds)}s" if p.eta_seconds is not None else "ETA –"
    throttle = (
        f"  ⚠ throttled {p.throttled}× ({p.throttle_wait_seconds:.0f}s)" if p.throttled else ""
    )
    line = (
        f"{bar} {p.percent:5.1f}%  mailboxes {done}/{p.mailboxes_total}"
        f"  messages {p.messages_examined}  hits {p.hits}  {eta}{throttle}"
    )
    sys.stderr.write(("\r" + line + "\x1b[K") if tty else line + "\n")
    sys.stderr.flush()


def _print_summary(view: Any) -> None:
    p = view.progress
    typer.echo(f"Investigation {view.id} — {view.status}")
    typer.echo(
        f"  mailboxes: {p.mailboxes_done} done, {p.mailboxes_failed} failed, "
        f"{p.mailboxes_skipped} skipped, of {p.mailboxes_total} in scope"
    )
    typer.echo(f"  messages examined: {p.messages_examined}   hits: {p.hits}")
    typer.echo(
        f"  Graph requests: {p.requests}   throttled: {p.throttled} ({p.throttle_wait_seconds}s waiting)"
    )
    if view.error:
        typer.echo(f"  error: {view.error}")


# `mailtrawl investigations …` -------------------------------------------------------------


@investigations_app.command("list")
def list_cmd(
    status: str | None = typer.Option(None, "--status", help="Only this status."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Investigations, newest first."""
    from mailtrawl.investigations import service

    with open_store() as store, store.sessions() as session:
        page = service.list_investigations(session, status=status, limit=limit)
        if as_json:
            echo_json(page.model_dump(mode="json"))
            return
        for item in page.items:
            p = item.progress
            typer.echo(
                f"{item.id}  {item.status:<9}  {p.percent:5.1f}%  hits {p.hits:<6} "
                f"{item.created_at:%Y-%m-%d %H:%M}  {item.name}"
            )


def _get(session: Any, ref: str) -> Any:
    from mailtrawl.investigations import service

    try:
        return service.get_investigation(session, ref=ref)
    except service.InvestigationNotFound as exc:
        fail(exc.message)


@investigations_app.command("show")
def show_cmd(
    investigation: str = typer.Argument(..., help="The investigation id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Status, progress, plan and the mailboxes that were skipped or failed."""
    from mailtrawl.investigations import service

    with open_store() as store, store.sessions() as session:
        view = service.to_view(_get(session, investigation))
        if as_json:
            echo_json(view.model_dump(mode="json"))
            return
        _print_summary(view)
        for status in ("failed", "skipped"):
            page = service.list_mailboxes(session, ref=view.id, status=status, limit=50)
            for box in page.items:
                typer.echo(f"  {status}: {box.mailbox} — {box.reason}")
            if page.total > len(page.items):
                typer.echo(f"  … and {page.total - len(page.items)} more {status}")


@investigations_app.command("results")
def results_cmd(
    investigation: str = typer.Argument(..., help="The investigation id."),
    limit: int = typer.Option(100, "--limit"),
    offset: int = typer.Option(0, "--offset"),
    sort: str = typer.Option(
        "-received",
        "--sort",
        help="received, mailbox, sender, subject, folder; '-' for descending.",
    ),
    mailbox: str | None = typer.Option(None, "--mailbox"),
    campaigns: bool = typer.Option(
        False, "--campaigns", help="One row per email (Internet message id)."
    ),
    export: str | None = typer.Option(
        None, "--export", help="Write every result as csv or json to stdout."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Found messages (a page), the campaigns, or an export of all of them."""
    from mailtrawl.investigations import service

    with open_store() as store, store.sessions() as session:
        record = _get(session, investigation)
        if export:
            try:
                for chunk in service.export_hits(session, ref=record.id, fmt=export):
                    sys.stdout.buffer.write(chunk)
            except ValueError as exc:
                fail(str(exc))
            return
        if campaigns:
            page_c = service.list_campaigns(session, ref=record.id, limit=limit, offset=offset)
            if as_json:
                echo_json(page_c.model_dump(mode="json"))
                return
            for c in page_c.items:
                typer.echo(
                    f"{c.copies:>6} copies  {c.mailboxes:>5} mailboxes  {c.internet_message_id}  {c.subject[:60]!r}"
                )
            return
        try:
            page = service.list_hits(
                session, ref=record.id, sort=sort, limit=limit, offset=offset, mailbox=mailbox
            )
        except ValueError as exc:
            fail(str(exc))
        if as_json:
            echo_json({"total": page.total, "results": [_result_json(h) for h in page.items]})
            return
        for hit in page.items:
            when = f"{hit.received:%Y-%m-%d %H:%M}" if hit.received else "-"
            typer.echo(
                f"{when}  {hit.mailbox:<32} {hit.folder or '-':<12} {hit.sender:<32} {hit.subject[:60]!r}"
            )
        typer.echo(f"({len(page.items)} of {page.total})")


@investigations_app.command("stop")
def stop_cmd(investigation: str = typer.Argument(..., help="The investigation id.")) -> None:
    """Stop it now: no further mailbox is read."""
    from mailtrawl.audit.service import Actor
    from mailtrawl.investigations import actions

    with open_store() as store, write_session(store.sessions) as session:
        record = _get(session, investigation)
        record = actions.stop(session, ref=record.id, actor=Actor(cli_actor()))
        typer.echo(f"{record.id} {record.status}")


def worker(
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Jobs run at once (default: the worker_concurrency setting)."
    ),
) -> None:
    """Run the job queue in the foreground (when `mailtrawl serve --no-worker` serves the API)."""
    from mailtrawl.tasks.worker import runner_for

    async def forever() -> None:
        runner = runner_for(store.settings, store.sessions, store.box, concurrency=concurrency)
        await runner.start()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.stop()

    with open_store() as store:
        typer.echo("worker running; Ctrl-C to stop", err=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(forever())
