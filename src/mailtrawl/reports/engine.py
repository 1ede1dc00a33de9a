"""The jobs of reported emails: analyse a case, notify its reporters; and the reporting
mailbox's poll as a housekeeping task.

`reports.analyse` parses the stored message, runs the engines (built-in, threat-intel lists,
YARA, and the online engines an administrator enabled), stores the verdict and evidence,
clusters the case, starts the campaign's investigation when the verdict asks for it, and
queues the reporters' notification. `reports.notify` renders each reporter's message and
delivers it (their inbox through a mail configuration, or SMTP), recording each on the
timeline. Both can run again after a crash: the analysis overwrites its own result, and a
notification job skips the reporters it already recorded as told.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.analysis.engines import available_engines
from mailtrawl.analysis.model import Engine
from mailtrawl.analysis.online import online_engines
from mailtrawl.analysis.parsing import parse_report
from mailtrawl.analysis.service import AnalysisResult, analyze
from mailtrawl.audit import service as audit
from mailtrawl.configurations.service import get_configuration
from mailtrawl.errors import MailtrawlError
from mailtrawl.providers.base import Provider
from mailtrawl.reports import notify
from mailtrawl.reports.autoinvestigate import SYSTEM_ACTOR, start_auto_investigation
from mailtrawl.reports.clustering import CaseFeatures, assign_cluster, minhash, shingles
from mailtrawl.reports.intake import indicators_of, open_raw
from mailtrawl.reports.jobs import ANALYSE_JOB, NOTIFY_JOB, enqueue_notification
from mailtrawl.reports.mailbox import ReportingMailboxPoller
from mailtrawl.reports.models import (
    CaseEvent,
    CaseReporter,
    ReportCase,
    VerdictSource,
)
from mailtrawl.reports.schemas import ReportSettings
from mailtrawl.reports.service import template_for
from mailtrawl.reports.settings import (
    analysis_inputs,
    effective_own_domains,
    load_report_settings,
    load_secrets,
)
from mailtrawl.reports.timeline import add_event
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session
from mailtrawl.storage.models import MailConfiguration
from mailtrawl.storage.secrets import SecretBox
from mailtrawl.tasks.queue import FailureHandler, Housekeeping, JobContext, JobHandler

log = logging.getLogger(__name__)

# How often the worker looks whether the reporting mailbox is due (its interval is a setting).
MAILBOX_TICK_SECONDS = 5.0
MAX_URL_KEYS = 50

ProviderFactory = Callable[[uuid.UUID], Provider]
HttpClientFactory = Callable[[], httpx.AsyncClient]


def _default_http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(15.0), follow_redirects=False)


@dataclass(frozen=True)
class _Loaded:
    raw: bytes
    filename: str | None
    fidelity: str
    engines: list[Engine]
    inputs: Any
    settings: ReportSettings


class ReportEngine:
    """Job handlers and housekeeping for reported emails."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        factory: ProviderFactory,
        *,
        app_settings: Any = None,
        http_client: HttpClientFactory | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.factory = factory
        self.app_settings = app_settings
        self.http_client = http_client or _default_http_client
        self.poller = ReportingMailboxPoller(sessions, box, factory, on_intake=wake)

    def handlers(self) -> dict[str, JobHandler]:
        return {ANALYSE_JOB: self._analyse_job, NOTIFY_JOB: self._notify_job}

    def failure_handlers(self) -> dict[str, FailureHandler]:
        return {ANALYSE_JOB: self._analysis_failed}

    def housekeeping(self) -> list[Housekeeping]:
        return [(MAILBOX_TICK_SECONDS, self.poller.poll_if_due)]

    # Analysis ---------------------------------------------------------------------------

    async def _analyse_job(self, job: JobContext) -> None:
        await self.analyse_case(uuid.UUID(str(job.payload["case_id"])))

    async def _analysis_failed(self, job: JobContext, error: str) -> None:
        case_id = uuid.UUID(str(job.payload["case_id"]))

        def record() -> None:
            with write_session(self.sessions) as session:
                case = session.get(ReportCase, case_id)
                if case is None:
                    return
                case.analysis_error = error[:2000]
                add_event(
                    session,
                    case_id,
                    "analysis_failed",
                    actor=SYSTEM_ACTOR,
                    message=f"The analysis failed: {error[:500]}",
                )

        await asyncio.to_thread(record)

    def _load(self, case_id: uuid.UUID) -> _Loaded | None:
        with self.sessions() as session:
            case = session.get(ReportCase, case_id)
            if case is None:
                return None
            raw = open_raw(self.box, case.raw)
            inputs = analysis_inputs(session, self.box)
            engines = [*available_engines(self.app_settings, online=False), *inputs.offline_engines]
            return _Loaded(
                raw,
                case.raw_filename,
                case.fidelity,
                engines,
                inputs,
                load_report_settings(session),
            )

    async def analyse_case(self, case_id: uuid.UUID) -> AnalysisResult | None:
        """Analyse a case and act on its verdict; None when the case no longer exists."""
        loaded = await asyncio.to_thread(self._load, case_id)
        if loaded is None:
            return None
        report = await asyncio.to_thread(parse_report, loaded.raw, filename=loaded.filename)
        report = replace(report, fidelity=loaded.fidelity)
        inputs = loaded.inputs
        engines = list(loaded.engines)
        online = any(
            getattr(inputs.online, name).enabled for name in type(inputs.online).model_fields
        )
        if online:
            async with self.http_client() as client:
                engines += online_engines(inputs.online, client=client)
                result = await analyze(
                    report,
                    context=inputs.context,
                    engines=engines,
                    exclusions=inputs.exclusions,
                    engine_timeout=inputs.engine_timeout,
                )
        else:
            result = await analyze(
                report,
                context=inputs.context,
                engines=engines,
                exclusions=inputs.exclusions,
                engine_timeout=inputs.engine_timeout,
            )
        own = inputs.context.own_domains
        signature = await asyncio.to_thread(lambda: minhash(shingles(report.text)))
        features = CaseFeatures(
            sender_domain="",  # filled from the case
            subject=report.subject,
            urls=tuple(
                dict.fromkeys(
                    u.url
                    for u in report.urls
                    if not any(u.domain == d or u.domain.endswith("." + d) for d in own)
                )
            )[:MAX_URL_KEYS],
            hashes=tuple(dict.fromkeys(a.sha256 for a in report.attachments if a.sha256)),
            signature=tuple(signature),
        )
        await asyncio.to_thread(self._store, case_id, result, report, features, loaded.settings)
        return result

    def _store(
        self,
        case_id: uuid.UUID,
        result: AnalysisResult,
        report: Any,
        features: CaseFeatures,
        settings: ReportSettings,
    ) -> None:
        with write_session(self.sessions) as session:
            case = session.get(ReportCase, case_id, with_for_update=True)
            if case is None:
                return
            before = case.verdict
            case.analysis = result.as_dict()
            case.analysis_verdict = result.verdict.value
            case.score = result.score
            case.analysed_at = utcnow()
            case.analysis_error = None
            case.iocs = indicators_of(report)
            case.body_signature = list(features.signature)
            if case.verdict_source != VerdictSource.ANALYST.value:
                case.verdict = result.verdict.value
            add_event(
                session,
                case.id,
                "analysed",
                actor=SYSTEM_ACTOR,
                message=f"Analysis: {result.verdict.value} (score {result.score}/100)"
                + (
                    ""
                    if case.verdict == result.verdict.value
                    else f"; the analyst's verdict {case.verdict} stands"
                )
                + ".",
                detail={
                    "verdict": result.verdict.value,
                    "score": result.score,
                    "evidence": list(result.evidence[:10]),
                    "engines": sorted(result.engine_timings),
                },
            )
            audit.record(
                session,
                actor=SYSTEM_ACTOR,
                operation="report.analyse",
                entity_type="report_case",
                entity_id=str(case.id),
                before={"verdict": before},
                after={"verdict": case.verdict, "score": result.score},
            )
            old_cluster = case.cluster_id
            cluster = assign_cluster(
                session,
                case=case,
                features=replace(features, sender_domain=case.sender_domain),
                threshold=settings.cluster_similarity,
            )
            if cluster is not None and cluster.id != old_cluster:
                add_event(
                    session,
                    case.id,
                    "cluster",
                    actor=SYSTEM_ACTOR,
                    message=f"Grouped with {cluster.case_count - 1} other case(s) of the "
                    "same campaign.",
                    detail={"cluster_id": str(cluster.id)},
                )
            start_auto_investigation(
                session,
                case=case,
                settings=settings,
                own_domains=effective_own_domains(session, settings),
            )
            wanted = settings.notifications
            if (
                case.verdict != before
                and case.verdict_source == VerdictSource.ANALYSIS.value
                and wanted.enabled
                and wanted.on_analysis
                and case.verdict in wanted.verdicts
            ):
                enqueue_notification(session, case.id, reason="analysis", actor=SYSTEM_ACTOR)

    # Notifications ----------------------------------------------------------------------

    async def _notify_job(self, job: JobContext) -> None:
        payload = job.payload
        await self.notify_case(
            uuid.UUID(str(payload["case_id"])),
            key=str(payload.get("key") or job.id),
            addresses=payload.get("addresses"),
            message=payload.get("message"),
            actor=str(payload.get("actor") or SYSTEM_ACTOR),
        )

    async def notify_case(
        self,
        case_id: uuid.UUID,
        *,
        key: str,
        addresses: Sequence[str] | None = None,
        message: str | None = None,
        actor: str = SYSTEM_ACTOR,
    ) -> dict[str, str]:
        """Tell the case's reporters its verdict; returns address -> "sent" or the error."""
        plan = await asyncio.to_thread(self._notification_plan, case_id, key, addresses, message)
        if plan is None:
            return {}
        outcomes: dict[str, str] = {}
        providers: dict[uuid.UUID, Provider] = {}
        try:
            for item in plan["items"]:
                address = item["notification"].to_address
                try:
                    via, where = await self._deliver(plan, item, providers)
                except MailtrawlError as exc:
                    outcomes[address] = exc.message
                    await asyncio.to_thread(
                        self._record_notification, case_id, key, item, None, exc.message, actor
                    )
                    continue
                outcomes[address] = "sent"
                await asyncio.to_thread(
                    self._record_notification, case_id, key, item, (via, where), None, actor
                )
        finally:
            for provider in providers.values():
                try:
                    await provider.aclose()
                except Exception:  # closing must not hide the outcome
                    log.debug("closing a provider failed", exc_info=True)
        return outcomes

    def _notification_plan(
        self,
        case_id: uuid.UUID,
        key: str,
        addresses: Sequence[str] | None,
        message: str | None,
    ) -> dict[str, Any] | None:
        from mailtrawl.settings_store.service import effective_settings, overrides

        with self.sessions() as session:
            case = session.get(ReportCase, case_id)
            if case is None or case.verdict is None:
                return None
            settings = load_report_settings(session)
            secrets = load_secrets(session, self.box)
            if self.app_settings is not None:
                organisation = effective_settings(session, self.app_settings).organisation_name
            else:
                organisation = str(overrides(session).get("organisation_name") or "")
            told = {
                str(e.detail.get("to"))
                for e in session.scalars(
                    select(CaseEvent).where(
                        CaseEvent.case_id == case_id, CaseEvent.kind == "notified"
                    )
                )
                if e.detail.get("key") == key
            }
            wanted = {a.lower() for a in addresses} if addresses is not None else None
            reporters = [
                r
                for r in session.scalars(
                    select(CaseReporter)
                    .where(CaseReporter.case_id == case_id)
                    .order_by(CaseReporter.reported_at)
                )
                if r.address and (wanted is None or r.address in wanted) and r.address not in told
            ]
            subject_template, body_template = template_for(session, case.verdict)
            sender_address = (settings.reporting_mailbox.mailbox or "").strip().lower()
            items = []
            for reporter in reporters:
                variables = notify.variables_for(
                    subject=case.subject,
                    verdict=case.verdict,
                    analyst_message=message,
                    reporter_name=reporter.name,
                    reporter_address=reporter.address,
                    organisation=organisation,
                    reported_at=reporter.reported_at,
                    case_id=str(case.id),
                )
                try:
                    subject, html = notify.render(subject_template, body_template, variables)
                except notify.TemplateRejected:
                    subject, html = notify.render(
                        notify.DEFAULT_SUBJECT, notify.DEFAULT_BODY, variables
                    )
                items.append(
                    {
                        "reporter_id": reporter.id,
                        "verdict": case.verdict,
                        "configuration_id": self._configuration_for(
                            session, settings, reporter.address
                        ),
                        "notification": notify.Notification(
                            to_address=reporter.address,
                            to_name=reporter.name,
                            subject=subject,
                            html=html,
                            message_id=notify.notification_message_id(key, reporter.address),
                            sender_name=settings.notifications.sender_name,
                            sender_address=sender_address,
                        ),
                    }
                )
            return {
                "items": items,
                "via": settings.notifications.via,
                "smtp": settings.smtp,
                "smtp_password": secrets.get("smtp_password"),
            }

    def _configuration_for(
        self, session: Session, settings: ReportSettings, address: str
    ) -> uuid.UUID | None:
        """The configuration to reach a reporter's mailbox through: the one set, else the first
        enabled one whose authorised domains hold the address, else the reporting mailbox's."""
        if settings.notifications.configuration:
            try:
                return get_configuration(session, ref=settings.notifications.configuration).id
            except MailtrawlError:
                return None
        domain = address.rpartition("@")[2].lower()
        for record in session.scalars(
            select(MailConfiguration)
            .where(MailConfiguration.enabled)
            .order_by(MailConfiguration.created_at)
        ):
            if any(
                domain == d.lower() or domain.endswith("." + d.lower())
                for d in record.authorized_domains or ()
            ):
                return record.id
        if settings.reporting_mailbox.configuration:
            try:
                return get_configuration(session, ref=settings.reporting_mailbox.configuration).id
            except MailtrawlError:
                return None
        return None

    async def _deliver(
        self,
        plan: dict[str, Any],
        item: dict[str, Any],
        providers: dict[uuid.UUID, Provider],
    ) -> tuple[str, str]:
        notification: notify.Notification = item["notification"]
        if plan["via"] == "smtp":
            sent = await notify.deliver_by_smtp(plan["smtp"], plan["smtp_password"], notification)
            return "smtp", sent
        configuration_id = item["configuration_id"]
        if configuration_id is None:
            raise notify.DeliveryFailed(
                f"No mail configuration reaches {notification.to_address}: add its domain to a "
                "configuration's authorised domains, or set notifications.configuration."
            )
        provider = providers.get(configuration_id)
        if provider is None:
            provider = self.factory(configuration_id)
            await provider.__aenter__()
            providers[configuration_id] = provider
        created = await notify.deliver_to_mailbox(provider, notification)
        return "mailbox", created

    def _record_notification(
        self,
        case_id: uuid.UUID,
        key: str,
        item: dict[str, Any],
        delivered: tuple[str, str] | None,
        error: str | None,
        actor: str,
    ) -> None:
        notification: notify.Notification = item["notification"]
        with write_session(self.sessions) as session:
            detail = {
                "key": key,
                "to": notification.to_address,
                "verdict": item["verdict"],
                "subject": notification.subject,
            }
            if delivered is None:
                add_event(
                    session,
                    case_id,
                    "notification_failed",
                    actor=actor,
                    message=f"{notification.to_address} could not be told: {error}",
                    detail={**detail, "error": error},
                )
                return
            via, where = delivered
            add_event(
                session,
                case_id,
                "notified",
                actor=actor,
                message=f"Told {notification.to_address} the verdict {item['verdict']} "
                f"({'in their inbox' if via == 'mailbox' else 'by SMTP'}).",
                detail={**detail, "via": via, "message_id": where},
            )
            reporter = session.get(CaseReporter, item["reporter_id"])
            if reporter is not None:
                reporter.notified_at = utcnow()
                reporter.notified_verdict = item["verdict"]
            audit.record(
                session,
                actor=actor,
                operation="report.notify",
                entity_type="report_case",
                entity_id=str(case_id),
                after={"to": notification.to_address, "via": via, "verdict": item["verdict"]},
            )


__all__ = ["MAILBOX_TICK_SECONDS", "ReportEngine"]
