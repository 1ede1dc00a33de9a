"""`mailtrawl serve`: the REST API and the in-process worker (the dashboard comes later)."""

from __future__ import annotations

import typer

from mailtrawl.cli.common import fail

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (loopback only until user accounts exist)."
    ),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    run_worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Run investigations in this process (default)."
    ),
) -> None:
    """Serve the REST API under /api/v1 (OpenAPI at /api/docs); requests need an API token."""
    import uvicorn

    from mailtrawl.errors import MailtrawlError
    from mailtrawl.web.app import create_app

    if host not in LOOPBACK:
        fail(
            "the API binds to the loopback interface only (127.0.0.1 or ::1) until user accounts exist; "
            "put a TLS reverse proxy in front of it to reach it from elsewhere."
        )
    try:
        app = create_app(worker=run_worker)
    except MailtrawlError as exc:
        fail(exc.message)
    typer.echo(
        f"mailtrawl API on http://{host}:{port}/api/v1 (docs: http://{host}:{port}/api/docs)",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
