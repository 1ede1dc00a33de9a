"""Hostile email content on every page that shows it, in a real browser: nothing runs.

One email carries `<script>`, `onerror=` and `javascript:` payloads in its subject, its
sender's display name, an attachment's name and its HTML body; the investigation's name and
an action's note carry them too. Every payload would set `window.__pwned` and the document's
title. The test opens each page that shows them — the investigation list, the investigation
(hits table, campaigns), the message preview and its sandboxed body document, the
confirmation page (with the warning notice's preview frame), the audit log and the approvals
page — and checks that nothing changed, no dialog opened, no script error or CSP report
happened, and that each page was sent with the dashboard's CSP.
"""

from __future__ import annotations

import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from playwright.sync_api import expect

from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.web.security import CONTENT_SECURITY_POLICY
from mailtrawl.web.ui.preview import PREVIEW_CSP
from tests.e2e.conftest import CONFIGURATION, Server, Watched, sign_in, wait_finished

# Short payloads in headers (a long subject is folded and harder to find again); the body's
# also change the document's title.
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
JS_LINK = "javascript:window.__pwned=1"
RUN = "window.__pwned=1;document.title='pwned'"
BODY_SCRIPT = f"<script>{RUN}</script>"
BODY_IMG = f'<img src=x onerror="{RUN}">'
SVG = f'<svg onload="{RUN}">'
SENDER = "evil@hostile-pages.example"
MAILBOXES = ["alice@contoso.com", "bob@contoso.com"]


def _hostile(tag: str) -> bytes:
    message = EmailMessage()
    message["From"] = Address(display_name=f"{IMG} {SCRIPT}", addr_spec=SENDER)
    message["To"] = ", ".join(MAILBOXES)
    message["Subject"] = f"{SCRIPT} {IMG} {JS_LINK} {tag}"
    message["Message-ID"] = f"<hostile-pages-{tag}@hostile-pages.example>"
    message.set_content(f"Plain part {SCRIPT}")
    message.add_alternative(
        f"<p>Dear user</p>{BODY_SCRIPT}{BODY_IMG}{SVG}"
        f'<a id="bait" href="javascript:{RUN}">click</a>'
        f'<iframe src="{JS_LINK}"></iframe><object data="{JS_LINK}"></object>'
        f'<form action="{JS_LINK}"><button>Go</button></form>',
        subtype="html",
    )
    message.add_attachment(
        f"<html><body>{BODY_SCRIPT}</body></html>".encode(),
        maintype="text",
        subtype="html",
        filename=f"{IMG} {JS_LINK}.html",
    )
    return message.as_bytes()


def _inert(page: Any, where: str) -> None:
    """Nothing of the payloads ran on the page (or in any of its frames)."""
    assert page.evaluate("typeof window.__pwned") == "undefined", where
    assert page.title() != "pwned", where  # what the body's payloads would set
    for frame in page.frames[1:]:
        try:
            ran = frame.evaluate("typeof window.__pwned")
        except Exception:  # a sandboxed frame without allow-scripts evaluates nothing
            ran = "undefined"
        assert ran == "undefined", f"{where}: frame {frame.url}"


def _visit(page: Any, path: str) -> None:
    response = page.goto(path)
    assert response is not None, path
    assert response.status == 200, path
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
    page.wait_for_load_state("networkidle")
    _inert(page, path)


def test_hostile_content_never_runs_on_any_page_that_shows_it(
    page: Any, server: Server, emulator: EmulatorProcess, watched: Watched
) -> None:
    tag = uuid.uuid4().hex[:8]
    emulator.deliver(_hostile(tag), MAILBOXES)
    name = f"{SCRIPT} {IMG} {tag}"
    with server.api() as api:
        created = api.post(
            "/investigations",
            json={
                "name": name,
                "configuration": CONFIGURATION,
                "query": {"match": {"from": SENDER, "subject": {"contains": tag}}},
            },
        )
        assert created.status_code == 202, created.text
        investigation_id = str(created.json()["id"])
    view = wait_finished(server, investigation_id)
    assert view["progress"]["hits"] == 2, view

    sign_in(page, "ada")
    base = f"/investigations/{investigation_id}"
    # The list and the investigation (hits table, campaigns, actions).
    _visit(page, "/investigations")
    expect(page.locator("main")).to_contain_text(SCRIPT)
    _visit(page, base)
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator("#hits tbody tr").first).to_contain_text(IMG)
    expect(page.locator("#campaigns")).to_contain_text(SCRIPT)
    planted = "#hits script, #hits img, #hits svg, #campaigns script, #campaigns img"
    assert page.locator(f"{planted}, main a[href^='javascript']").count() == 0

    # The message preview: metadata as text, the body in a sandboxed frame of its own.
    page.locator("#hits a[data-preview]").first.click()
    page.wait_for_url(f"**{base}/hits/*")
    page.wait_for_load_state("networkidle")
    preview_url = page.url
    _inert(page, "preview")
    expect(page.locator("[data-sender]")).to_contain_text(IMG)
    expect(page.locator("[data-attachments]")).to_contain_text(f"{IMG} {JS_LINK}.html")
    frame_element = page.locator("iframe.preview")
    sandbox = frame_element.get_attribute("sandbox")
    assert sandbox is not None
    assert "allow-" not in sandbox
    body = next(f for f in page.frames if "/body" in f.url)
    expect(body.locator("body")).to_contain_text("Dear user")
    assert body.locator("script, iframe, object, form, svg, [onerror], [onload]").count() == 0
    hrefs = [a.get_attribute("href") or "" for a in body.locator("a").all()]
    assert not [h for h in hrefs if h.lower().startswith("javascript")], hrefs
    answer = page.request.get(server.url + str(frame_element.get_attribute("src")))
    assert answer.headers["content-security-policy"] == PREVIEW_CSP
    page_answer = page.request.get(preview_url)
    assert page_answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    _inert(page, "preview body")

    # The confirmation page of a warning with a notice: its preview quotes the subject.
    _visit(page, base)
    page.locator("#bulk-target").select_option("all")
    page.locator("#bulk-notify").check()
    with page.expect_response(lambda r: r.url.endswith("/actions/preview")) as confirm:
        page.locator("#bulk").get_by_role("button", name="Warn").click()
    assert confirm.value.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    page.wait_for_load_state("networkidle")
    expect(page.locator("[data-notice-preview]")).to_have_count(1)
    notice_frame = page.locator("[data-notice-preview]")
    notice_sandbox = notice_frame.get_attribute("sandbox")
    assert notice_sandbox is not None
    assert "allow-" not in notice_sandbox
    expect(page.locator("main")).to_contain_text(name)
    _inert(page, "confirm")
    page.get_by_role("button", name="Preview the notice").click()
    page.wait_for_load_state("networkidle")
    _inert(page, "confirm, notice previewed again")

    # (After the confirmation: the waiting purge leaves nothing else to act on.)
    with server.api() as api:
        # Purge needs a second administrator by default: it waits on the Approvals page.
        waiting = api.post(
            f"/investigations/{investigation_id}/actions",
            json={"action": "purge", "note": f"{SCRIPT} {IMG} {JS_LINK}"},
        )
        assert waiting.status_code == 201, waiting.text
        assert waiting.json()["action"]["status"] == "awaiting_approval"
    # The audit log (investigation names, previewed subjects) and the approvals page.
    _visit(page, "/audit")
    expect(page.locator("main")).to_contain_text("message.preview")
    _visit(page, "/approvals")
    card = page.locator("[data-action-id]").filter(has_text=name)
    expect(card).to_have_count(1)
    expect(card).to_contain_text(f"{SCRIPT} {IMG} {JS_LINK}")  # the note, as text

    assert watched.dialogs == [], watched.dialogs
    assert watched.csp_violations() == [], watched.csp_violations()
    assert watched.errors == [], watched.errors
