"""`mailtrawl emulator`: the Microsoft 365 tenant emulator (serve, generate)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

import typer

from mailtrawl.emulator.settings import EmulatorSettings

emulator_app = typer.Typer(help="The built-in Microsoft 365 tenant emulator.", no_args_is_help=True)


def _default_state_dir() -> Path:
    home = Path(os.environ.get("MAILTRAWL_HOME", Path.home() / ".mailtrawl"))
    return home / "emulator"


@emulator_app.command()
def generate(
    out: Path = typer.Option(
        ..., "--out", help="Directory to write tenant.json and ground-truth.json into."
    ),
    users: int = typer.Option(200, "--users", min=1, help="Number of users."),
    messages_per_mailbox: int = typer.Option(
        50, "--messages-per-mailbox", min=0, help="Messages in each mailbox."
    ),
    campaigns: int = typer.Option(5, "--campaigns", min=0, help="Planted phishing campaigns."),
    seed: int = typer.Option(1, "--seed", help="Seed: the same seed gives the same tenant."),
) -> None:
    """Write a deterministic demo tenant with planted phishing campaigns and their ground truth."""
    from mailtrawl.emulator.generator import generate as run_generate

    summary = run_generate(
        out, users=users, messages_per_mailbox=messages_per_mailbox, campaigns=campaigns, seed=seed
    )
    typer.echo(
        json.dumps(
            {"out": str(out), **summary.to_dict()}
            if hasattr(summary, "to_dict")
            else {"out": str(out)}
        )
    )


@emulator_app.command()
def serve(
    tenant: Path | None = typer.Option(
        None, "--tenant", help="Tenant fixture directory (with tenant.json)."
    ),
    users: int = typer.Option(50, "--users", min=1, help="When generating: number of users."),
    messages_per_mailbox: int = typer.Option(
        20, "--messages-per-mailbox", min=0, help="When generating: messages per mailbox."
    ),
    campaigns: int = typer.Option(
        3, "--campaigns", min=0, help="When generating: planted campaigns."
    ),
    seed: int = typer.Option(1, "--seed", help="When generating: the seed."),
    host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to bind."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port (0 picks a free one)."),
    http: bool = typer.Option(False, "--http", help="Serve plain HTTP instead of HTTPS."),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Where keys and certificates are kept."
    ),
    control_token: str | None = typer.Option(
        None,
        "--control-token",
        envvar="MAILTRAWL_EMULATOR_CONTROL_TOKEN",
        help="Token for /_emulator/ (random if unset).",
    ),
    latency_ms: float = typer.Option(
        0.0, "--latency-ms", min=0, help="Added latency per Graph request."
    ),
    jitter_ms: float = typer.Option(
        0.0, "--jitter-ms", min=0, help="Random extra latency, up to this."
    ),
    fault_rate: float = typer.Option(
        0.0,
        "--fault-rate",
        min=0,
        max=1,
        help="Share of Graph requests failed with 429/503/504/reset, split evenly.",
    ),
    retry_after: float = typer.Option(
        1.0, "--retry-after", min=0, help="Retry-After (seconds) sent with injected faults."
    ),
    mailbox_concurrency: int = typer.Option(
        4, "--mailbox-concurrency", min=1, help="Concurrent requests per app and mailbox."
    ),
    mailbox_requests: int = typer.Option(
        10_000, "--mailbox-requests", min=1, help="Requests per app and mailbox per window."
    ),
    window_seconds: float = typer.Option(
        600.0, "--window-seconds", min=1, help="Length of that window."
    ),
    app_rps: float = typer.Option(
        0.0, "--app-rps", min=0, help="Requests per second per app (0: no limit)."
    ),
    token_lifetime: int = typer.Option(
        3599, "--token-lifetime", min=60, help="Access token lifetime in seconds."
    ),
    fault_seed: int | None = typer.Option(
        None, "--fault-seed", help="Seed for injected faults (repeatable runs)."
    ),
    banner: bool = typer.Option(False, "--banner", help="Also print how to reach it, for people."),
) -> None:
    """Serve the emulator; prints one JSON line with the URLs, credentials and control token."""
    from mailtrawl.emulator.server import ServeOptions, tenant_source
    from mailtrawl.emulator.server import serve as run_serve

    state_root = state_dir or _default_state_dir()
    state_root.mkdir(parents=True, exist_ok=True)
    if tenant is None:
        from mailtrawl.emulator.generator import generate as run_generate

        # Generation is deterministic: the same parameters reuse the same directory.
        tenant = state_root / f"generated-u{users}-m{messages_per_mailbox}-c{campaigns}-s{seed}"
        if not (tenant / "tenant.json").exists():
            run_generate(
                tenant,
                users=users,
                messages_per_mailbox=messages_per_mailbox,
                campaigns=campaigns,
                seed=seed,
            )
    elif not (tenant / "tenant.json").exists():
        typer.echo(f"error: {tenant / 'tenant.json'} not found", err=True)
        raise typer.Exit(2)
    settings = EmulatorSettings(token_lifetime_seconds=token_lifetime)
    settings.limits.mailbox_concurrency = mailbox_concurrency
    settings.limits.mailbox_requests_per_window = mailbox_requests
    settings.limits.mailbox_window_seconds = window_seconds
    settings.limits.app_requests_per_second = app_rps
    settings.faults.latency_ms = latency_ms
    settings.faults.jitter_ms = jitter_ms
    settings.faults.retry_after = retry_after
    settings.faults.seed = fault_seed
    share = fault_rate / 4
    settings.faults.rate_429 = settings.faults.rate_503 = settings.faults.rate_504 = (
        settings.faults.rate_reset
    ) = share
    options = ServeOptions(
        tenant_dir=tenant,
        state_dir=state_root,
        host=host,
        port=port,
        https=not http,
        control_token=control_token,
        settings=settings,
        banner=banner,
    )
    with contextlib.suppress(KeyboardInterrupt):
        _run(run_serve(options, tenant_source(tenant)))


def _run(coro: asyncio.Future[None] | object) -> None:
    loop_factory = None
    if sys.platform != "win32":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(coro)  # type: ignore[arg-type]
