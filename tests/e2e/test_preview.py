"""The message preview in a real browser: a hostile body is shown inert, in a sandboxed frame."""

from __future__ import annotations

import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from playwright.sync_api import expect

from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.web.ui.preview import PREVIEW_CSP
from tests.e2e.conftest import CONFIGURATION, Server, Watched, sign_in, wait_finished

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
JS_LINK = "javascript:window.__pwned=1"
TRACKER = "http://127.0.0.1:9/track.png"
SENDER = "evil@preview.example"


def _hostile(tag: str) -> bytes:
    message = EmailMessage()
    message["From"] = Address(display_name=f"{IMG} {SCRIPT}", addr_spec=SENDER)
    message["To"] = "alice@contoso.com"
    message["Subject"] = f"{SCRIPT} {IMG} {JS_LINK} {tag}"
    message["Message-ID"] = f"<preview-{tag}@preview.example>"
    message.set_content("Your mailbox is full.")
    message.add_alternative(
        f"<p>Dear user, your mailbox is full.</p>{SCRIPT}{IMG}"
        f'<a id="bait" href="{JS_LINK}">click</a>'
        f'<img src="{TRACKER}">'
        '<form action="http://127.0.0.1:9/steal"><input name="password"><button>Go</button></form>',
        subtype="html",
    )
    message.add_attachment(
        f"<html><body>{SCRIPT}</body></html>".encode(),
        maintype="text",
        subtype="html",
        filename=f"{IMG} {JS_LINK}.html",
    )
    return message.as_bytes()


def _body_frame(page: Any) -> Any:
    frames = [f for f in page.frames if "/body" in f.url]
    assert len(frames) == 1, [f.url for f in page.frames]
    return frames[0]


def test_a_hostile_body_is_previewed_inert_in_a_sandboxed_frame(
    page: Any, server: Server, emulator: EmulatorProcess, watched: Watched
) -> None:
    tag = uuid.uuid4().hex[:8]
    emulator.deliver(_hostile(tag), ["alice@contoso.com"])
    with server.api() as api:
        created = api.post(
            "/investigations",
            json={
                "name": f"Preview {tag}",
                "configuration": CONFIGURATION,
                "query": {"match": {"from": SENDER, "subject": {"contains": tag}}},
            },
        )
        assert created.status_code == 202, created.text
        investigation_id = str(created.json()["id"])
    view = wait_finished(server, investigation_id)
    assert view["progress"]["hits"] == 1, view

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    sign_in(page, "vic")  # a viewer may read (and is audited)
    page.goto(f"/investigations/{investigation_id}")
    page.locator("#hits a[data-preview]").first.click()
    page.wait_for_url(f"**/investigations/{investigation_id}/hits/*")
    page.wait_for_load_state("networkidle")
    preview_url = page.url

    # The metadata is text on the page; nothing of it ran.
    expect(page.get_by_role("heading", level=1)).to_contain_text(SCRIPT)
    expect(page.locator("[data-sender]")).to_contain_text(IMG)
    expect(page.locator("[data-attachments]")).to_contain_text(f"{IMG} {JS_LINK}.html")
    assert page.locator("[data-attachments] a").count() == 0
    # The frame: sandboxed, with no allow-* token.
    frame_element = page.locator("iframe.preview")
    expect(frame_element).to_have_count(1)
    sandbox = frame_element.get_attribute("sandbox")
    assert sandbox is not None
    assert "allow-scripts" not in sandbox
    assert "allow-same-origin" not in sandbox
    body = _body_frame(page)
    body.wait_for_load_state()
    expect(body.locator("body")).to_contain_text("Dear user, your mailbox is full.")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    # A sandboxed frame without allow-scripts cannot evaluate script at all; if it could,
    # it must not have been pwned either.
    try:
        inside = body.evaluate("typeof window.__pwned")
    except Exception:  # script execution is blocked in the sandbox: the strongest answer
        inside = "undefined"
    assert inside == "undefined"
    assert body.locator("script, form, [onerror]").count() == 0
    # The javascript: link was neutralised: clicking it does nothing.
    bait = body.locator("a", has_text="click")
    if bait.count():
        href = bait.first.get_attribute("href")
        assert href is None or not href.lower().startswith("javascript")
        bait.first.click()
        page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.url == preview_url
    # Nothing went to the tracker's port.
    assert not [url for url in requests if "127.0.0.1:9/" in url], requests
    # The body's response carries the strict preview CSP.
    body_url = server.url + frame_element.get_attribute("src")
    answer = page.request.get(body_url)
    assert answer.status == 200
    assert answer.headers["content-security-policy"] == PREVIEW_CSP
    # The plain-text rendering shows the markup as text.
    page.get_by_role("link", name="Plain text").click()
    page.wait_for_load_state("networkidle")
    text_frame = _body_frame(page)
    expect(text_frame.locator("pre")).to_be_visible()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert not [url for url in requests if "127.0.0.1:9/" in url], requests
    assert watched.dialogs == []
    assert watched.errors == []
