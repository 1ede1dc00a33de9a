"""The worker: every job handler of the product, wired to the job-queue backend.

`mailtrawl serve` runs one in-process; `mailtrawl worker` runs one on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.config import Settings
from mailtrawl.configurations.connection import open_provider
from mailtrawl.configurations.service import credential_of
from mailtrawl.errors import ConfigError
from mailtrawl.investigations.engine import EngineSettings, InvestigationEngine, ProviderFactory
from mailtrawl.monitor.watcher import Watcher
from mailtrawl.providers.base import Provider
from mailtrawl.providers.retry import RetryPolicy
from mailtrawl.remediation.engine import RemediationEngine, RemediationSettings
from mailtrawl.reports.engine import ReportEngine
from mailtrawl.storage.engine import refresh_statistics
from mailtrawl.storage.models import MailConfiguration
from mailtrawl.storage.secrets import SecretBox
from mailtrawl.tasks.queue import DatabaseJobRunner


def provider_factory(
    sessions: sessionmaker[Session], box: SecretBox, *, retry: RetryPolicy | None = None
) -> ProviderFactory:
    """Opens the provider of a mail configuration, decrypting its credential on each use."""

    def open_for(configuration_id: uuid.UUID) -> Provider:
        with sessions() as session:
            record = session.get(MailConfiguration, configuration_id)
            if record is None:
                raise ConfigError("The investigation's mail configuration was removed.")
            return open_provider(record, credential_of(box, record), retry=retry)

    return open_for


VAULT_SWEEP_SECONDS = 3600.0
STATISTICS_SECONDS = 3600.0  # query planner statistics (SQLite)


def build_runner(
    sessions: sessionmaker[Session],
    box: SecretBox,
    *,
    concurrency: int = 4,
    engine_settings: EngineSettings | None = None,
    poll_interval: float = 1.0,
    lease_seconds: float = 60.0,
    mailboxes_in_flight: int | None = None,
    factory: ProviderFactory | None = None,
    remediation_settings: RemediationSettings | None = None,
    settings: Settings | None = None,
) -> DatabaseJobRunner:
    """The default (database-backed, in-process) runner with every handler registered.

    With `settings`, the watcher of active investigations runs beside the jobs.
    """
    if engine_settings is None and mailboxes_in_flight is not None:
        defaults = EngineSettings()
        engine_settings = replace(
            defaults,
            chunks_in_flight=max(1, mailboxes_in_flight // defaults.chunk_size),
            chunk_size=min(defaults.chunk_size, mailboxes_in_flight),
        )
    factory = factory or provider_factory(sessions, box)
    engine = InvestigationEngine(sessions, factory, engine_settings)
    remediation = RemediationEngine(sessions, factory, box, remediation_settings)
    reports = ReportEngine(sessions, box, factory, app_settings=settings)  # reported emails
    services = [Watcher(sessions, factory, settings)] if settings is not None else []
    return DatabaseJobRunner(
        sessions,
        engine.handlers() | remediation.handlers() | reports.handlers(),
        on_failure=engine.failure_handlers()
        | remediation.failure_handlers()
        | reports.failure_handlers(),
        housekeeping=[
            (VAULT_SWEEP_SECONDS, remediation.sweep_vault),
            (STATISTICS_SECONDS, partial(refresh_statistics, sessions)),
            *reports.housekeeping(),  # the reporting mailbox's poll
        ],
        services=services,
        concurrency=concurrency,
        poll_interval=poll_interval,
        lease=timedelta(seconds=lease_seconds),
    )


def runner_for(
    settings: Settings,
    sessions: sessionmaker[Session],
    box: SecretBox,
    *,
    concurrency: int | None = None,
    poll_interval: float = 1.0,
) -> DatabaseJobRunner:
    """The runner `mailtrawl serve`, `worker` and the CLI's foreground runs use."""
    return build_runner(
        sessions,
        box,
        concurrency=concurrency or settings.worker_concurrency,
        poll_interval=poll_interval,
        lease_seconds=settings.job_lease_seconds,
        mailboxes_in_flight=settings.scan_mailboxes_in_flight,
        remediation_settings=RemediationSettings.from_settings(settings),
        settings=settings,
    )
