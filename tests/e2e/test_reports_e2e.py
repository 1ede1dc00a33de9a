"""Reported emails in a real browser: a hostile .eml uploaded, queued, analysed and opened
on every tab (the preview frame included), and nothing of it runs.

The email carries `<script>`, `onerror=` and `javascript:` payloads in its subject, its
sender's display name, an attachment's name and its HTML body; each would set
`window.__pwned` or the document's title. The test uploads it through the queue page's form,
waits for the in-process worker's verdict, then opens the queue, the clusters view, the case
and each of its tabs, and checks that no payload ran (no dialog, no `window.__pwned`, no
script error, no CSP report), that the links are text, and that the verdict is shown.
"""

from __future__ import annotations

import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from mailtrawl.web.security import CONTENT_SECURITY_POLICY
from mailtrawl.web.ui.preview import PREVIEW_CSP
from tests.e2e.conftest import Server, Watched, sign_in

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
JS_LINK = "javascript:window.__pwned=1"
RUN = "window.__pwned=1;document.title='pwned'"
LURE = "https://login-micros0ft.example/owa/verify"
SENDER = "evil@hostile-reports.example"
TABS = ("headers", "preview", "urls", "attachments", "reporters", "timeline")


def _hostile(tag: str) -> bytes:
    message = EmailMessage()
    message["From"] = f'"{IMG} {SCRIPT}" <{SENDER}>'
    message["To"] = "alice@contoso.com"
    message["Subject"] = f"{SCRIPT} {IMG} {JS_LINK} {tag}"
    message["Message-ID"] = f"<hostile-report-{tag}@hostile-reports.example>"
    message.set_content(f"Plain part {SCRIPT} {LURE}")
    message.add_alternative(
        f'<p>Dear user</p><script>{RUN}</script><img src=x onerror="{RUN}">'
        f'<svg onload="{RUN}"></svg><a id="bait" href="javascript:{RUN}">click</a>'
        f'<a href="{LURE}">https://outlook.office.com/</a>'
        f'<iframe src="{JS_LINK}"></iframe><form action="{JS_LINK}"><button>Go</button></form>',
        subtype="html",
    )
    message.add_attachment(
        f"<html><body><script>{RUN}</script></body></html>".encode(),
        maintype="text",
        subtype="html",
        filename=f"{IMG} {JS_LINK}.html",
    )
    return message.as_bytes()


def _inert(page: Any, where: str) -> None:
    """Nothing of the payloads ran on the page (or in any of its frames)."""
    assert page.evaluate("typeof window.__pwned") == "undefined", where
    assert page.title() != "pwned", where
    for frame in page.frames[1:]:
        try:
            ran = frame.evaluate("typeof window.__pwned")
        except Exception:  # a sandboxed frame without allow-scripts evaluates nothing
            ran = "undefined"
        assert ran == "undefined", f"{where}: frame {frame.url}"
    planted = "main script, main img, main svg, main iframe:not(.preview), main object"
    assert page.locator(planted).count() == 0, where
    assert page.locator("main a[href^='javascript'], main a[href^='http']").count() == 0, where


def _visit(page: Any, path: str) -> None:
    response = page.goto(path)
    assert response is not None, path
    assert response.status == 200, path
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
    page.wait_for_load_state("networkidle")
    _inert(page, path)


def _wait_analysed(server: Server, case_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.api() as api:
        while True:
            view = api.get(f"/reports/{case_id}").json()
            if view["analysed_at"] is not None:
                return dict(view)
            if time.monotonic() > deadline:
                raise AssertionError(f"case {case_id} not analysed: {view.get('analysis_error')}")
            time.sleep(0.2)


def test_a_hostile_report_is_inert_on_every_page_and_tab(
    page: Any, server: Server, watched: Watched, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    upload = tmp_path / "reported.eml"
    upload.write_bytes(_hostile(tag))

    sign_in(page, "al")
    _visit(page, "/reports")
    page.locator("#upload-file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_url("**/reports/*?done=uploaded")
    case_id = page.url.split("/reports/")[1].split("?")[0]
    view = _wait_analysed(server, case_id)
    assert view["verdict"] is not None, view

    base = f"/reports/{case_id}"
    _visit(page, base)
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{SCRIPT} {IMG} {JS_LINK} {tag}")
    expect(page.locator("[data-case-verdict]")).to_contain_text(view["verdict"])
    expect(page.locator("[data-sender-name]")).to_contain_text(SCRIPT)
    expect(page.locator("[data-indicators]")).to_be_visible()

    # The tabs are links: keyboard users reach and follow them like any link.
    page.locator("[data-tab='headers']").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{base}?tab=headers")
    _inert(page, "headers by keyboard")

    for tab in TABS:
        _visit(page, f"{base}?tab={tab}")
        expect(page.locator(f"[data-tab='{tab}']")).to_have_attribute("aria-current", "page")

    _visit(page, f"{base}?tab=urls")
    expect(page.locator("[data-urls]")).to_contain_text(LURE)
    expect(page.locator("[data-mismatch]").first).to_be_visible()
    _visit(page, f"{base}?tab=attachments")
    expect(page.locator("[data-attachment-name]")).to_have_text(f"{IMG} {JS_LINK}.html")
    with page.expect_download() as download:
        page.locator("[data-download]").first.click()
    assert download.value.suggested_filename.endswith(".zip")

    # The preview: the body in a sandboxed frame of its own, scriptless and linkless.
    for suffix in ("", "&format=text"):
        _visit(page, f"{base}?tab=preview{suffix}")
        frame_element = page.locator("iframe[data-preview]")
        sandbox = frame_element.get_attribute("sandbox")
        assert sandbox is not None
        assert "allow-" not in sandbox
        body = next(f for f in page.frames if "/body" in f.url)
        expect(body.locator("body")).to_contain_text("Dear user" if not suffix else "Plain part")
        assert body.locator("script, iframe, object, form, svg, [onerror], [onload]").count() == 0
        assert body.locator("a[href]").count() == 0
        answer = page.request.get(server.url + str(frame_element.get_attribute("src")))
        assert answer.headers["content-security-policy"] == PREVIEW_CSP
        _inert(page, f"preview{suffix}")

    # The queue and the clusters view show the case, escaped.
    _visit(page, "/reports")
    row = page.locator(f"tr[data-case='{case_id}']")
    expect(row).to_contain_text(SCRIPT)
    expect(row).to_contain_text(f"{IMG} {JS_LINK}.html")
    expect(row.locator(".verdict")).to_have_text(view["verdict"])
    _visit(page, "/reports/clusters")

    assert watched.dialogs == [], watched.dialogs
    assert watched.csp_violations() == [], watched.csp_violations()
    assert watched.errors == [], watched.errors


def test_a_viewer_sees_the_case_without_any_button(
    page: Any, server: Server, watched: Watched
) -> None:
    tag = uuid.uuid4().hex[:8]
    with server.api() as api:
        answer = api.post(
            "/reports",
            files={"file": ("reported.eml", _hostile(tag), "message/rfc822")},
        )
        assert answer.status_code == 202, answer.text
        case_id = str(answer.json()["case_id"])
    view = _wait_analysed(server, case_id)
    sign_in(page, "vic")
    _visit(page, "/reports")
    expect(page.locator("[data-upload]")).to_have_count(0)
    _visit(page, f"/reports/{case_id}")
    expect(page.locator("[data-case-verdict]")).to_contain_text(view["verdict"])
    expect(page.locator("main form[method='post'], main [data-action]")).to_have_count(0)
    _visit(page, f"/reports/{case_id}?tab=attachments")
    expect(page.locator("[data-download]")).to_have_count(0)
    assert watched.dialogs == [], watched.dialogs
    assert watched.csp_violations() == [], watched.csp_violations()
