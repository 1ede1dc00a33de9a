"""The reported-email pages without a browser: queue, upload, case tabs, actions, archive, roles."""

from __future__ import annotations

import asyncio
import hashlib
import html
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import pyzipper  # type: ignore[import-untyped]
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select

from mailtrawl.accounts.models import Role
from mailtrawl.audit.models import AuditEntry
from mailtrawl.reports import service as reports_service
from mailtrawl.reports.engine import ReportEngine
from mailtrawl.reports.intake import submit_report
from mailtrawl.reports.models import CaseEvent, Channel, ReportCase
from mailtrawl.storage.engine import write_session
from mailtrawl.web.ui import reports as ui_reports
from mailtrawl.web.ui.preview import PREVIEW_CSP
from tests.web.conftest import add_user, sign_in

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
JS_LINK = "javascript:window.__pwned=1"
# What must never reach a page as markup (the words may appear, escaped, as text).
PAYLOADS = (SCRIPT, IMG, "<img src=x", 'onerror="window', 'href="javascript', 'src="javascript')
ATTACKER = "billing@invoice-portal.example"
LURE = "https://login-micros0ft.example/owa/verify"
PAYLOAD_BYTES = b"MZ\x90\x00 not really a program, but it says so"
TABS = ("summary", "headers", "preview", "urls", "attachments", "reporters", "timeline")


def hostile_email(tag: str = "1", *, sender: str = ATTACKER, subject: str | None = None) -> bytes:
    """An email with `<script>`, `onerror=` and `javascript:` in every field a page shows."""
    message = EmailMessage()
    message["From"] = f'"{IMG} {SCRIPT}" <{sender}>'
    message["To"] = "alice@contoso.com"
    message["Subject"] = subject if subject is not None else f"{SCRIPT} {IMG} {JS_LINK} {tag}"
    message["Message-ID"] = f"<hostile-{tag}@invoice-portal.example>"
    message["Received"] = (
        "from mail.invoice-portal.example (mail.invoice-portal.example [203.0.113.9]) "
        "by mx.contoso.com; Mon, 3 Mar 2025 10:00:00 +0000"
    )
    message["Authentication-Results"] = "mx.contoso.com; spf=fail; dkim=none; dmarc=fail"
    message.set_content(f"Plain part {SCRIPT} sign in at {LURE} today")
    message.add_alternative(
        f"<p>Dear user</p>{SCRIPT}{IMG}"
        f'<a href="{LURE}">https://outlook.office.com/</a>'
        f'<a href="{JS_LINK}">click</a><img src="http://127.0.0.1:9/t.png">',
        subtype="html",
    )
    message.add_attachment(
        PAYLOAD_BYTES,
        maintype="application",
        subtype="octet-stream",
        filename=f"{IMG} {JS_LINK}.exe",
    )
    return message.as_bytes()


def plain_email(tag: str, *, sender: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "alice@contoso.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<plain-{tag}@example.org>"
    message.set_content(f"Message number {tag}.")
    return message.as_bytes()


def _ctx(client: TestClient) -> Any:
    return client.app.state.ctx  # type: ignore[attr-defined]


def submit(client: TestClient, raw: bytes, reporter: str | None = None) -> uuid.UUID:
    ctx = _ctx(client)
    with write_session(ctx.sessions) as session:
        result = submit_report(
            session,
            box=ctx.box,
            raw=raw,
            filename="report.eml",
            channel=Channel.UPLOAD,
            actor="tests",
            reporter=reporter,
        )
        return result.case.id


def analyse(client: TestClient, case_id: uuid.UUID) -> None:
    """Run the offline analysis of a case (what the worker's job does)."""
    ctx = _ctx(client)

    def no_provider(configuration_id: uuid.UUID) -> Any:
        raise AssertionError("the analysis needs no mail configuration")

    engine = ReportEngine(ctx.sessions, ctx.box, no_provider, app_settings=ctx.settings)
    asyncio.run(engine.analyse_case(case_id))


def case_record(client: TestClient, case_id: uuid.UUID) -> ReportCase:
    with _ctx(client).sessions.begin() as session:
        record = session.get(ReportCase, case_id)
        assert record is not None
        session.expunge(record)
        return record


def audit_entries(client: TestClient, operation: str) -> list[AuditEntry]:
    with _ctx(client).sessions.begin() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.operation == operation).order_by(AuditEntry.seq)
        ).all()
        session.expunge_all()
        return list(entries)


def assert_inert(text: str, where: str) -> None:
    for payload in PAYLOADS:
        assert payload not in text, f"{where}: {payload!r} appears unescaped"


def analyst(client: TestClient) -> str:
    return sign_in(client, add_user(client, "al", Role.ANALYST))


@pytest.fixture
def hostile_case(client: TestClient) -> uuid.UUID:
    case_id = submit(client, hostile_email(), reporter="bob@contoso.com")
    analyse(client, case_id)
    return case_id


# The queue ------------------------------------------------------------------------------------


def _row_ids(page_html: str) -> list[str]:
    return re.findall(r'<tr data-case="([0-9a-f-]+)">', page_html)


def test_queue_filters_sorts_and_pages_in_sql(client: TestClient, viewer: str) -> None:
    ids = [
        submit(
            client,
            plain_email(str(i), sender=f"sender{i % 3}@example.org", subject=f"Subject {i:03d}"),
            reporter=f"reporter{i % 2}@contoso.com",
        )
        for i in range(55)
    ]
    hostile = submit(client, hostile_email(), reporter="bob@contoso.com")
    analyse(client, hostile)
    with write_session(_ctx(client).sessions) as session:
        first = session.get(ReportCase, ids[0])
        assert first is not None
        first.status = "closed"
        first.tags = ["invoice-wave"]

    page_one = client.get("/reports")
    assert page_one.status_code == 200
    assert "56 cases" in page_one.text
    assert len(_row_ids(page_one.text)) == 50
    assert "1–50 of 56" in page_one.text
    page_two = client.get("/reports?offset=50")
    assert len(_row_ids(page_two.text)) == 6
    assert not set(_row_ids(page_one.text)) & set(_row_ids(page_two.text))

    def only(query: str) -> list[str]:
        answer = client.get("/reports" + query)
        assert answer.status_code == 200, answer.text
        return _row_ids(answer.text)

    assert only("?status=closed") == [str(ids[0])]
    assert only("?tag=invoice-wave") == [str(ids[0])]
    judged = case_record(client, hostile).verdict
    assert judged is not None
    assert only(f"?verdict={judged}") == [str(hostile)]
    assert str(hostile) not in only("?verdict=pending")
    assert len(only("?verdict=pending")) == 50  # 55 pending, first page
    assert only("?q=subject+007") == [str(ids[7])]
    assert len(only("?sender=sender1@example.org")) == 18
    assert only("?reporter=bob@contoso.com") == [str(hostile)]
    assert len(only("?reporter=reporter0@contoso.com")) == 28
    today = datetime.now(UTC).date()
    assert len(only(f"?after={today.isoformat()}&before={today.isoformat()}")) == 50
    assert only(f"?before={(today - timedelta(days=1)).isoformat()}") == []
    # "<script>…" sorts before "subject …" (subjects sort lower-cased, as written).
    assert only("?sort=subject")[:3] == [str(hostile), str(ids[0]), str(ids[1])]
    assert only("?sort=-subject")[:2] == [str(ids[54]), str(ids[53])]
    # Invalid filters are dropped, not errors; the fragment is the same table.
    assert len(only("?status=nonsense&sort=drop+table&offset=-3")) == 50
    fragment = client.get("/reports/table?status=closed")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert _row_ids(fragment.text) == [str(ids[0])]


def test_queue_row_shows_reporter_sender_attachments_and_verdict(
    client: TestClient, viewer: str, hostile_case: uuid.UUID
) -> None:
    submit(client, hostile_email(), reporter="carol@contoso.com")  # joins the case
    queue = client.get("/reports").text
    row = queue[queue.index(f'data-case="{hostile_case}"') :]
    row = row[: row.index("</tr>")]
    assert "bob@contoso.com" in row
    assert "+1" in row
    assert ATTACKER in row
    assert "203.0.113.9" in row
    assert "1: " in row
    assert escape(f"{IMG} {JS_LINK}.exe") in row
    assert 'class="verdict ' in row
    assert_inert(queue, "queue")


def test_reported_is_in_the_navigation_for_viewers(client: TestClient, viewer: str) -> None:
    page = client.get("/reports")
    assert '<a href="/reports" aria-current="page">Reported</a>' in page.text
    assert "Upload a reported email" not in page.text  # viewers upload nothing


# Upload ---------------------------------------------------------------------------------------


def _upload(
    client: TestClient, csrf: str | None, raw: bytes, **fields: str
) -> Any:  # httpx.Response
    data = {"csrf_token": csrf, **fields} if csrf else dict(fields)
    return client.post(
        "/reports/upload", files={"file": ("reported.eml", raw, "message/rfc822")}, data=data
    )


def test_upload_creates_a_case_and_joins_it_the_second_time(client: TestClient) -> None:
    csrf = analyst(client)
    assert "Upload a reported email" in client.get("/reports").text
    answer = _upload(client, csrf, hostile_email("up"), reporter="dave@contoso.com")
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.endswith("?done=uploaded")
    case_id = uuid.UUID(location.split("/")[2].split("?")[0])
    record = case_record(client, case_id)
    assert SCRIPT in record.subject
    assert record.reporter_count == 1
    page = client.get(location)
    assert page.status_code == 200
    assert "The message was uploaded" in page.text
    entry = audit_entries(client, "report.submit")[-1]
    assert entry.actor == "al"
    assert entry.entity_id == str(case_id)
    assert entry.after is not None
    assert entry.after["reporter"] == "dave@contoso.com"
    assert entry.after["created"] is True
    assert entry.after["channel"] == "upload"

    again = _upload(client, csrf, hostile_email("up"), reporter="erin@contoso.com")
    assert again.status_code == 303
    assert again.headers["location"] == f"/reports/{case_id}?done=joined"
    assert case_record(client, case_id).reporter_count == 2


def test_upload_refusals_are_sentences_and_bounded(client: TestClient) -> None:
    csrf = analyst(client)
    empty = _upload(client, csrf, b"")
    assert empty.status_code == 422
    assert "Choose an .eml or .msg file" in empty.text
    wrong_reporter = _upload(client, csrf, hostile_email("r"), reporter=f"not an address {SCRIPT}")
    assert wrong_reporter.status_code == 422
    assert "is not an email address" in wrong_reporter.text
    assert_inert(wrong_reporter.text, "upload refusal")
    declared = client.post(
        "/reports/upload",
        content=b"x",
        headers={
            "content-type": "multipart/form-data; boundary=b",
            "content-length": str(ui_reports.MAX_UPLOAD_BYTES + 1),
            "x-csrf-token": csrf,
        },
    )
    assert declared.status_code == 413
    assert "larger than 50 MB" in declared.text
    form = client.post("/reports/upload", data={"csrf_token": csrf})
    assert form.status_code == 415
    with _ctx(client).sessions.begin() as session:
        assert session.scalar(select(ReportCase.id)) is None


def test_an_upload_over_the_bound_is_refused_while_it_streams(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    csrf = analyst(client)
    monkeypatch.setattr(ui_reports, "MAX_UPLOAD_BYTES", 64 * 1024)
    monkeypatch.setattr(ui_reports._InMemoryParser, "spool_max_size", 64 * 1024)
    boundary = "mailtrawl-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="big.eml"\r\nContent-Type: message/rfc822\r\n\r\n'
    ).encode()

    def chunks() -> Any:  # no Content-Length: only counting the stream can stop it
        yield head
        for _ in range(32):
            yield b"A" * 8192
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = client.post(
        "/reports/upload",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert answer.status_code == 413
    assert "larger than" in answer.text
    with _ctx(client).sessions.begin() as session:
        assert session.scalar(select(ReportCase.id)) is None


# The case page --------------------------------------------------------------------------------


def test_every_tab_renders_and_escapes_the_message(
    client: TestClient, viewer: str, hostile_case: uuid.UUID
) -> None:
    base = f"/reports/{hostile_case}"
    pages = {tab: client.get(f"{base}?tab={tab}") for tab in TABS}
    for tab, answer in pages.items():
        assert answer.status_code == 200, (tab, answer.text)
        assert f'data-tab="{tab}" aria-current="page"' in answer.text
        assert_inert(answer.text, tab)
        # No link of the message is ever an href.
        assert 'href="https://login' not in answer.text
        assert 'href="javascript' not in answer.text
    summary = pages["summary"].text
    assert "data-evidence" in summary
    assert "data-indicators" in summary
    assert "url.anchor_mismatch" in summary
    assert html.escape(SCRIPT) in summary
    headers = pages["headers"].text
    assert "203.0.113.9" in headers
    assert "mail.invoice-portal.example" in headers
    assert "Authentication-Results" in headers
    assert ">fail<" in headers
    urls = pages["urls"].text
    assert LURE in urls
    assert "data-mismatch" in urls
    assert "https://outlook.office.com/" in urls  # the visible text, as text
    attachments = pages["attachments"].text
    assert "SHA-1" in attachments
    assert "MD5" in attachments
    for digest in (hashlib.md5, hashlib.sha1, hashlib.sha256):
        assert digest(PAYLOAD_BYTES).hexdigest() in attachments
    assert "data-download" not in attachments  # viewers download nothing
    reporters = pages["reporters"].text
    assert "bob@contoso.com" in reporters
    assert "upload" in reporters
    assert "original" in reporters
    timeline = pages["timeline"].text
    assert ('data-event="reported"' in timeline and 'data-event="analysed"' in timeline) or (
        'data-event="reported"' in timeline
    )
    preview = pages["preview"].text
    assert f'<iframe sandbox src="{base}/body"' in preview
    assert client.get(f"/reports/{uuid.uuid4()}").status_code == 404
    assert client.get("/reports/not-a-case").status_code == 404


def test_the_preview_is_sanitised_linkless_sandboxed_and_audited(
    client: TestClient, viewer: str, hostile_case: uuid.UUID
) -> None:
    body = client.get(f"/reports/{hostile_case}/body")
    assert body.status_code == 200
    assert body.headers["content-security-policy"] == PREVIEW_CSP
    assert "sandbox" in body.headers["content-security-policy"]
    assert "default-src 'none'" in body.headers["content-security-policy"]
    assert "Dear user" in body.text
    assert "<script" not in body.text
    assert "onerror" not in body.text
    assert "href" not in body.text
    assert "127.0.0.1:9" not in body.text
    text = client.get(f"/reports/{hostile_case}/body?format=text")
    assert text.headers["content-security-policy"] == PREVIEW_CSP
    assert "Plain part" in text.text
    assert html.escape(SCRIPT) in text.text
    assert SCRIPT not in text.text
    entries = audit_entries(client, "report.preview")
    assert [e.after["format"] for e in entries if e.after] == ["html", "text"]
    assert entries[0].actor == "vic"
    assert entries[0].entity_id == str(hostile_case)


def test_without_links_keeps_words_and_drops_every_target() -> None:
    cleaned = ui_reports.without_links(
        f'<p style="color:red">Hi</p><a href="{LURE}">here</a><title>t</title>{SCRIPT}'
    )
    assert "here" in cleaned
    assert "Hi" in cleaned
    assert "href" not in cleaned
    assert "<script" not in cleaned
    assert ">t<" not in cleaned


# Actions --------------------------------------------------------------------------------------


def test_analyst_actions_change_the_case_and_are_audited(
    client: TestClient, hostile_case: uuid.UUID
) -> None:
    csrf = analyst(client)
    base = f"/reports/{hostile_case}"
    page = client.get(base).text
    for action in ("set-verdict", "set-status", "set-tags", "add-note", "notify", "reanalyse"):
        assert f'data-action="{action}"' in page, action

    answer = client.post(
        f"{base}/verdict",
        data={"csrf_token": csrf, "verdict": "phishing", "message": "Delete it", "notify": "1"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{base}?done=verdict"
    record = case_record(client, hostile_case)
    assert (record.verdict, record.verdict_source) == ("phishing", "analyst")
    verdict = audit_entries(client, "report.verdict")[-1]
    assert verdict.after == {
        "verdict": "phishing",
        "verdict_source": "analyst",
        "message": "Delete it",
        "notify": True,
    }
    assert verdict.actor == "al"
    assert verdict.role == "analyst"

    assert (
        client.post(f"{base}/update", data={"csrf_token": csrf, "status": "in_progress"})
    ).status_code == 303
    assert (
        client.post(f"{base}/update", data={"csrf_token": csrf, "tags": "wave-3, invoice, wave-3"})
    ).status_code == 303
    record = case_record(client, hostile_case)
    assert record.status == "in_progress"
    assert record.tags == ["wave-3", "invoice"]
    updates = audit_entries(client, "report.update")
    assert updates[0].after == {"status": "in_progress", "tags": []}
    assert updates[1].after == {"status": "in_progress", "tags": ["wave-3", "invoice"]}

    note = f"Looked at it {SCRIPT}"
    assert client.post(f"{base}/notes", data={"csrf_token": csrf, "text": note}).status_code == 303
    assert audit_entries(client, "report.note")[-1].after["length"] == len(note)  # type: ignore[index]
    timeline = client.get(f"{base}?tab=timeline").text
    assert html.escape(note) in timeline
    assert note not in timeline

    notified = client.post(f"{base}/notify", data={"csrf_token": csrf, "message": "Again"})
    assert notified.status_code == 303
    assert audit_entries(client, "report.notify.request")[-1].after == {"message": "Again"}
    assert client.post(f"{base}/reanalyse", data={"csrf_token": csrf}).status_code == 303
    assert len(audit_entries(client, "report.reanalyse")) == 1
    with _ctx(client).sessions.begin() as session:
        kinds = set(
            session.scalars(select(CaseEvent.kind).where(CaseEvent.case_id == hostile_case))
        )
    assert {"verdict", "status", "tags", "note", "reanalyse"} <= kinds
    assert "The verdict was set." in client.get(f"{base}?done=verdict").text


def test_refused_actions_say_why_next_to_the_case(client: TestClient) -> None:
    csrf = analyst(client)
    case_id = submit(client, hostile_email("pending"))
    base = f"/reports/{case_id}"
    bad_verdict = client.post(f"{base}/verdict", data={"csrf_token": csrf, "verdict": "evil"})
    assert bad_verdict.status_code == 422
    assert 'class="error"' in bad_verdict.text
    assert case_record(client, case_id).verdict is None
    empty_note = client.post(f"{base}/notes", data={"csrf_token": csrf, "text": "  "})
    assert empty_note.status_code == 422
    assert "Write the note" in empty_note.text
    no_verdict = client.post(f"{base}/notify", data={"csrf_token": csrf})
    assert no_verdict.status_code == 409
    assert "no verdict yet" in no_verdict.text
    nothing = client.post(f"{base}/update", data={"csrf_token": csrf})
    assert nothing.status_code == 422
    assert audit_entries(client, "report.notify.request") == []


def test_the_archive_is_an_aes_zip_with_the_password_infected(
    client: TestClient, hostile_case: uuid.UUID
) -> None:
    analyst(client)
    sha256 = hashlib.sha256(PAYLOAD_BYTES).hexdigest()
    page = client.get(f"/reports/{hostile_case}?tab=attachments").text
    link = f"/reports/{hostile_case}/attachments/{sha256}"
    assert f'href="{link}" download data-download' in page
    answer = client.get(link)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == f'attachment; filename="{sha256}.zip"'
    with pyzipper.AESZipFile(io.BytesIO(answer.content)) as archive:
        (info,) = archive.infolist()
        assert info.flag_bits & 0x1  # encrypted
        with pytest.raises(RuntimeError):
            archive.read(info.filename)  # not without the password
        archive.setpassword(b"infected")
        assert archive.read(info.filename) == PAYLOAD_BYTES
        assert "/" not in info.filename
        assert "<" not in info.filename
    entry = audit_entries(client, "report.attachment.download")[-1]
    assert entry.after == {"sha256": sha256}
    assert entry.entity_id == str(hostile_case)
    assert client.get(f"/reports/{hostile_case}/attachments/{'0' * 64}").status_code == 404
    assert client.get(f"/reports/{hostile_case}/attachments/../../etc").status_code == 404


# Roles and CSRF -------------------------------------------------------------------------------


def test_a_viewer_sees_no_button_and_every_post_is_refused(
    client: TestClient, viewer: str, hostile_case: uuid.UUID
) -> None:
    base = f"/reports/{hostile_case}"
    for tab in TABS:
        page = client.get(f"{base}?tab={tab}").text
        assert '<form method="post" action="/reports' not in page, tab
        assert "data-action=" not in page, tab
        assert "data-download" not in page, tab
    posts = {
        f"{base}/verdict": {"verdict": "phishing"},
        f"{base}/update": {"status": "closed"},
        f"{base}/notes": {"text": "hi"},
        f"{base}/notify": {},
        f"{base}/reanalyse": {},
    }
    for path, fields in posts.items():
        refused = client.post(path, data={"csrf_token": viewer, **fields})
        assert refused.status_code == 403, path
    assert _upload(client, viewer, hostile_email("v")).status_code == 403
    sha256 = hashlib.sha256(PAYLOAD_BYTES).hexdigest()
    assert client.get(f"{base}/attachments/{sha256}").status_code == 403
    record = case_record(client, hostile_case)
    assert record.verdict_source == "analysis"
    assert record.status == "open"
    assert audit_entries(client, "report.attachment.download") == []


def test_posts_need_the_csrf_token_and_this_site(
    client: TestClient, hostile_case: uuid.UUID
) -> None:
    csrf = analyst(client)
    base = f"/reports/{hostile_case}"
    assert client.post(f"{base}/verdict", data={"verdict": "phishing"}).status_code == 403
    assert (
        client.post(f"{base}/verdict", data={"csrf_token": "wrong", "verdict": "phishing"})
    ).status_code == 403
    assert _upload(client, None, hostile_email("nocsrf")).status_code == 403
    cross_site = client.post(
        f"{base}/verdict",
        data={"csrf_token": csrf, "verdict": "phishing"},
        headers={"sec-fetch-site": "cross-site"},
    )
    assert cross_site.status_code == 403
    assert case_record(client, hostile_case).verdict_source == "analysis"


# Clusters -------------------------------------------------------------------------------------


def test_clusters_list_and_act_on_every_case(client: TestClient) -> None:
    csrf = analyst(client)
    first = submit(client, plain_email("a", sender=ATTACKER, subject="RE: Invoice 4471 overdue"))
    second = submit(client, plain_email("b", sender=ATTACKER, subject="Invoice 9912 overdue"))
    lone = submit(client, plain_email("c", sender="x@other.example", subject="Lunch on Friday?"))
    for case_id in (first, second, lone):
        analyse(client, case_id)
    cluster_id = case_record(client, first).cluster_id
    assert cluster_id is not None
    assert case_record(client, second).cluster_id == cluster_id

    listing = client.get("/reports/clusters")
    assert listing.status_code == 200
    assert f'data-cluster="{cluster_id}"' in listing.text
    assert "invoice-portal.example" in listing.text  # the shared indicator (its label)
    page = client.get(f"/reports/clusters/{cluster_id}")
    assert _row_ids(page.text) == [str(first), str(second)]
    assert 'data-action="cluster-apply"' in page.text

    nothing = client.post(f"/reports/clusters/{cluster_id}/actions", data={"csrf_token": csrf})
    assert nothing.status_code == 422
    assert "Choose what to change" in nothing.text
    applied = client.post(
        f"/reports/clusters/{cluster_id}/actions",
        data={
            "csrf_token": csrf,
            "verdict": "phishing",
            "status": "closed",
            "add_tags": "wave-7",
            "message": "A campaign",
        },
    )
    assert applied.status_code == 303
    for case_id in (first, second):
        record = case_record(client, case_id)
        assert (record.verdict, record.status, record.tags) == ("phishing", "closed", ["wave-7"])
    assert case_record(client, lone).status == "open"
    entry = audit_entries(client, "report.cluster.action")[-1]
    assert entry.after is not None
    assert sorted(entry.after["cases"]) == sorted([str(first), str(second)])
    assert client.get(f"/reports/clusters/{uuid.uuid4()}").status_code == 404


def test_a_viewer_cannot_act_on_a_cluster(client: TestClient) -> None:
    first = submit(client, plain_email("a", sender=ATTACKER, subject="Invoice 4471 overdue"))
    second = submit(client, plain_email("b", sender=ATTACKER, subject="Invoice 9912 overdue"))
    for case_id in (first, second):
        analyse(client, case_id)
    cluster_id = case_record(client, first).cluster_id
    csrf = sign_in(client, add_user(client, "vic", Role.VIEWER))
    page = client.get(f"/reports/clusters/{cluster_id}").text
    assert "cluster-apply" not in page
    refused = client.post(
        f"/reports/clusters/{cluster_id}/actions", data={"csrf_token": csrf, "status": "closed"}
    )
    assert refused.status_code == 403


# Investigate ----------------------------------------------------------------------------------


def test_investigate_opens_the_new_investigation_form_prefilled(
    client: TestClient, hostile_case: uuid.UUID
) -> None:
    csrf = analyst(client)
    page = client.get(f"/reports/{hostile_case}").text
    form = page[page.index('action="/investigations/new/builder?load=json"') :]
    form = form[: form.index("</form>")]
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'name="([a-z_]+)" value="([^"]*)"', form)
    }
    assert fields["use_json"] == "1"
    assert fields["csrf_token"] == csrf
    query = fields["query"]
    assert ATTACKER in query
    assert "hostile-1@invoice-portal.example" in query
    assert LURE in query
    assert "attachment_hash" in query
    answer = client.post("/investigations/new/builder?load=json", data=fields)
    assert answer.status_code == 200, answer.text
    assert html.escape(ATTACKER) in answer.text  # a builder row holds the sender
    assert escape(fields["name"]) in answer.text
    assert_inert(answer.text, "new investigation")
    document = ui_reports.investigation_query
    with _ctx(client).sessions.begin() as session:
        built = document(session, session.get(ReportCase, hostile_case))  # type: ignore[arg-type]
    assert built is not None
    assert built["received"]["after"] == (datetime.now(UTC).date() - timedelta(days=7)).isoformat()


def test_queue_details_reads_a_page_in_two_queries(client: TestClient) -> None:
    first = submit(client, hostile_email("q"), reporter="first@contoso.com")
    submit(client, hostile_email("q"), reporter="second@contoso.com")
    with _ctx(client).sessions.begin() as session:
        details = reports_service.queue_details(session, case_ids=[first, uuid.uuid4()])
    assert set(details) == {first}
    assert details[first].first_reporter == "first@contoso.com"
    assert details[first].attachment_count == 1
    assert details[first].originating_ip == "203.0.113.9"
