"""`mailtrawl watch`: the active investigations and the watcher's schedule, in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from datetime import UTC, datetime

import typer

from mailtrawl.cli.common import echo_json, open_store


def watch(
    once: bool = typer.Option(False, "--once", help="Print the status once and exit."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the status as JSON (implies --once)."
    ),
    interval: float = typer.Option(2.0, "--interval", min=0.5, help="Seconds between refreshes."),
    run: bool = typer.Option(
        False,
        "--run",
        help="Also run the worker here (when neither `mailtrawl serve` nor `mailtrawl worker` runs).",
    ),
) -> None:
    """Active investigations: until when, the action, new hits, and how fresh the reads are."""
    from mailtrawl.monitor.service import watch_status

    with open_store() as store:

        def show() -> None:
            with store.sessions() as session:
                status = watch_status(session, store.settings)
            if as_json:
                echo_json(status.model_dump(mode="json"))
                return
            _print(status)

        if once or as_json:
            show()
            return
        if not run:
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    if sys.stdout.isatty():
                        typer.echo("\x1b[2J\x1b[H", nl=False)
                    show()
                    time.sleep(interval)
            return

        async def foreground() -> None:
            from mailtrawl.tasks.worker import runner_for

            runner = runner_for(store.settings, store.sessions, store.box)
            await runner.start()
            try:
                while True:
                    if sys.stdout.isatty():
                        typer.echo("\x1b[2J\x1b[H", nl=False)
                    await asyncio.to_thread(show)
                    await asyncio.sleep(interval)
            finally:
                await runner.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(foreground())


def _print(status: object) -> None:
    from mailtrawl.monitor.service import WatchStatus

    assert isinstance(status, WatchStatus)
    now = datetime.now(UTC)
    typer.echo(f"Active investigations: {len(status.active)}   ({now:%Y-%m-%d %H:%M:%S} UTC)")
    for item in status.active:
        if item.active_until is None:
            until = "continuous"
        else:
            left = max(0, int((item.active_until - now).total_seconds()))
            until = f"{left // 3600}h{left % 3600 // 60:02d}m left"
        typer.echo(
            f"  {item.name[:40]:<40} {until:>14}  action {item.action or 'none':<7}"
            f"  new hits {item.new_hits:>6}  (all {item.hits})  [{item.configuration}]"
        )
    oldest = "–" if status.oldest_read_seconds is None else f"{status.oldest_read_seconds:.0f}s"
    typer.echo(
        f"Mailboxes watched: {status.mailboxes_watched}   due now: {status.mailboxes_due}"
        f"   failing: {status.mailboxes_failing}   oldest read: {oldest} ago"
    )
    mode = (
        f"notifications + backstop ({status.subscriptions} subscriptions)"
        if status.notifications
        else "polling"
    )
    typer.echo(
        f"Reads every {status.poll_seconds:g}s ({mode}); "
        f"{status.budget_share_per_mailbox:.1%} of each mailbox's Graph budget"
    )
