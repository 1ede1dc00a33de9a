"""The settings page in a real browser: the approval threshold takes effect, users, API tokens,
and what a viewer sees."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from mailtrawl.config import load_settings
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.settings_store import service as store
from mailtrawl.storage.engine import make_engine, make_session_factory, write_session
from tests.e2e.conftest import CONFIGURATION, PASSWORD, Server, Watched, sign_in, wait_finished

MAILBOXES = ["alice@contoso.com", "bob@contoso.com", "erin@contoso.com"]


def _phish(tag: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Payroll <payroll@payroll-update.example>"
    message["To"] = "staff@contoso.com"
    message["Subject"] = f"Update your bank details {tag}"
    message["Message-ID"] = f"<payroll-{tag}@payroll-update.example>"
    message.set_content("Confirm your bank details today.")
    return message.as_bytes()


@pytest.fixture
def defaults_after(server: Server) -> Iterator[None]:
    """Put the runtime settings back to the server's defaults, whatever the test did."""
    yield
    settings = load_settings(
        home=server.home, database_url=f"sqlite:///{server.home / 'mailtrawl.db'}"
    )
    engine = make_engine(settings)
    try:
        with write_session(make_session_factory(engine)) as session:
            store.update_settings(
                session,
                settings=settings,
                changes=store.editable_values(settings),
                actor="e2e cleanup",
            )
    finally:
        engine.dispose()


def test_an_administrator_sets_the_approval_threshold_and_it_applies(
    page: Any,
    server: Server,
    emulator: EmulatorProcess,
    watched: Watched,
    defaults_after: None,
) -> None:
    tag = uuid.uuid4().hex[:8]
    emulator.deliver(_phish(tag), MAILBOXES)
    with server.api() as api:
        created = api.post(
            "/investigations",
            json={
                "name": f"payroll {tag}",
                "configuration": CONFIGURATION,
                "query": {"match": {"subject": {"contains": tag}}},
            },
        )
        assert created.status_code == 202, created.text
        investigation_id = created.json()["id"]
    assert wait_finished(server, investigation_id)["progress"]["hits"] == 3
    with server.api() as api:
        preview = api.post(
            f"/investigations/{investigation_id}/actions", json={"action": "junk", "dry_run": True}
        ).json()
        assert preview["preview"]["requires_approval"] is False, preview

    sign_in(page, "ada", path="/settings")
    form = page.locator('form[data-form="remediation"]')
    form.get_by_label("Approval needed above (messages)").fill("1")
    form.get_by_role("button", name="Save remediation settings").click()
    expect(page.get_by_role("status")).to_have_text("The remediation settings were saved.")
    expect(form.get_by_label("Approval needed above (messages)")).to_have_value("1")

    with server.api() as api:
        requested = api.post(f"/investigations/{investigation_id}/actions", json={"action": "junk"})
        assert requested.status_code == 201, requested.text
        action = requested.json()["action"]
        assert action["status"] == "awaiting_approval"
        assert "approval threshold (1)" in action["approval_reason"]
        assert api.get(f"/actions/{action['id']}").json()["status"] == "awaiting_approval"
        entries = api.get("/audit", params={"operation": "settings.update"}).json()["items"]
        assert entries[0]["actor"] == "ada"
        assert entries[0]["after"] == {"approval_threshold": 1}
    assert watched.errors == []
    assert watched.csp_violations() == []


def test_an_administrator_creates_a_viewer_who_can_sign_in(page: Any, server: Server) -> None:
    username = f"vera{uuid.uuid4().hex[:6]}"
    sign_in(page, "ada", path="/settings")
    form = page.locator('form[data-form="user-create"]')
    form.get_by_label("Username").fill(username)
    form.get_by_label("Role", exact=True).select_option("viewer")
    form.get_by_label("Initial password").fill(PASSWORD)
    form.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_contain_text("The user was created")
    row = page.locator(f'tr[data-user="{username}"]')
    expect(row).to_be_visible()
    expect(row.get_by_label(f"Role of {username}")).to_have_value("viewer")

    page.context.clear_cookies()
    sign_in(page, username, path="/settings")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.locator("[data-section]")).to_have_count(1)
    expect(page.locator("main")).to_contain_text(username)


def test_an_administrator_creates_and_revokes_an_api_token(page: Any, server: Server) -> None:
    name = f"SIEM {uuid.uuid4().hex[:6]}"
    sign_in(page, "ada", path="/settings")
    form = page.locator('form[data-form="token-create"]')
    form.get_by_label("Token name").fill(name)
    form.get_by_label("Token role").select_option("viewer")
    form.get_by_label("Expires after (days; empty: never)").fill("7")
    form.get_by_role("button", name="Create token").click()
    token = page.get_by_label("Token", exact=True).input_value()
    assert re.fullmatch(r"mtk_[A-Za-z0-9_-]{20,}", token)

    def me() -> httpx.Response:
        return httpx.get(
            server.url + "/api/v1/auth/me",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )

    assert me().json()["role"] == "viewer"
    page.goto("/settings")
    expect(page.locator("[data-issued-token]")).to_have_count(0)  # shown once
    row = page.locator("tr[data-token]", has_text=name)
    expect(row).to_contain_text("ada")
    row.get_by_role("button", name=re.compile("^Revoke")).click()  # the dialog is accepted
    expect(page.get_by_role("status")).to_have_text("The API token was revoked.")
    expect(page.locator("tr[data-token]", has_text=name)).to_contain_text("revoked")
    assert me().status_code == 401


def test_a_viewer_sees_only_their_account(page: Any, server: Server) -> None:
    sign_in(page, "vic", path="/settings")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.locator("[data-section]")).to_have_count(1)
    for heading in ("Users and roles", "API tokens", "Remediation"):
        expect(page.get_by_role("heading", name=heading)).to_have_count(0)
    expect(page.get_by_label("Current password")).to_be_visible()
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(
        "/settings/remediation",
        form={"csrf_token": token, "approval_threshold": "0"},
        max_redirects=0,
    )
    assert refused.status == 403
