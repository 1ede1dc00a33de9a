"""The FastAPI application: the REST API under /api/v1 (OpenAPI at /api/docs) and the dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from mailtrawl import __version__
from mailtrawl.config import Settings, load_settings
from mailtrawl.storage.engine import make_engine, make_session_factory
from mailtrawl.storage.migrate import upgrade_to_head
from mailtrawl.storage.secrets import open_secret_box
from mailtrawl.tasks.queue import DatabaseJobRunner
from mailtrawl.web.deps import AppContext


def create_app(settings: Settings | None = None, *, worker: bool = True) -> FastAPI:
    """Build the application: migrate the database, open the key ring, mount the routers.

    With `worker`, the job runner (investigations, ...) runs inside the application while
    it is being served.
    """
    from mailtrawl.accounts.router import router as accounts_router
    from mailtrawl.audit.router import router as audit_router
    from mailtrawl.configurations.router import router as configurations_router
    from mailtrawl.investigations.router import router as investigations_router
    from mailtrawl.remediation.router import router as remediation_router
    from mailtrawl.reports.router import router as reports_router
    from mailtrawl.settings_store.router import router as settings_router
    from mailtrawl.tasks.worker import runner_for

    settings = settings or load_settings()
    engine = make_engine(settings)
    upgrade_to_head(settings, engine=engine)
    ctx = AppContext(
        settings=settings, sessions=make_session_factory(engine), box=open_secret_box(settings)
    )
    if worker:
        ctx.runner = runner_for(settings, ctx.sessions, ctx.box)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if ctx.runner is not None:
            await ctx.runner.start()
        try:
            yield
        finally:
            if ctx.runner is not None:
                await ctx.runner.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="mailtrawl",
        version=__version__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.ctx = ctx
    api = APIRouter(prefix="/api/v1")
    api.include_router(configurations_router)
    api.include_router(investigations_router)
    api.include_router(remediation_router)
    api.include_router(audit_router)
    api.include_router(accounts_router)
    api.include_router(reports_router)  # reported emails (reports/)
    api.include_router(settings_router)

    @api.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(api)
    if settings.public_url is not None:
        # Graph calls these (no session): checked by each subscription's clientState.
        from mailtrawl.monitor.notifications import ScheduleSink, StoredSubscriptions
        from mailtrawl.monitor.webhooks import notifications_router

        runner = ctx.runner
        wake = runner.wake_services if isinstance(runner, DatabaseJobRunner) else None
        app.include_router(
            notifications_router(
                ScheduleSink(ctx.sessions, wake), StoredSubscriptions(ctx.sessions)
            )
        )
    # The dashboard (pages, sign-in, static files) and the headers every response carries.
    from mailtrawl.web.security import SecurityHeadersMiddleware
    from mailtrawl.web.ui import install_ui

    install_ui(app)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
