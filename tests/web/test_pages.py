"""Dashboard pages without a browser: sign-in, redirects, CSRF, roles, paging in SQL, escaping."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from mailtrawl.accounts.models import Role
from mailtrawl.investigations.hits import store_hits
from mailtrawl.investigations.models import Investigation
from mailtrawl.remediation import service as remediation
from mailtrawl.remediation.schemas import ActionCreate
from mailtrawl.web.ui.auth import safe_next
from tests.web.conftest import PASSWORD, add_user, login_nonce, sign_in

HOSTILE_SUBJECT = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'


def _investigation(client: TestClient, *, hits: int, status: str = "completed") -> uuid.UUID:
    """An investigation with `hits` hits, written straight to the database."""
    sessions = client.app.state.ctx.sessions  # type: ignore[attr-defined]
    start = datetime(2025, 3, 1, tzinfo=UTC)
    with sessions.begin() as session:
        record = Investigation(
            name="Parcel phish",
            configuration_name="contoso",
            query={"match": {"from": "a@b.example"}},
            scope={"kind": "all", "values": []},
            status=status,
            mailboxes_total=hits,
            mailboxes_done=hits,
            hits=hits,
        )
        session.add(record)
        session.flush()
        store_hits(
            session,
            [
                dict(
                    investigation_id=record.id,
                    mailbox_id=f"id-{i:03d}",
                    mailbox_upn=f"user{i:03d}@contoso.com",
                    message_id=f"m-{i}",
                    folder="junkemail" if i % 10 == 0 else "inbox",
                    internet_message_id="<x@b.example>",
                    subject=HOSTILE_SUBJECT if i == 7 else f"Parcel {i:03d}",
                    sender_address="a@b.example",
                    sender_name="Parcel Service",
                    received=start + timedelta(hours=i),
                    attachment_names="label.html",
                    has_attachments=True,
                    matched=['from equals "a@b.example"'],
                    found_at=start,
                )
                for i in range(hits)
            ],
        )
        return record.id


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-hit="[^"]+">(.*?)</tr>', html, flags=re.S)


def test_safe_next_keeps_local_paths_only() -> None:
    assert safe_next("/investigations?status=running") == "/investigations?status=running"
    for hostile in (
        None,
        "",
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/login",
        "/logout",
        "investigations",
        "/\x00x",
    ):
        assert safe_next(hostile) == "/", hostile


def test_pages_send_a_browser_to_sign_in_and_back(client: TestClient) -> None:
    add_user(client, "ada", Role.ADMIN)
    answer = client.get("/investigations?status=running")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/investigations%3Fstatus%3Drunning"
    assert client.get("/").headers["location"] == "/login"
    # htmx fragments are not swapped for the sign-in page: htmx is told to go there.
    fragment = client.get("/investigations/table", headers={"HX-Request": "true"})
    assert fragment.status_code == 401
    assert fragment.headers["hx-redirect"].startswith("/login")

    form = client.get("/login?next=/investigations%3Fstatus%3Drunning")
    assert 'name="next" value="/investigations?status=running"' in form.text
    signed_in = client.post(
        "/login",
        data={
            "username": "ADA",
            "password": PASSWORD,
            "csrf_token": login_nonce(form.text),
            "next": "/investigations?status=running",
        },
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/investigations?status=running"
    cookie = signed_in.headers["set-cookie"]
    assert "mailtrawl_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert client.get("/investigations?status=running").status_code == 200
    # Signed in already: the sign-in page goes straight on, never to another site.
    assert client.get("/login?next=https://evil.example/").headers["location"] == "/"


def test_sign_in_refusals_say_the_same_and_need_the_login_csrf_token(client: TestClient) -> None:
    add_user(client, "ada", Role.ADMIN)
    form = client.get("/login").text
    answers = []
    for name in ("ada", "nobody"):
        # Each rendering of the form has a fresh nonce (and cookie).
        answer = client.post(
            "/login",
            data={"username": name, "password": "wrong password!", "csrf_token": login_nonce(form)},
        )
        answers.append(answer)
        form = answer.text
    nonce = login_nonce(form)
    for answer in answers:
        assert answer.status_code == 401
        assert "Wrong username or password." in answer.text
        assert "mailtrawl_session" not in answer.headers.get("set-cookie", "")
    # Without the nonce from our own form (a cross-site form post), nobody signs in.
    forged = client.post(
        "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": "guessed"}
    )
    assert forged.status_code == 400
    client.cookies.clear()
    no_cookie = client.post(
        "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": nonce}
    )
    assert no_cookie.status_code == 400
    nonce = login_nonce(client.get("/login").text)
    cross_site = client.post(
        "/login",
        data={"username": "ada", "password": PASSWORD, "csrf_token": nonce},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 400
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        from mailtrawl.audit.service import list_entries

        outcomes = [e.outcome for e in list_entries(session, operation="auth.login").items]
    assert outcomes == ["refused: Wrong username or password."] * 2


def test_sign_out_needs_the_csrf_token_and_ends_the_session(client: TestClient, admin: str) -> None:
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert client.get("/").status_code == 200
    # Another site's page cannot sign us out either, even if it had the token.
    cross_site = client.post(
        "/logout", data={"csrf_token": admin}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status_code == 403
    out = client.post("/logout", data={"csrf_token": admin})
    assert out.status_code == 303
    assert out.headers["location"] == "/login?signed_out=1"
    assert client.get("/").status_code == 303


def test_buttons_follow_the_role_and_the_server_enforces_it(
    client: TestClient, viewer: str
) -> None:
    for path in ("/", "/investigations"):
        page = client.get(path)
        assert page.status_code == 200
        assert "New investigation" not in page.text
        assert 'href="/audit"' not in page.text
    assert client.get("/audit").status_code == 403
    assert "Not allowed" in client.get("/audit").text
    assert client.get("/investigations/new").status_code == 403
    refused = client.post(
        "/investigations/new", data={"csrf_token": viewer, "name": "x", "configuration": "c"}
    )
    assert refused.status_code == 403


def test_an_administrator_sees_the_buttons(client: TestClient, admin: str) -> None:
    page = client.get("/investigations")
    assert "New investigation" in page.text
    assert 'href="/audit"' in page.text
    assert client.get("/audit").status_code == 200
    form = client.get("/investigations/new")
    assert form.status_code == 200
    assert "Add an enabled mail configuration first." in form.text


@pytest.fixture
def statements(client: TestClient) -> Iterator[list[str]]:
    """The SQL statements the application runs while the test runs."""
    engine = client.app.state.ctx.sessions.kw["bind"]  # type: ignore[attr-defined]
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_hits_are_paged_sorted_and_filtered_in_sql(
    client: TestClient, admin: str, statements: list[str]
) -> None:
    investigation_id = _investigation(client, hits=120)
    page = client.get(f"/investigations/{investigation_id}")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert len(rows) == 50
    assert "1–50 of 120" in page.text
    # Newest first by default.
    assert "user119@contoso.com" in rows[0]
    hit_reads = [
        s for s in statements if "FROM investigation_hits" in s and "count(" not in s.lower()
    ]
    assert hit_reads
    # A page's ids are found with a LIMIT; then only those rows are read.
    assert all("LIMIT" in s or "investigation_hits.id IN (" in s for s in hit_reads), hit_reads
    assert any("LIMIT" in s for s in hit_reads), hit_reads

    last = client.get(f"/investigations/{investigation_id}?offset=100")
    assert len(_rows(last.text)) == 20
    by_mailbox = client.get(f"/investigations/{investigation_id}?sort=mailbox")
    assert "user000@contoso.com" in _rows(by_mailbox.text)[0]
    assert 'aria-sort="ascending"' in by_mailbox.text
    junk = client.get(f"/investigations/{investigation_id}?folder=junkemail")
    assert len(_rows(junk.text)) == 12
    subject = client.get(f"/investigations/{investigation_id}?subject=parcel%20011")
    assert len(_rows(subject.text)) == 1
    window = client.get(
        f"/investigations/{investigation_id}?received_after=2025-03-02&received_before=2025-03-02"
    )
    assert len(_rows(window.text)) == 24
    # A bad sort or date is ignored, not an error.
    assert (
        client.get(f"/investigations/{investigation_id}?sort=password&received_after=x").status_code
        == 200
    )

    fragment = client.get(
        f"/investigations/{investigation_id}/hits?sort=mailbox", headers={"HX-Request": "true"}
    )
    assert fragment.text.lstrip().startswith('<section class="panel" id="hits"')
    assert "<html" not in fragment.text
    direct = client.get(f"/investigations/{investigation_id}/hits?sort=mailbox")
    assert direct.status_code == 303
    assert direct.headers["location"] == f"/investigations/{investigation_id}?sort=mailbox"


def test_email_content_is_escaped(client: TestClient, admin: str) -> None:
    investigation_id = _investigation(client, hits=10)
    page = client.get(f"/investigations/{investigation_id}?sort=mailbox")
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page.text
    assert "<script>window" not in page.text
    assert "<img src=x" not in page.text
    # No inline script or style attribute anywhere (the CSP would refuse them).
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert " style=" not in page.text


def test_running_investigations_poll_and_finished_ones_do_not(
    client: TestClient, admin: str
) -> None:
    running = _investigation(client, hits=1, status="running")
    table = client.get("/investigations/table", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 2s"' in table.text
    summary = client.get(f"/investigations/{running}/summary", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 2s"' in summary.text
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        session.get(Investigation, running).status = "completed"
    assert "hx-trigger" not in client.get("/investigations/table").text


def test_unknown_pages_are_pages_and_api_errors_stay_json(client: TestClient, admin: str) -> None:
    missing = client.get(f"/investigations/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "No investigation" in missing.text
    assert client.get("/investigations/not-a-uuid").status_code == 404
    assert client.get("/nowhere").status_code == 404
    api = client.get(f"/api/v1/investigations/{uuid.uuid4()}")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/json"
    assert client.get("/investigations?offset=-1").status_code == 422


def _purge_request(client: TestClient, requester: str) -> str:
    investigation_id = _investigation(client, hits=3)
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions.begin() as session:
        _preview, action = remediation.request_action(
            session,
            investigation=investigation_id,
            data=ActionCreate(action="purge"),
            actor=remediation.Actor(name=requester, role="admin"),
            settings=ctx.settings,
        )
        assert action is not None
        assert action.status == "awaiting_approval"
        return str(action.id)


def test_approvals_show_counts_and_follow_the_four_eyes_rule(
    client: TestClient, admin: str
) -> None:
    mine = _purge_request(client, "ada")
    theirs = _purge_request(client, "someone-else")
    page = client.get("/approvals")
    assert "2 actions waiting, over 6 messages" in page.text
    assert page.text.count('data-decision="approve"') == 1  # not on ada's own request
    assert "You requested this; another administrator must approve it." in page.text

    assert client.post(f"/approvals/{theirs}/approve", data={}).status_code == 403  # no CSRF
    approved = client.post(f"/approvals/{theirs}/approve", data={"csrf_token": admin, "note": "ok"})
    assert approved.status_code == 303
    assert approved.headers["location"] == "/approvals?done=approved"
    assert "The action was approved and queued." in client.get(approved.headers["location"]).text
    own = client.post(f"/approvals/{mine}/approve", data={"csrf_token": admin})
    assert own.status_code == 409
    assert "four-eyes" in own.text
    withdrawn = client.post(f"/approvals/{mine}/reject", data={"csrf_token": admin})
    assert withdrawn.headers["location"] == "/approvals?done=rejected"
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        assert remediation.get_action(session, ref=theirs).status == "queued"
        assert remediation.get_action(session, ref=mine).status == "rejected"


def test_the_audit_page_filters_and_verifies_the_chain(client: TestClient, admin: str) -> None:
    page = client.get("/audit?operation=auth.login")
    assert page.status_code == 200
    assert "auth.login" in page.text
    assert (
        "No entry matches these filters." in client.get("/audit?operation=nothing.like.this").text
    )
    verify = client.get("/audit/verify", headers={"HX-Request": "true"})
    assert 'data-verify="ok"' in verify.text
    assert "<html" not in verify.text
    full = client.get("/audit/verify")
    assert 'data-verify="ok"' in full.text
    assert "<html" in full.text


def test_new_investigation_form_reports_what_to_fix(client: TestClient) -> None:
    sign_in(client, add_user(client, "al", Role.ANALYST))
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert token
    answer = client.post(
        "/investigations/new",
        data={
            "csrf_token": token.group(1),
            "name": "x",
            "configuration": "nope",
            "query": "{not json",
        },
    )
    assert answer.status_code == 422
    assert "The query is not valid JSON" in answer.text
    missing = client.post(
        "/investigations/new",
        data={"csrf_token": token.group(1), "name": "x", "configuration": "nope", "query": "{}"},
    )
    assert missing.status_code == 422
    assert "No mail configuration" in missing.text
