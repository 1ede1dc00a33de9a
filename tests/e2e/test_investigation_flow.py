"""The investigation flow in a real browser, against the real server and the emulator.

An analyst builds the query in the filter builder, previews the plan, starts it and watches it
finish without reloading; deletes every copy after a confirmation with the exact count; the
emulator shows them in Recoverable Items; Restore brings them back to the inbox; the audit log
has the request and the execution; a viewer gets no buttons and is refused anyway.
"""

from __future__ import annotations

import re
import uuid
from email.message import EmailMessage
from typing import Any

from playwright.sync_api import expect

from mailtrawl.emulator.testing import EmulatorProcess
from tests.e2e.conftest import CONFIGURATION, Server, Watched, sign_in

MAILBOXES = ["alice@contoso.com", "bob@contoso.com"]
FLOW_SECONDS = 45_000


def _phish(sender: str, tag: str) -> tuple[bytes, str]:
    message = EmailMessage()
    message["From"] = f"Payroll <{sender}>"
    message["To"] = ", ".join(MAILBOXES)
    message["Subject"] = f"Your salary statement {tag}"
    message_id = f"<salary-{tag}@contoso-payroll.example>"
    message["Message-ID"] = message_id
    message.set_content("Open https://contoso-payroll.example/statement to see it.")
    return message.as_bytes(), message_id


def _folders_of(emulator: EmulatorProcess, mailbox: str, message_id: str) -> list[str]:
    """The folders (well-known names) holding a copy of `message_id` in `mailbox`."""
    return [
        str(folder["wellKnownName"] or folder["displayName"])
        for folder in emulator.snapshot(mailbox)["folders"]
        for message in folder["messages"]
        if message["internetMessageId"] == message_id
    ]


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))


def _confirm(page: Any, count: int) -> None:
    """On the confirmation page: the exact count, no approval needed, then Confirm."""
    expect(page.locator('[data-count="messages"]')).to_have_text(str(count))
    expect(page.locator('[data-approval="none"]')).to_be_visible()
    confirm = page.locator('[data-action="confirm"]')
    expect(confirm).to_contain_text(f"{count} messages")
    confirm.click()


def test_an_analyst_investigates_deletes_and_restores_from_the_dashboard(
    page: Any, server: Server, emulator: EmulatorProcess, watched: Watched
) -> None:
    tag = uuid.uuid4().hex[:8]
    sender = f"payroll-{tag}@contoso-payroll.example"
    raw, message_id = _phish(sender, tag)
    emulator.deliver(raw, MAILBOXES)
    name = f"Payroll phish {tag}"

    # Build the query ---------------------------------------------------------------------
    sign_in(page, "al", path="/investigations/new")
    expect(page.get_by_role("heading", name="New investigation")).to_be_visible()
    page.get_by_label("Name", exact=True).fill(name)
    page.locator("#i-configuration").select_option(CONFIGURATION)
    page.locator('[name="rows-0-field"]').select_option("from")
    # filters.js offers only the operators "from" takes, and hides the header-name input.
    expect(page.locator('[name="rows-0-op"] option[value="contains"]')).to_be_disabled()
    expect(page.locator('[data-row="0"] [data-header-name]')).to_be_hidden()
    page.locator('[name="rows-0-value"]').fill(sender)

    # A mistake first: the server names it next to the row, in place (htmx).
    page.locator('[name="rows-1-field"]').select_option("from_domain")
    page.locator('[name="rows-1-value"]').fill("not a domain")
    page.locator('[data-action="explain"]').click()
    expect(page.locator('[data-row="1"] [data-row-errors]')).to_contain_text("is not a domain")
    expect(page).to_have_url(re.compile(r"/investigations/new$"))
    page.locator('[name="rows-1-value"]').fill("")

    # Explain: the plan, before anything runs.
    page.locator('[data-action="explain"]').click()
    plan = page.locator("#plan-result")
    expect(plan).to_be_visible()
    expect(plan.locator('[data-plan="server"]')).to_contain_text(f'from equals "{sender}"')
    expect(plan.locator('[data-plan="requests"]')).not_to_be_empty()
    assert page.locator("[data-row-errors]").count() == 0

    # Start, and watch it finish without reloading ---------------------------------------
    page.locator('[data-action="start"]').click()
    expect(page).to_have_url(re.compile(r"/investigations/[0-9a-f-]{36}$"))
    investigation_url = page.url
    page.evaluate("window.__samePage = true")  # gone if the page were reloaded
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator("#investigation-summary .status")).to_have_text(
        "completed", timeout=FLOW_SECONDS
    )
    expect(page.locator('[data-stat="hits"]')).to_have_text("2")
    expect(page.locator('[data-action="stop"]')).to_have_count(0)  # only while it runs
    hits = page.locator("#hits tbody tr")
    expect(hits).to_have_count(2, timeout=10_000)  # the table refreshed itself too
    expect(hits.nth(0)).to_contain_text(sender)
    assert page.evaluate("window.__samePage") is True

    # Select every hit, Delete, confirm with the exact count ------------------------------
    page.locator('input[data-select-all="hit"]').check()
    expect(page.locator('#hits input[name="hit"]:checked')).to_have_count(2)
    page.locator('#bulk [data-action="delete"]').click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Delete")
    _confirm(page, 2)
    expect(page).to_have_url(re.compile(r"\?requested="))
    expect(page.locator("[data-requested]")).to_be_visible()
    delete_row = page.locator('#actions tr[data-kind="delete"]')
    expect(delete_row).to_have_attribute("data-status", "completed", timeout=FLOW_SECONDS)
    expect(delete_row.locator('[data-count="verified"]')).to_have_text("2")
    for mailbox in MAILBOXES:
        assert _folders_of(emulator, mailbox, message_id) == ["recoverableitemsdeletions"], mailbox
    receipts = page.request.get(
        delete_row.locator('[data-export="receipts"]').get_attribute("href")
    )
    assert receipts.status == 200
    assert receipts.text().count(message_id) == 2

    # Restore, confirmed the same way -----------------------------------------------------
    delete_row.locator('[data-action="restore"]').click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Restore")
    _confirm(page, 2)
    restore_row = page.locator('#actions tr[data-kind="restore"]')
    expect(restore_row).to_have_attribute("data-status", "completed", timeout=FLOW_SECONDS)
    for mailbox in MAILBOXES:
        assert _folders_of(emulator, mailbox, message_id) == ["inbox"], mailbox
    delete_id = delete_row.get_attribute("data-remediation")
    assert watched.errors == []
    assert watched.csp_violations() == []

    # The audit log has the request and the execution --------------------------------------
    _sign_out(page)
    sign_in(page, "ada", path=f"/audit?entity_id={delete_id}")
    entries = page.locator("main table tbody")
    expect(entries).to_contain_text("remediation.request")
    expect(entries).to_contain_text("remediation.execute")

    # A viewer sees the page but no way to act, and is refused anyway ------------------------
    _sign_out(page)
    sign_in(page, "vic", path=investigation_url.removeprefix(server.url))
    expect(page.locator("#hits tbody tr")).to_have_count(2)
    expect(page.locator("#actions tr[data-remediation]")).to_have_count(2)
    assert page.locator("main input[type=checkbox], main [data-action]").count() == 0
    assert page.locator("main form[method=post]").count() == 0
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(
        investigation_url.removeprefix(server.url) + "/actions",
        form={"csrf_token": token, "action": "delete", "target": "all"},
        max_redirects=0,
    )
    assert refused.status == 403
    for mailbox in MAILBOXES:
        assert _folders_of(emulator, mailbox, message_id) == ["inbox"], mailbox
