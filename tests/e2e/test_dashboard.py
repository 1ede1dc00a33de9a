"""The dashboard in a real browser: sign-in, health, investigations, roles, CSP, hostile email."""

from __future__ import annotations

import re
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from playwright.sync_api import expect

from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.web.security import CONTENT_SECURITY_POLICY
from tests.e2e.conftest import (
    CONFIGURATION,
    Server,
    Watched,
    configuration_body,
    sign_in,
    wait_finished,
)

PHISH_FROM = "security@contoso-helpdesk.example"
MAILBOXES = ["alice@contoso.com", "bob@contoso.com", "erin@contoso.com"]

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
JS_LINK = "javascript:window.__pwned=1"
HOSTILE_FROM = "evil@hostile.example"


def _phish(tag: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"IT Helpdesk <{PHISH_FROM}>"
    message["To"] = "alice@contoso.com"
    message["Subject"] = f"Verify your mailbox {tag}"
    message["Message-ID"] = f"<verify-{tag}@contoso-helpdesk.example>"
    message.set_content("Your mailbox is full. Verify at https://contoso-helpdesk.example/verify")
    return message.as_bytes()


def _hostile(tag: str) -> bytes:
    message = EmailMessage()
    message["From"] = Address(display_name=f"{IMG} {SCRIPT}", addr_spec=HOSTILE_FROM)
    message["To"] = "alice@contoso.com"
    message["Subject"] = f"{SCRIPT} {IMG} {JS_LINK} {tag}"
    message["Message-ID"] = f"<hostile-{tag}@hostile.example>"
    message.set_content("Open the attachment.")
    message.add_alternative(f'<p><a href="{JS_LINK}">Open</a> {SCRIPT}</p>', subtype="html")
    message.add_attachment(
        f"<html><body>{SCRIPT}</body></html>".encode(),
        maintype="text",
        subtype="html",
        filename=f"{IMG} {JS_LINK}.html",
    )
    return message.as_bytes()


def _investigate(server: Server, name: str, query: dict[str, Any]) -> str:
    with server.api() as api:
        created = api.post(
            "/investigations", json={"name": name, "configuration": CONFIGURATION, "query": query}
        )
        assert created.status_code == 202, created.text
        return str(created.json()["id"])


def _unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def test_sign_in_refuses_a_wrong_password_and_admits_the_right_one(
    page: Any, server: Server, watched: Watched
) -> None:
    page.goto("/investigations")
    expect(page).to_have_url(re.compile(r"/login\?next=/investigations$"))
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page).to_have_url(re.compile(r"/login$"))
    # An unknown user hears the same sentence.
    page.get_by_label("Username").fill("nobody-here")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")

    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/investigations$"))
    expect(page.get_by_role("heading", name="Investigations")).to_be_visible()
    expect(page.locator(".who")).to_contain_text("ada")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert watched.errors == []


def test_dashboard_shows_each_configuration_health(
    page: Any, server: Server, emulator: EmulatorProcess
) -> None:
    good, bad = _unique("healthy"), _unique("broken")
    with server.api() as api:
        for name, secret in ((good, None), (bad, "not-the-secret")):
            created = api.post(
                "/mail-configurations", json=configuration_body(emulator, name=name, secret=secret)
            )
            assert created.status_code == 201, created.text
            tested = api.post(f"/mail-configurations/{name}/test")
            assert tested.status_code == 200, tested.text
    sign_in(page, "vic")
    health = page.locator("#configuration-health")
    expect(health.locator(f'tr[data-configuration="{good}"] .health.ok')).to_have_text(
        re.compile("✓")
    )
    expect(health.locator(f'tr[data-configuration="{bad}"] .health.failed')).to_have_text(
        re.compile("✗")
    )


def test_an_investigation_created_through_the_api_appears_with_its_hits(
    page: Any, server: Server, emulator: EmulatorProcess, watched: Watched
) -> None:
    tag = uuid.uuid4().hex[:8]
    emulator.deliver(_phish(tag), MAILBOXES)
    sign_in(page, "al")
    # Slow Graph down, so the page sees the investigation running, then finishing.
    emulator.settings(faults={"latency_ms": 400})
    name = _unique("helpdesk phish")
    investigation_id = _investigate(
        server, name, {"match": {"from": PHISH_FROM, "subject": {"contains": tag}}}
    )
    page.goto("/investigations")
    row = page.locator(f'tr[data-investigation="{investigation_id}"]')
    expect(row).to_contain_text(name)
    expect(row.locator(".status")).to_have_text(re.compile("queued|running"))
    assert page.locator("#investigations-table[hx-trigger]").count() == 1
    # The table polls itself (htmx, every 2 s) while something runs: no reload needed.
    expect(row.locator(".status")).to_have_text("completed", timeout=30_000)
    expect(row.locator("td.num")).to_have_text("3")
    expect(page.locator("#investigations-table[hx-trigger]")).to_have_count(0)

    row.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator('[data-stat="hits"]')).to_have_text("3")
    hits = page.locator("#hits tbody tr")
    expect(hits).to_have_count(3)
    # Sorting by mailbox swaps the table in place and puts the address in the URL.
    page.locator("#hits").get_by_role("link", name="Mailbox", exact=True).click()
    expect(page).to_have_url(re.compile(r"sort=mailbox"))
    expect(hits.nth(0)).to_contain_text("alice@contoso.com")
    expect(hits.nth(2)).to_contain_text("erin@contoso.com")
    # Filtering happens in SQL too.
    page.get_by_label("Mailbox", exact=True).fill("bob@contoso.com")
    page.get_by_role("button", name="Filter").click()
    expect(hits).to_have_count(1)
    expect(hits.nth(0)).to_contain_text("bob@contoso.com")
    assert watched.errors == []
    assert watched.csp_violations() == []


def test_a_viewer_sees_no_action_buttons_and_is_refused_anyway(
    page: Any, server: Server, emulator: EmulatorProcess
) -> None:
    tag = uuid.uuid4().hex[:8]
    emulator.deliver(_phish(tag), MAILBOXES[:1])
    investigation_id = _investigate(
        server, _unique("for approval"), {"match": {"subject": {"contains": tag}}}
    )
    wait_finished(server, investigation_id)
    with server.api() as api:
        requested = api.post(
            f"/investigations/{investigation_id}/actions", json={"action": "purge"}
        )
        assert requested.status_code == 201, requested.text
        action_id = requested.json()["action"]["id"]
        assert requested.json()["action"]["status"] == "awaiting_approval"

    sign_in(page, "vic")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    for path in ("/", "/investigations", f"/investigations/{investigation_id}", "/approvals"):
        page.goto(path)
        expect(page.locator("main")).to_be_visible()
        assert (
            page.locator("main [data-action], main [data-decision], main form[method=post]").count()
            == 0
        ), path
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Audit log")
    expect(page.locator(f'[data-action-id="{action_id}"]')).to_be_visible()

    # The server refuses what the page does not offer, even with a valid CSRF token.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(
        f"/approvals/{action_id}/approve", form={"csrf_token": token}, max_redirects=0
    )
    assert refused.status == 403
    assert page.request.get("/audit", max_redirects=0).status == 403
    assert page.request.get("/investigations/new", max_redirects=0).status == 403


def test_an_administrator_approves_what_another_requested(
    page: Any, server: Server, emulator: EmulatorProcess
) -> None:
    tag = uuid.uuid4().hex[:8]
    emulator.deliver(_phish(tag), MAILBOXES[:1])
    investigation_id = _investigate(
        server, _unique("approve me"), {"match": {"subject": {"contains": tag}}}
    )
    wait_finished(server, investigation_id)
    with server.api() as api:
        requested = api.post(
            f"/investigations/{investigation_id}/actions", json={"action": "purge"}
        )
        assert requested.status_code == 201, requested.text
        action_id = requested.json()["action"]["id"]

    sign_in(page, "ann", path="/approvals")
    card = page.locator(f'[data-action-id="{action_id}"]')
    expect(card).to_contain_text("purge")
    card.get_by_role("button", name="Approve").click()  # confirmed by the dialog handler
    expect(page.get_by_role("status")).to_have_text("The action was approved and queued.")
    expect(card).to_have_count(0)
    with server.api() as api:
        assert api.get(f"/actions/{action_id}").json()["decided_by"] == "ann"


def test_every_page_sends_the_security_headers(page: Any, server: Server) -> None:
    login = page.goto("/login")
    assert login.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    sign_in(page, "ada")
    for path in (
        "/",
        "/investigations",
        "/investigations/new",
        "/approvals",
        "/audit",
        "/configurations",
        "/settings",
        "/no-such-page",
    ):
        response = page.goto(path)
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["cache-control"] == "no-store", path
    api = page.request.get("/api/v1/health")
    assert api.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert api.headers["cache-control"] == "no-store"


def test_hostile_email_is_shown_as_text_and_never_runs(
    page: Any, server: Server, emulator: EmulatorProcess, watched: Watched
) -> None:
    tag = uuid.uuid4().hex[:8]
    emulator.deliver(_hostile(tag), MAILBOXES)
    name = f"{SCRIPT} {IMG} {tag}"
    investigation_id = _investigate(
        server,
        name,
        {
            "match": {
                "from": HOSTILE_FROM,
                "attachment_extension": "html",
                "subject": {"contains": tag},
            }
        },
    )
    view = wait_finished(server, investigation_id)
    assert view["progress"]["hits"] == 3, view
    with server.api() as api:
        hit = api.get(f"/investigations/{investigation_id}/results").json()["items"][0]
    assert SCRIPT in hit["subject"], hit
    assert IMG in hit["sender_name"], hit
    assert IMG in hit["attachment_names"], hit

    sign_in(page, "ada")
    pages = [
        "/",
        "/investigations",
        f"/investigations/{investigation_id}",
        f"/investigations/{investigation_id}?sort=subject",
        "/audit",
    ]
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("typeof window.__pwned") == "undefined", path
    # The hits table as htmx swaps it in.
    page.goto(f"/investigations/{investigation_id}")
    page.locator("#hits").get_by_role("link", name="Sender", exact=True).click()
    expect(page).to_have_url(re.compile(r"sort=sender"))
    page.wait_for_load_state("networkidle")
    hits = page.locator("#hits tbody tr")
    expect(hits).to_have_count(3)
    # What the attacker wrote is on the page, as text.
    expect(hits.nth(0)).to_contain_text(SCRIPT)
    expect(hits.nth(0)).to_contain_text(IMG)
    expect(hits.nth(0)).to_contain_text(JS_LINK)
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    assert page.locator("#hits img, #hits script, main a[href^='javascript']").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.dialogs == []
    assert watched.csp_violations() == [], watched.csp_violations()
    assert watched.errors == []
