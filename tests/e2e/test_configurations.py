"""Mail configurations in a real browser: add, test (✗ then ✓), edit, audit, and roles."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from mailtrawl.emulator.testing import EmulatorProcess
from tests.e2e.conftest import CONFIGURATION, Server, Watched, sign_in

TEST_MAILBOX = "alice@contoso.com"


def test_an_admin_adds_a_configuration_fixes_its_secret_and_tests_again(
    page: Any, server: Server, emulator: EmulatorProcess, watched: Watched
) -> None:
    name = f"contoso e2e {uuid.uuid4().hex[:8]}"
    sign_in(page, "ada", path="/configurations")
    page.get_by_role("link", name="+ New").click()
    expect(page.get_by_role("button", name=re.compile("Google Workspace"))).to_be_disabled()
    page.get_by_role("link", name="Microsoft 365").click()
    expect(page.locator("#required-permissions")).to_contain_text("MailboxSettings.ReadWrite")

    page.get_by_label("Name").fill(name)
    page.get_by_label("Tenant ID or domain").fill(emulator.tenant_id)
    page.get_by_label("Client ID").fill(emulator.info["client_id"])
    page.get_by_label("Client secret value").fill("not-the-client-secret-value")
    page.locator("#c-cloud").select_option("custom")
    page.get_by_label("Authority host").fill(emulator.authority_host)
    page.get_by_label("Graph endpoint").fill(emulator.authority_host)
    assert emulator.ca_bundle is not None
    page.get_by_label("CA bundle (PEM, optional)").fill(Path(emulator.ca_bundle).read_text())
    page.get_by_label("Test mailbox").fill(TEST_MAILBOX)
    page.get_by_label("Authorized domains").fill("contoso.com")
    page.get_by_role("button", name="Save and test connection").click()

    # Saved, tested at once: the sign-in check failed, with its fix inline.
    expect(page).to_have_url(re.compile(r"/configurations/[0-9a-f-]{36}\?done=created$"))
    configuration_id = re.search(r"/configurations/([0-9a-f-]{36})", page.url).group(1)  # type: ignore[union-attr]
    token = page.locator('#checks tr[data-check="token"]')
    expect(token).to_have_attribute("data-check-status", "failed")
    expect(token).to_contain_text("✗")
    expect(token.locator("[data-fix]")).to_contain_text("Certificates & secrets")
    expect(page.locator('#checks [data-result="failed"]')).to_be_visible()
    assert "not-the-client-secret-value" not in page.content()

    # Edit: the secret field is empty (write-only); the right secret replaces it.
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Client secret value")).to_have_value("")
    expect(page.get_by_label("Name")).to_have_value(name)
    page.get_by_label("Client secret value").fill(emulator.info["client_secret"])
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(re.compile(rf"/configurations/{configuration_id}\?done=saved$"))

    # Test again swaps the check list in place (htmx): same address, new result.
    page.get_by_role("button", name="Test again").click()
    expect(page.locator('#checks [data-result="ok"]')).to_be_visible(timeout=30_000)
    expect(page.locator('#checks tr[data-check="token"]')).to_have_attribute(
        "data-check-status", "ok"
    )
    expect(page.locator('#checks tr[data-check-status="failed"]')).to_have_count(0)
    expect(page).to_have_url(re.compile(rf"/configurations/{configuration_id}\?done=saved$"))

    page.goto("/configurations")
    row = page.locator(f'tr[data-configuration="{name}"]')
    expect(row.locator(".health.ok")).to_have_text(re.compile("✓"))
    expect(row.locator("[data-last-test]")).to_have_text(
        re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
    )
    expect(row).to_contain_text(TEST_MAILBOX)

    page.goto(f"/audit?entity_id={configuration_id}")
    log = page.locator("main table")
    for operation in ("configuration.create", "configuration.update", "configuration.test"):
        expect(log).to_contain_text(operation)
    expect(page.locator("main table tbody tr")).to_have_count(4)  # create, test, update, test
    expect(log).to_contain_text("ada")
    assert watched.errors == []
    assert watched.csp_violations() == []


def test_a_viewer_sees_the_list_without_buttons_and_cannot_create(
    page: Any, server: Server
) -> None:
    sign_in(page, "vic", path="/configurations")
    expect(page.locator(f'tr[data-configuration="{CONFIGURATION}"]')).to_be_visible()
    main = page.locator("main")
    expect(main.get_by_role("link", name="+ New")).to_have_count(0)
    expect(main.get_by_role("link", name=re.compile("^Edit"))).to_have_count(0)
    expect(main.get_by_role("link", name=re.compile("^Remove"))).to_have_count(0)
    expect(main.locator("form[method=post]")).to_have_count(0)

    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(
        "/configurations/new",
        form={"csrf_token": token, "name": "by a viewer", "tenant": "contoso.com"},
        max_redirects=0,
    )
    assert refused.status == 403
    assert page.request.get("/configurations/new", max_redirects=0).status == 403
