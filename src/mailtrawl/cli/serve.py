"""`mailtrawl serve`: the dashboard, the REST API and the in-process worker."""

from __future__ import annotations

import typer

from mailtrawl.cli.common import fail

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (loopback only: put a TLS proxy in front)."
    ),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    run_worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Run investigations in this process (default)."
    ),
) -> None:
    """Serve the dashboard and the REST API under /api/v1 (OpenAPI at /api/docs)."""
    import uvicorn

    from mailtrawl.errors import MailtrawlError
    from mailtrawl.web.app import create_app

    if host not in LOOPBACK:
        fail(
            "mailtrawl binds to the loopback interface only (127.0.0.1 or ::1): put a TLS reverse "
            "proxy in front of it to reach it from elsewhere (session cookies are then Secure)."
        )
    try:
        app = create_app(worker=run_worker)
    except MailtrawlError as exc:
        fail(exc.message)
    typer.echo(
        f"mailtrawl on http://{host}:{port}/ (API: /api/v1, docs: /api/docs)",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
