"""The reports API: uploads by session, API token and reporter token; limits; roles; the
verdict workflow with the reporter told in their mailbox; settings with write-only secrets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailtrawl.accounts.models import Role
from mailtrawl.analysis.parsing import MAX_REPORT_BYTES
from mailtrawl.config import load_settings
from mailtrawl.configurations.schemas import ConfigurationCreate
from mailtrawl.configurations.service import create_configuration
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.reports.engine import ReportEngine
from mailtrawl.reports.jobs import ANALYSE_JOB, NOTIFY_JOB
from mailtrawl.storage.engine import write_session
from mailtrawl.tasks.models import Job, JobStatus
from mailtrawl.tasks.queue import JobContext
from mailtrawl.tasks.worker import provider_factory
from mailtrawl.web.deps import AppContext
from tests.accounts.helpers import bearer, make_token, make_user, open_session
from tests.analysis.msgbuild import build_msg
from tests.investigations.conftest import FAST_RETRY
from tests.reports.conftest import PE_HEAD, phish, wrapped


@pytest.fixture
def api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: EmulatorProcess
) -> Iterator[TestClient]:
    """The application (no in-process worker: the report jobs are run by `run_jobs`), with a
    mail configuration for the emulator's tenant."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    settings = load_settings(
        home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'mailtrawl.db'}"
    )
    from mailtrawl.web.app import create_app

    app = create_app(settings, worker=False)
    ctx: AppContext = app.state.ctx
    ca = Path(emulator.ca_bundle).read_text() if emulator.ca_bundle else None
    with ctx.sessions.begin() as session:
        create_configuration(
            session,
            box=ctx.box,
            data=ConfigurationCreate.model_validate(
                {
                    "name": "tenant",
                    "tenant": emulator.tenant_id,
                    "client_id": emulator.info["client_id"],
                    "credential": {
                        "kind": "secret",
                        "client_secret": emulator.info["client_secret"],
                    },
                    "cloud": "custom",
                    "custom": {
                        "authority_host": emulator.authority_host,
                        "graph_endpoint": emulator.authority_host,
                        "ca_bundle_pem": ca,
                    },
                    "authorized_domains": ["contoso.com"],
                }
            ),
        )
    with TestClient(app) as client:
        yield client
    ctx.sessions.kw["bind"].dispose()


def _ctx(api: TestClient) -> AppContext:
    ctx: AppContext = api.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def run_jobs(api: TestClient) -> None:
    ctx = _ctx(api)
    engine = ReportEngine(
        ctx.sessions,
        ctx.box,
        provider_factory(ctx.sessions, ctx.box, retry=FAST_RETRY),
        app_settings=ctx.settings,
    )
    for _ in range(10):
        with write_session(ctx.sessions) as session:
            jobs = session.scalars(
                select(Job)
                .where(Job.kind.in_([ANALYSE_JOB, NOTIFY_JOB]), Job.status == "queued")
                .order_by(Job.id)
            ).all()
            batch = [(j.id, j.kind, dict(j.payload)) for j in jobs]
            for job in jobs:
                job.status = JobStatus.DONE.value
        if not batch:
            return
        for job_id, kind, payload in batch:
            handler = engine.handlers()[kind]
            asyncio.run(handler(JobContext(job_id, kind, payload, 1, ctx.sessions)))


def _upload(api: TestClient, raw: bytes, headers: dict[str, str], **fields: str) -> Any:
    return api.post(
        "/api/v1/reports",
        files={"file": ("report.eml", raw, "message/rfc822")},
        data=fields,
        headers=headers,
    )


def test_uploads_by_session_and_token_make_one_case(api: TestClient) -> None:
    analyst = open_session(api, make_user(api, "ana", Role.ANALYST))
    original = phish()
    first = _upload(api, wrapped(original, reporter="Alice <alice@contoso.com>"), analyst.headers())
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["created"] is True
    assert body["reporter"] == "alice@contoso.com"
    token = make_token(api, Role.ANALYST)
    second = api.post(
        "/api/v1/reports",
        content=original,
        headers={**bearer(token), "Content-Type": "message/rfc822", "Reporter": "bob@contoso.com"},
    )
    assert second.status_code == 202, second.text
    assert second.json()["case_id"] == body["case_id"]
    assert second.json()["created"] is False
    run_jobs(api)
    viewer = bearer(make_token(api, Role.VIEWER))
    listed = api.get(
        "/api/v1/reports", params={"verdict": ["phishing", "malicious"]}, headers=viewer
    )
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["items"]] == [body["case_id"]]
    case = api.get(f"/api/v1/reports/{body['case_id']}", headers=viewer).json()
    assert [r["address"] for r in case["reporters"]] == ["alice@contoso.com", "bob@contoso.com"]
    assert case["analysis"]["evidence"]
    # A viewer reads but does not upload.
    refused = _upload(api, original, viewer)
    assert refused.status_code == 403
    assert "needs the analyst role" in refused.json()["detail"]


def test_a_msg_upload_and_the_size_limit(api: TestClient) -> None:
    admin = bearer(make_token(api, Role.ADMIN))
    raw = build_msg(
        subject="Account locked",
        sender="it@helpdesk-contoso.example",
        to="bob@contoso.com",
        body="Unlock at https://helpdesk-contoso.example/unlock",
        headers="Subject: Account locked\r\nFrom: it@helpdesk-contoso.example\r\n",
    )
    sent = api.post(
        "/api/v1/reports",
        files={"file": ("locked.msg", raw, "application/vnd.ms-outlook")},
        data={"reporter": "bob@contoso.com"},
        headers=admin,
    )
    assert sent.status_code == 202, sent.text
    run_jobs(api)
    case = api.get(f"/api/v1/reports/{sent.json()['case_id']}", headers=admin).json()
    assert case["subject"] == "Account locked"
    too_big = api.post(
        "/api/v1/reports",
        content=b"x" * (MAX_REPORT_BYTES + 1),
        headers={**admin, "Content-Type": "message/rfc822"},
    )
    assert too_big.status_code == 413
    assert "50 MB" in too_big.json()["detail"]
    assert api.post("/api/v1/reports", content=b"hi", headers=admin).status_code == 415
    assert (
        api.post(
            "/api/v1/reports",
            content=phish(),
            headers={**admin, "Content-Type": "message/rfc822", "Reporter": "not an address"},
        ).status_code
        == 422
    )


def test_reporter_tokens_submit_only_and_can_be_revoked(api: TestClient) -> None:
    admin = bearer(make_token(api, Role.ADMIN))
    created = api.post("/api/v1/reports/reporter-tokens", json={"name": "add-in"}, headers=admin)
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("mtr_")
    listed = api.get("/api/v1/reports/reporter-tokens", headers=admin)
    assert token not in listed.text
    reporter = bearer(token)
    sent = _upload(api, phish(), reporter, reporter="carol@contoso.com")
    assert sent.status_code == 202, sent.text
    case = api.get(f"/api/v1/reports/{sent.json()['case_id']}", headers=admin).json()
    assert case["reporters"][0]["claimed"] is True
    assert case["reporters"][0]["channel"] == "reporter_token"
    assert case["reporters"][0]["submitted_by"] == "reporter-token:add-in"
    # It must say who reported; it can do nothing else.
    assert _upload(api, phish(), reporter).status_code == 422
    assert api.get("/api/v1/reports", headers=reporter).status_code == 401
    assert api.get("/api/v1/investigations", headers=reporter).status_code == 401
    revoked = api.delete(f"/api/v1/reports/reporter-tokens/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 200
    assert _upload(api, phish(), reporter, reporter="carol@contoso.com").status_code == 401


def test_verdict_change_is_audited_and_the_reporter_is_told_again(
    api: TestClient, emulator: EmulatorProcess
) -> None:
    analyst = open_session(api, make_user(api, "ana", Role.ANALYST))
    admin = bearer(make_token(api, Role.ADMIN))
    assert (
        api.patch(
            "/api/v1/reports/settings",
            json={"auto_investigation": {"enabled": False}},
            headers=admin,
        ).status_code
        == 200
    )
    sent = _upload(api, wrapped(phish(), reporter="Grace <grace@contoso.com>"), analyst.headers())
    case_id = sent.json()["case_id"]
    run_jobs(api)

    def notices() -> list[dict[str, Any]]:
        inbox = next(
            f
            for f in emulator.snapshot("grace@contoso.com")["folders"]
            if f["wellKnownName"] == "inbox"
        )
        return [m for m in inbox["messages"] if m["subject"].startswith("Your report")]

    assert len(notices()) == 1
    changed = api.post(
        f"/api/v1/reports/{case_id}/verdict",
        json={"verdict": "undetected", "message": "A genuine supplier; sorry for the scare."},
        headers=analyst.headers(),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["verdict_source"] == "analyst"
    run_jobs(api)
    assert len(notices()) == 2
    assert any("No threat found" in m["subject"] for m in notices())
    entries = api.get("/api/v1/audit", params={"limit": 200}, headers=admin).json()["items"]
    verdicts = [e for e in entries if e["operation"] == "report.verdict"]
    assert verdicts[0]["actor"] == "ana"
    assert verdicts[0]["after"]["verdict"] == "undetected"
    assert {e["operation"] for e in entries} >= {"report.submit", "report.notify"}
    # Notes, status and tags land on the timeline.
    api.post(
        f"/api/v1/reports/{case_id}/notes",
        json={"text": "Called the supplier."},
        headers=analyst.headers(),
    )
    patched = api.patch(
        f"/api/v1/reports/{case_id}",
        json={"status": "closed", "add_tags": ["supplier"]},
        headers=analyst.headers(),
    ).json()
    assert (patched["status"], patched["tags"]) == ("closed", ["supplier"])
    assert {"note", "status", "tags", "verdict", "notified"} <= {
        e["kind"] for e in patched["timeline"]
    }


def test_settings_secrets_are_write_only_and_attachments_download_as_zip(api: TestClient) -> None:
    admin = bearer(make_token(api, Role.ADMIN))
    changed = api.patch(
        "/api/v1/reports/settings",
        json={
            "online": {"virustotal": {"api_key": "vt-secret-key-1234", "enabled": False}},
            "smtp_password": "smtp-pass-5678",
            "exclusions": {"domains": ["*.trusted.example"]},
        },
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    shown = api.get("/api/v1/reports/settings", headers=admin)
    assert "vt-secret-key-1234" not in shown.text
    assert "smtp-pass-5678" not in shown.text
    assert shown.json()["online_api_keys"]["virustotal"].endswith("1234")
    assert shown.json()["effective_own_domains"] == ["contoso.com"]
    audit_text = api.get("/api/v1/audit", headers=admin).text
    assert "vt-secret-key-1234" not in audit_text
    assert "smtp-pass-5678" not in audit_text
    bad = api.patch(
        "/api/v1/reports/settings", json={"exclusions": {"ips": ["300.1.1.1"]}}, headers=admin
    )
    assert bad.status_code == 422
    sent = _upload(api, phish(attachment=PE_HEAD), admin, reporter="dave@contoso.com")
    case_id = sent.json()["case_id"]
    case = api.get(f"/api/v1/reports/{case_id}", headers=admin).json()
    sha = case["iocs"]["attachments"][0]["sha256"]
    archive = api.get(f"/api/v1/reports/{case_id}/attachments/{sha}", headers=admin)
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    assert archive.content.startswith(b"PK")
    assert PE_HEAD not in archive.content
    viewer = bearer(make_token(api, Role.VIEWER))
    assert (
        api.get(f"/api/v1/reports/{case_id}/attachments/{sha}", headers=viewer).status_code == 403
    )
    missing = api.get(f"/api/v1/reports/{uuid.uuid4()}", headers=viewer)
    assert missing.status_code == 404
