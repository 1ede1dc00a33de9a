"""`mailtrawl act`, `restore`, `approvals …`, `actions …` and `vault …`: remediation.

`act` previews an action over an investigation's hits with exact counts, asks before it
changes anything, records it and, unless it must wait for a second administrator or
`--background` is given, runs it in this process with a live progress line on stderr.
Commands act as an administrator named `cli:<login>` (the audit log's actor); four-eyes
means an action requested under one login is approved under another (or by an API token).

Subjects, senders and errors come from attacker-controlled mail: everything printed from
the data goes through `printable`, which escapes control characters, ANSI escapes and
bidirectional-text controls.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from mailtrawl.cli.common import Store, cli_actor, echo_json, fail, open_store
from mailtrawl.storage.engine import write_session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mailtrawl.audit.service import Actor
    from mailtrawl.config import Settings
    from mailtrawl.remediation.models import RemediationAction
    from mailtrawl.remediation.schemas import ActionView, Preview

    # The service call `_request` makes: (session, settings, preview only) -> (preview, action).
    Asker = Callable[[Session, Settings, bool], tuple[Preview, RemediationAction | None]]

approvals_app = typer.Typer(
    help="Actions waiting for a second administrator: list, approve, reject.",
    no_args_is_help=True,
)
actions_app = typer.Typer(
    help="Remediation actions: list them, show one, export its receipts.", no_args_is_help=True
)
vault_app = typer.Typer(
    help="The undo vault: deleted and purged messages kept so restore can bring them back.",
    no_args_is_help=True,
)

# `--only KEY=VALUE` keys → Selection fields.
_ONLY_KEYS = {"hit": "hits", "campaign": "campaigns", "mailbox": "mailboxes", "folder": "folders"}
TOP_MAILBOXES = 10
ACTION_KINDS = ("warn", "junk", "trash", "delete", "purge")
ITEM_STATES = ("planned", "applied", "verified", "failed", "undone")


def printable(value: object, limit: int | None = None) -> str:
    """`value` as text safe for a terminal: non-printable characters shown as escapes."""
    text = "" if value is None else str(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _actor() -> Actor:
    from mailtrawl.audit.service import Actor

    return Actor(cli_actor(), role="admin")


def _refused(exc: Exception) -> NoReturn:
    from mailtrawl.errors import MailtrawlError

    fail(printable(exc.message if isinstance(exc, MailtrawlError) else str(exc)))


def _refusals() -> tuple[type[Exception], ...]:
    from mailtrawl.investigations.service import InvestigationNotFound
    from mailtrawl.remediation.notice import NoticeTemplateError
    from mailtrawl.remediation.service import RemediationError

    return (RemediationError, InvestigationNotFound, NoticeTemplateError)


def _selection(only: list[str]) -> dict[str, list[str]]:
    selection: dict[str, list[str]] = {}
    for text in only:
        key, sep, value = text.partition("=")
        field = _ONLY_KEYS.get(key.strip().lower())
        if not sep or field is None or not value.strip():
            fail(f"--only takes KEY=VALUE with KEY one of {', '.join(_ONLY_KEYS)}; got {text!r}")
        selection.setdefault(field, []).append(value.strip())
    return selection


def _validation_message(exc: Any) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


# Printing -------------------------------------------------------------------------------------


def _print_preview(preview: Preview, *, what: str) -> None:
    typer.echo(
        f"{what}: {preview.messages} messages in {preview.mailboxes} mailboxes "
        f"({preview.will_change} will change, {preview.already_done} already done)"
    )
    if preview.by_folder:
        folders = ", ".join(
            f"{printable(name)} {count}"
            for name, count in sorted(preview.by_folder.items(), key=lambda i: (-i[1], i[0]))
        )
        typer.echo(f"  by folder: {folders}")
    for reason, count in preview.excluded.items():
        typer.echo(f"  excluded: {count} — {printable(reason)}")
    if preview.by_mailbox:
        typer.echo("  top mailboxes:")
        for box in preview.by_mailbox[:TOP_MAILBOXES]:
            folders = ", ".join(f"{printable(k)} {v}" for k, v in sorted(box.folders.items()))
            typer.echo(f"    {box.messages:>6}  {printable(box.mailbox, 64):<40} {folders}")
        more = preview.mailboxes - min(len(preview.by_mailbox), TOP_MAILBOXES)
        if more > 0:
            typer.echo(f"    … and {more} more mailboxes")
    if preview.requires_approval:
        typer.echo(f"  needs approval: {printable(preview.approval_reason)}")


def _print_action(view: ActionView) -> None:
    c = view.counts
    undoes = f" (undoes {view.undoes})" if view.undoes else ""
    typer.echo(f"Action {view.id} — {view.action}{undoes} — {view.status}")
    typer.echo(f"  investigation: {view.investigation_id}")
    typer.echo(
        f"  requested by {printable(view.requested_by)} at {view.created_at:%Y-%m-%d %H:%M:%S}"
    )
    if view.approval_reason:
        typer.echo(f"  approval: {printable(view.approval_reason)}")
    if view.decided_by:
        note = f" — {printable(view.decision_note, 200)}" if view.decision_note else ""
        typer.echo(f"  decided by {printable(view.decided_by)}{note}")
    if view.options.get("note"):
        typer.echo(f"  note: {printable(view.options['note'], 200)}")
    typer.echo(
        f"  messages {c.total}: applied {c.applied}, verified {c.verified}, unchanged "
        f"{c.unchanged}, failed {c.failed}, undone {c.undone}, planned {c.planned}"
    )
    if view.requests:
        typer.echo(f"  platform requests: {view.requests}")


def _action_line(view: ActionView) -> str:
    c = view.counts
    return (
        f"{view.id}  {view.action:<7}  {view.status:<17}  {c.total:>6} msgs  "
        f"failed {c.failed:<5} {view.created_at:%Y-%m-%d %H:%M}  "
        f"{printable(view.requested_by, 40)}"
    )


def _print_outcome(view: ActionView) -> None:
    c = view.counts
    typer.echo(
        f"{view.action} {view.status}: {c.total} messages — applied {c.applied}, verified "
        f"{c.verified}, unchanged {c.unchanged}, failed {c.failed}"
        + (f", undone {c.undone}" if c.undone else "")
    )
    typer.echo(f"Receipts: mailtrawl actions receipts {view.id}")
    if c.failed:
        typer.echo(f"Failed ones: mailtrawl actions receipts {view.id} --state failed")


def _print_awaiting(view: ActionView) -> None:
    typer.echo(f"Action {view.id} is waiting for approval: {printable(view.approval_reason)}.")
    typer.echo("Another administrator approves it with:")
    typer.echo(f"  mailtrawl approvals approve {view.id}")
    typer.echo(f"or through the API: POST /api/v1/actions/{view.id}/approve")


# Running ------------------------------------------------------------------------------------


def _view(store: Store, action_id: uuid.UUID) -> ActionView:
    from mailtrawl.remediation import service

    with store.sessions() as session:
        return service.action_view(service.get_action(session, ref=action_id))


async def _run_foreground(store: Store, action_id: uuid.UUID) -> ActionView:
    """Run the job queue in this process until the action is finished; returns its view."""
    from mailtrawl.remediation.models import ACTION_FINISHED
    from mailtrawl.tasks.worker import runner_for

    runner = runner_for(store.settings, store.sessions, store.box, poll_interval=0.2)
    await runner.start()
    tty = sys.stderr.isatty()
    last_line = 0.0
    try:
        while True:
            view = await asyncio.to_thread(_view, store, action_id)
            if view.status in ACTION_FINISHED:
                return view
            now = time.monotonic()
            if tty or now - last_line > 5:
                _progress_line(view, tty=tty)
                last_line = now
            await asyncio.sleep(0.2)
    finally:
        if tty:
            sys.stderr.write("\n")
        await runner.stop()


def _progress_line(view: ActionView, *, tty: bool) -> None:
    c = view.counts
    done = c.applied + c.failed + c.undone
    percent = 100.0 * done / c.total if c.total else 100.0
    width = 24
    filled = int(width * percent / 100)
    bar = "█" * filled + "░" * (width - filled)
    line = (
        f"{bar} {percent:5.1f}%  {view.action} {done}/{c.total}  applied {c.applied}"
        f"  verified {c.verified}  failed {c.failed}  ({view.status})"
    )
    sys.stderr.write(("\r" + line + "\x1b[K") if tty else line + "\n")
    sys.stderr.flush()


def _finish(
    store: Store, action_id: uuid.UUID, *, as_json: bool, preview: Preview | None = None
) -> None:
    """Run the action in the foreground, print the outcome; exit 1 if any message failed."""
    try:
        view = asyncio.run(_run_foreground(store, action_id))
    except KeyboardInterrupt:
        fail(
            f"interrupted; action {action_id} goes on when `mailtrawl worker` or "
            "`mailtrawl serve` runs (its journal resumes where it stopped)",
            code=130,
        )
    if as_json:
        document: dict[str, Any] = {"action": view.model_dump(mode="json")}
        if preview is not None:
            document = {"preview": preview.model_dump(mode="json"), **document}
        echo_json(document)
    else:
        _print_outcome(view)
    if view.counts.failed:
        raise typer.Exit(1)


def _both(preview: Preview, view: ActionView) -> dict[str, Any]:
    return {"preview": preview.model_dump(mode="json"), "action": view.model_dump(mode="json")}


def _request(
    *,
    what: str,
    ask: Asker,
    dry_run: bool,
    yes: bool,
    background: bool,
    as_json: bool,
) -> None:
    """Preview, confirm, request; then wait for approval, only queue, or run it here."""
    from mailtrawl.remediation import service

    with open_store() as store:
        with store.sessions() as session:
            try:
                preview, _ = ask(session, store.settings, True)
            except _refusals() as exc:
                _refused(exc)
            finally:
                session.rollback()
        if dry_run:
            if as_json:
                echo_json({"preview": preview.model_dump(mode="json"), "action": None})
            else:
                _print_preview(preview, what=f"{what} (dry run: nothing changed)")
            return
        if not as_json:
            _print_preview(preview, what=what)
        if preview.messages == 0:
            fail("the selection holds no message this action applies to; nothing was recorded")
        if not (yes or as_json) and not typer.confirm(
            f"{what}: {preview.messages} messages in {preview.mailboxes} mailboxes?",
            default=False,
        ):
            fail("cancelled; nothing was recorded")
        with write_session(store.sessions) as session:
            try:
                recorded, action = ask(session, store.settings, False)
            except _refusals() as exc:
                _refused(exc)
            # What is recorded must be what was confirmed: another action may have moved
            # some of these messages in between.
            if (recorded.messages, recorded.will_change) != (
                preview.messages,
                preview.will_change,
            ):
                session.rollback()  # (fail raises: nothing is committed anyway)
                fail(
                    f"the selection changed since the preview ({preview.messages} → "
                    f"{recorded.messages} messages); nothing was recorded, run it again"
                )
            assert action is not None  # not a dry run
            view = service.action_view(action)
        if view.status == "awaiting_approval":
            if as_json:
                echo_json(_both(recorded, view))
            else:
                _print_awaiting(view)
            return
        if background:
            if as_json:
                echo_json(_both(recorded, view))
            else:
                typer.echo(
                    f"Action {view.id} queued; `mailtrawl worker` or `mailtrawl serve` runs it."
                )
            return
        _finish(store, view.id, as_json=as_json, preview=recorded)


_TITLES = {
    "warn": "Warn about",
    "junk": "Move to Junk Email",
    "trash": "Move to Deleted Items",
    "delete": "Soft-delete",
    "purge": "Permanently delete",
    "restore": "Restore",
}


def act(
    investigation: str = typer.Argument(..., help="The investigation whose hits to act on."),
    action: str = typer.Option(
        ..., "--action", "-a", help="warn, junk, trash, delete (soft) or purge (permanent)."
    ),
    only: list[str] = typer.Option(
        [],
        "--only",
        help="Narrow the hits: hit=ID, campaign=<Internet message id>, mailbox=UPN, "
        "folder=NAME (repeatable; values of one key add up, different keys narrow).",
    ),
    notify: bool = typer.Option(
        False, "--notify", help="warn: also place a warning notice in each inbox."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show the preview."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    note: str | None = typer.Option(None, "--note", help="Why, for the approver and the log."),
    background: bool = typer.Option(
        False, "--background", help="Only queue it (a running server or worker runs it)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the preview and the action as JSON (does not ask)."
    ),
) -> None:
    """Warn about, move, delete or purge an investigation's hits, after an exact preview."""
    from pydantic import ValidationError

    from mailtrawl.remediation import service
    from mailtrawl.remediation.schemas import ActionCreate

    if action not in ACTION_KINDS:
        fail(f"--action takes one of {', '.join(ACTION_KINDS)}; got {printable(action)!r}")
    if notify and action != "warn":
        fail("--notify goes with --action warn")
    try:
        data = ActionCreate.model_validate(
            {"action": action, "selection": _selection(only), "notify": notify, "note": note}
        )
    except ValidationError as exc:
        fail(_validation_message(exc))
    actor = _actor()

    def ask(
        session: Session, settings: Settings, preview_only: bool
    ) -> tuple[Preview, RemediationAction | None]:
        return service.request_action(
            session,
            investigation=investigation,
            data=data.model_copy(update={"dry_run": preview_only}),
            actor=actor,
            settings=settings,
        )

    _request(
        what=_TITLES[action],
        ask=ask,
        dry_run=dry_run,
        yes=yes,
        background=background,
        as_json=as_json,
    )


def restore(
    action_id: str = typer.Argument(..., help="The action to undo."),
    mailbox: list[str] = typer.Option(
        [], "--mailbox", help="Only this mailbox (UPN; repeatable). Default: all of them."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show the preview."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    note: str | None = typer.Option(None, "--note", help="Why, for the approver and the log."),
    background: bool = typer.Option(
        False, "--background", help="Only queue it (a running server or worker runs it)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the preview and the action as JSON (does not ask)."
    ),
) -> None:
    """Undo an action: moved messages go back, deleted and purged ones come from the vault."""
    from pydantic import ValidationError

    from mailtrawl.remediation import service
    from mailtrawl.remediation.schemas import RestoreCreate

    try:
        data = RestoreCreate.model_validate({"mailboxes": mailbox, "note": note})
    except ValidationError as exc:
        fail(_validation_message(exc))
    actor = _actor()

    def ask(
        session: Session, settings: Settings, preview_only: bool
    ) -> tuple[Preview, RemediationAction | None]:
        return service.request_restore(
            session,
            action=action_id,
            data=data.model_copy(update={"dry_run": preview_only}),
            actor=actor,
            settings=settings,
        )

    _request(
        what=_TITLES["restore"],
        ask=ask,
        dry_run=dry_run,
        yes=yes,
        background=background,
        as_json=as_json,
    )


# `mailtrawl approvals …` ----------------------------------------------------------------------


@approvals_app.command("list")
def approvals_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Actions waiting for a second administrator, newest first."""
    from mailtrawl.remediation import service

    with open_store() as store, store.sessions() as session:
        views = [
            service.action_view(a)
            for a in service.list_actions(
                session, status=["awaiting_approval"], limit=service.MAX_PAGE
            )
        ]
    if as_json:
        echo_json([v.model_dump(mode="json") for v in views])
        return
    if not views:
        typer.echo("No action is waiting for approval.")
        return
    for view in views:
        typer.echo(_action_line(view))
        typer.echo(f"    why: {printable(view.approval_reason)}")
        if view.options.get("note"):
            typer.echo(f"    note: {printable(view.options['note'], 200)}")
    typer.echo("Approve with `mailtrawl approvals approve ID` (another administrator).")


@approvals_app.command("approve")
def approvals_approve(
    action_id: str = typer.Argument(..., help="The action to approve."),
    note: str | None = typer.Option(None, "--note", help="Why, for the log."),
    wait: bool = typer.Option(
        False, "--wait", help="Run it here, in the foreground, until it is done."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Approve an action another administrator requested (four-eyes); it is queued."""
    from mailtrawl.remediation import service

    with open_store() as store:
        with write_session(store.sessions) as session:
            try:
                view = service.action_view(
                    service.approve_action(session, ref=action_id, actor=_actor(), note=note)
                )
            except _refusals() as exc:
                _refused(exc)
        if wait:
            _finish(store, view.id, as_json=as_json)
            return
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    typer.echo(f"Action {view.id} approved and queued.")
    typer.echo(
        "`mailtrawl worker` or `mailtrawl serve` runs it; or run it here with "
        f"`mailtrawl approvals approve {view.id} --wait` next time."
    )
    typer.echo(f"Progress: mailtrawl actions show {view.id}")


@approvals_app.command("reject")
def approvals_reject(
    action_id: str = typer.Argument(..., help="The action to reject."),
    note: str | None = typer.Option(None, "--note", help="Why, for the requester and the log."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Reject an action waiting for approval: nothing of it will run."""
    from mailtrawl.remediation import service

    with open_store() as store, write_session(store.sessions) as session:
        try:
            view = service.action_view(
                service.reject_action(session, ref=action_id, actor=_actor(), note=note)
            )
        except _refusals() as exc:
            _refused(exc)
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    typer.echo(f"Action {view.id} rejected; no mailbox was changed.")


# `mailtrawl actions …` ------------------------------------------------------------------------


@actions_app.command("list")
def actions_list(
    investigation: str | None = typer.Option(None, "--investigation", help="Only this one's."),
    status: list[str] = typer.Option(
        [], "--status", help="awaiting_approval, queued, running, completed, rejected, cancelled."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Actions, newest first."""
    from mailtrawl.remediation import service

    with open_store() as store, store.sessions() as session:
        try:
            views = [
                service.action_view(a)
                for a in service.list_actions(
                    session, investigation=investigation, status=status, limit=limit, offset=offset
                )
            ]
        except _refusals() as exc:
            _refused(exc)
    if as_json:
        echo_json([v.model_dump(mode="json") for v in views])
        return
    for view in views:
        typer.echo(_action_line(view))
    if not views:
        typer.echo("No action.")


@actions_app.command("show")
def actions_show(
    action_id: str = typer.Argument(..., help="The action id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """What an action covers, who requested and decided it, its counts and its preview."""
    from mailtrawl.remediation import service
    from mailtrawl.remediation.schemas import Preview

    with open_store() as store, store.sessions() as session:
        try:
            view = service.action_view(service.get_action(session, ref=action_id))
        except _refusals() as exc:
            _refused(exc)
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    _print_action(view)
    _print_preview(Preview.model_validate(view.preview), what="  previewed")


def _filtered_csv(chunks: Iterator[bytes], states: set[str]) -> Iterator[bytes]:
    """The service's CSV rows (already safe for spreadsheets) whose state is one of `states`."""
    from mailtrawl.remediation.service import EXPORT_FIELDS

    column = EXPORT_FIELDS.index("state")
    for index, chunk in enumerate(chunks):
        if index == 0:
            yield chunk  # the header
            continue
        rows = list(csv.reader(io.StringIO(chunk.decode("utf-8"), newline="")))
        if rows and rows[0][column] in states:
            yield chunk


def _filtered_json(session: Session, action_id: uuid.UUID, states: list[str]) -> Iterator[bytes]:
    """The receipts in `states` as a JSON array, read a page at a time."""
    import orjson

    from mailtrawl.remediation import service

    yield b"["
    offset = 0
    while True:
        page = service.list_items(
            session, ref=action_id, state=states, limit=service.MAX_PAGE, offset=offset
        )
        for item in page.items:
            row = item.model_dump(mode="json")
            yield (
                (b"," if offset else b"")
                + b"\n"
                + orjson.dumps({name: row[name] for name in service.EXPORT_FIELDS})
            )
            offset += 1
        if not page.items:
            break
    yield b"\n]\n"


@actions_app.command("receipts")
def actions_receipts(
    action_id: str = typer.Argument(..., help="The action id."),
    fmt: str | None = typer.Option(
        None, "--format", help="csv or json: every receipt (default: a table)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of stdout.", dir_okay=False
    ),
    state: list[str] = typer.Option(
        [], "--state", help="Only planned, applied, verified, failed or undone (repeatable)."
    ),
    mailbox: str | None = typer.Option(None, "--mailbox", help="Table: only this mailbox."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="Table: rows shown."),
) -> None:
    """Per-message receipts: where each message was, what was done, what became of it."""
    from mailtrawl.remediation import service

    unknown = [s for s in state if s not in ITEM_STATES]
    if unknown:
        fail(f"--state takes {', '.join(ITEM_STATES)}; got {printable(unknown[0])!r}")
    if fmt is not None and fmt not in ("csv", "json"):
        fail(f"--format takes csv or json; got {printable(fmt)!r}")
    with open_store() as store, store.sessions() as session:
        try:
            record = service.get_action(session, ref=action_id)
        except _refusals() as exc:
            _refused(exc)
        if fmt is None:
            if output is not None:
                fail("--output goes with --format csv or --format json")
            _print_receipts(session, record.id, state, mailbox, limit)
            return
        if mailbox:
            fail("--mailbox filters the table; exports hold every mailbox")
        chunks = service.export_items(session, ref=record.id, fmt=fmt)
        if state:
            chunks = (
                _filtered_csv(chunks, set(state))
                if fmt == "csv"
                else _filtered_json(session, record.id, state)
            )
        if output is None:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        try:
            with output.open("wb") as target:
                for chunk in chunks:
                    target.write(chunk)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"wrote {output}", err=True)


def _print_receipts(
    session: Session, action_id: uuid.UUID, state: list[str], mailbox: str | None, limit: int
) -> None:
    from mailtrawl.remediation import service

    page = service.list_items(session, ref=action_id, state=state, mailbox=mailbox, limit=limit)
    for item in page.items:
        moved = f"{printable(item.source_folder or '-')} → {printable(item.result_folder or '-')}"
        typer.echo(
            f"{item.state:<8}  {printable(item.mailbox, 40):<40} {moved:<28} "
            f"{printable(item.sender, 40):<40} {printable(item.subject, 60)}"
        )
        if item.error:
            typer.echo(f"          error: {printable(item.error, 300)}")
    typer.echo(f"({len(page.items)} of {page.total})")


# `mailtrawl vault …` --------------------------------------------------------------------------


@vault_app.command("status")
def vault_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """How many deleted or purged messages the vault keeps, and when the next one expires."""
    from mailtrawl.remediation import service
    from mailtrawl.settings_store.service import effective_settings

    with open_store() as store, store.sessions() as session:
        summary = service.vault_summary(session)
        retention = effective_settings(session, store.settings).vault_retention_days
    if as_json:
        echo_json({**summary, "retention_days": retention})
        return
    typer.echo(
        f"Vault: {summary['messages']} messages ({summary['bytes']} bytes), "
        f"{summary['erased']} erased after the retention period ({retention} days)"
    )
    if summary["next_expiry"] is not None:
        typer.echo(f"  next expiry: {summary['next_expiry']:%Y-%m-%d %H:%M} UTC")


@vault_app.command("sweep")
def vault_sweep() -> None:
    """Erase now the vault entries past their retention period (workers also do it)."""
    from mailtrawl.audit.service import record as audit_record
    from mailtrawl.remediation import service

    with open_store() as store, write_session(store.sessions) as session:
        erased = service.erase_expired(session)
        if erased:
            audit_record(
                session,
                actor=cli_actor(),
                operation="remediation.vault_sweep",
                entity_type="vault",
                after={"erased": erased},
            )
    typer.echo(f"Erased {erased} expired vault entries.")
