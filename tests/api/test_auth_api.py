"""Signing in and out through the API, CSRF, passwords, users and tokens, with real sessions."""

from __future__ import annotations

import json
import uuid
from http.cookies import SimpleCookie

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailtrawl.accounts import service, sessions
from mailtrawl.accounts.models import Role
from mailtrawl.audit.models import AuditEntry
from tests.accounts.helpers import (
    PASSWORD,
    bearer,
    ctx_of,
    make_token,
    make_user,
    open_session,
)

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"
LOGOUT = "/api/v1/auth/logout"
PASSWORD_URL = "/api/v1/auth/password"
CSRF_REFUSED = "CSRF token missing or wrong"


@pytest.fixture
def browser(api: TestClient) -> TestClient:
    """A client that keeps cookies like a browser on https (the cookie is Secure there)."""
    return TestClient(api.app, base_url="https://testserver")


def _audit(api: TestClient, operation: str) -> list[AuditEntry]:
    with ctx_of(api).sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.operation == operation).order_by(AuditEntry.seq)
            )
        )


def _set_cookie(response: object) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])  # type: ignore[attr-defined]
    return jar


def test_sign_in_sets_a_strict_httponly_secure_cookie(api: TestClient, browser: TestClient) -> None:
    make_user(api, "Alice", Role.ANALYST)
    response = browser.post(
        LOGIN, json={"username": "ALICE", "password": PASSWORD}, headers={"User-Agent": "ua/1"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"username", "role", "csrf_token", "expires_at"}
    assert (body["username"], body["role"]) == ("alice", "analyst")
    cookie = _set_cookie(response)[sessions.SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "strict"
    assert cookie["secure"] is True
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(24 * 3600)
    assert cookie.value not in response.text
    # The browser now calls the API with its cookie.
    me = browser.get(ME)
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["via"] == "session"
    assert me.json()["csrf_token"] == body["csrf_token"]
    entries = _audit(api, "auth.login")
    assert [(e.actor, e.outcome, e.role, e.user_agent) for e in entries] == [
        ("alice", "ok", "analyst", "ua/1")
    ]


def test_on_plain_http_to_loopback_the_cookie_is_not_secure(api: TestClient) -> None:
    make_user(api, "alice", Role.VIEWER)
    local = TestClient(api.app, base_url="http://127.0.0.1:8080")
    response = local.post(LOGIN, json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    cookie = _set_cookie(response)[sessions.SESSION_COOKIE]
    assert not cookie["secure"]
    assert cookie["httponly"] is True
    assert local.get(ME).status_code == 200


def test_refusals_say_the_same_and_never_log_the_password(api: TestClient) -> None:
    make_user(api, "alice", Role.ANALYST)
    wrong = api.post(LOGIN, json={"username": "alice", "password": "guess number one"})
    unknown = api.post(LOGIN, json={"username": "nobody", "password": "guess number two"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Wrong username or password."}
    assert "set-cookie" not in wrong.headers
    entries = _audit(api, "auth.login")
    assert [(e.actor, e.outcome) for e in entries] == [
        ("alice", "refused"),
        ("nobody", "refused"),
    ]
    exported = json.dumps([e.after for e in entries]) + "".join(str(e.before) for e in entries)
    assert "guess number" not in exported


def test_repeated_failures_are_throttled_with_retry_after(api: TestClient) -> None:
    make_user(api, "alice", Role.ANALYST)
    for _ in range(service.MAX_FAILURES_PER_USERNAME):
        assert (
            api.post(LOGIN, json={"username": "alice", "password": "not it at all"}).status_code
            == 401
        )
    throttled = api.post(LOGIN, json={"username": "alice", "password": PASSWORD})
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 15 * 60
    assert "Too many failed sign-ins" in throttled.json()["detail"]
    outcomes = [e.outcome for e in _audit(api, "auth.login")]
    assert outcomes == ["refused"] * service.MAX_FAILURES_PER_USERNAME + ["throttled"]


def test_cookie_writes_need_the_csrf_token(api: TestClient) -> None:
    admin = open_session(api, make_user(api, "root", Role.ADMIN))
    new_user = {"username": "bob", "password": "bobs long password", "role": "viewer"}
    # Reads need none.
    assert api.get("/api/v1/users", headers=admin.headers(csrf=False)).status_code == 200
    missing = api.post("/api/v1/users", json=new_user, headers=admin.headers(csrf=False))
    assert (missing.status_code, missing.json()["detail"]) == (403, CSRF_REFUSED)
    wrong = api.post(
        "/api/v1/users",
        json=new_user,
        headers={**admin.headers(csrf=False), sessions.CSRF_HEADER: admin.csrf[:-2] + "xx"},
    )
    assert (wrong.status_code, wrong.json()["detail"]) == (403, CSRF_REFUSED)
    # Another session's token is no good either.
    other = open_session(api, admin.user_id)
    crossed = api.post(
        "/api/v1/users",
        json=new_user,
        headers={**admin.headers(csrf=False), sessions.CSRF_HEADER: other.csrf},
    )
    assert crossed.status_code == 403
    ok = api.post("/api/v1/users", json=new_user, headers=admin.headers())
    assert ok.status_code == 201, ok.text


def test_a_form_post_may_carry_the_csrf_token_as_a_field(api: TestClient) -> None:
    signed = open_session(api, make_user(api, "alice", Role.VIEWER))
    refused = api.post(LOGOUT, data={"csrf_token": "forged"}, headers=signed.headers(csrf=False))
    assert (refused.status_code, refused.json()["detail"]) == (403, CSRF_REFUSED)
    assert api.get(ME, headers=signed.headers(csrf=False)).status_code == 200
    out = api.post(LOGOUT, data={"csrf_token": signed.csrf}, headers=signed.headers(csrf=False))
    assert out.status_code == 204
    assert api.get(ME, headers=signed.headers(csrf=False)).status_code == 401


def test_bearer_tokens_need_no_csrf_token(api: TestClient) -> None:
    token = make_token(api, Role.ADMIN, name="automation")
    created = api.post(
        "/api/v1/users",
        json={"username": "bob", "password": "bobs long password", "role": "viewer"},
        headers=bearer(token),
    )
    assert created.status_code == 201, created.text
    # A bearer request carrying some session's cookie too acts as the token, without CSRF.
    signed = open_session(api, make_user(api, "eve", Role.VIEWER))
    both = api.patch(
        f"/api/v1/users/{created.json()['id']}",
        json={"display_name": "Bob"},
        headers={**bearer(token), **signed.headers(csrf=False)},
    )
    assert both.status_code == 200
    assert _audit(api, "user.update")[0].actor == "automation"


def test_sign_out_ends_the_session_and_drops_the_cookie(
    api: TestClient, browser: TestClient
) -> None:
    make_user(api, "alice", Role.ANALYST)
    csrf = browser.post(LOGIN, json={"username": "alice", "password": PASSWORD}).json()[
        "csrf_token"
    ]
    cookie = browser.cookies[sessions.SESSION_COOKIE]
    out = browser.post(LOGOUT, headers={sessions.CSRF_HEADER: csrf})
    assert out.status_code == 204
    dropped = _set_cookie(out)[sessions.SESSION_COOKIE]
    assert dropped["max-age"] == "0"
    assert sessions.SESSION_COOKIE not in browser.cookies
    # The old cookie value is dead on the server too.
    replay = api.get(ME, headers={"Cookie": f"{sessions.SESSION_COOKIE}={cookie}"})
    assert replay.status_code == 401
    assert [e.actor for e in _audit(api, "auth.logout")] == ["alice"]


def test_no_credentials_and_dead_credentials_are_401(api: TestClient) -> None:
    anonymous = api.get(ME)
    assert anonymous.status_code == 401
    assert "Sign in" in anonymous.json()["detail"]
    assert api.get(ME, headers=bearer("mtk_nope")).status_code == 401
    dead = api.get(ME, headers={"Cookie": f"{sessions.SESSION_COOKIE}=not-a-session"})
    assert (dead.status_code, dead.json()["detail"]) == (
        401,
        "Your session has ended; sign in again.",
    )


def test_changing_the_password_ends_the_other_sessions(api: TestClient) -> None:
    user_id = make_user(api, "alice", Role.ANALYST)
    here, elsewhere = open_session(api, user_id), open_session(api, user_id)
    wrong = api.post(
        PASSWORD_URL,
        json={"current": "not my password", "new": "a new long passphrase"},
        headers=here.headers(),
    )
    assert wrong.status_code == 403
    weak = api.post(
        PASSWORD_URL, json={"current": PASSWORD, "new": "short"}, headers=here.headers()
    )
    assert weak.status_code == 422
    assert "at least 12" in weak.json()["detail"]
    assert api.get(ME, headers=elsewhere.headers()).status_code == 200
    changed = api.post(
        PASSWORD_URL,
        json={"current": PASSWORD, "new": "a new long passphrase"},
        headers=here.headers(),
    )
    assert changed.status_code == 204
    assert api.get(ME, headers=here.headers()).status_code == 200
    assert api.get(ME, headers=elsewhere.headers()).status_code == 401
    assert api.post(LOGIN, json={"username": "alice", "password": PASSWORD}).status_code == 401
    relogin = api.post(LOGIN, json={"username": "alice", "password": "a new long passphrase"})
    assert relogin.status_code == 200
    assert [e.outcome for e in _audit(api, "auth.password_change")] == [
        "refused: wrong current password",
        "ok",
    ]
    # A token of no user has no password.
    orphan = api.post(
        PASSWORD_URL,
        json={"current": "x", "new": "y"},
        headers=bearer(make_token(api, Role.ADMIN)),
    )
    assert orphan.status_code == 400


def test_administrators_manage_users(api: TestClient) -> None:
    root = open_session(api, make_user(api, "root", Role.ADMIN))
    created = api.post(
        "/api/v1/users",
        json={
            "username": "Bob",
            "password": "bobs long password",
            "role": "analyst",
            "display_name": "Bob B.",
        },
        headers=root.headers(),
    )
    assert created.status_code == 201
    bob = created.json()
    assert (bob["username"], bob["role"], bob["active"], bob["display_name"]) == (
        "bob",
        "analyst",
        True,
        "Bob B.",
    )
    assert "password" not in json.dumps(bob).replace("password_changed_at", "")
    dup = api.post(
        "/api/v1/users",
        json={"username": "BOB", "password": "another long one", "role": "viewer"},
        headers=root.headers(),
    )
    assert dup.status_code == 409
    weak = api.post(
        "/api/v1/users",
        json={"username": "carol", "password": "carol", "role": "viewer"},
        headers=root.headers(),
    )
    assert weak.status_code == 422
    listed = api.get("/api/v1/users", headers=root.headers())
    assert [u["username"] for u in listed.json()] == ["bob", "root"]

    # Disabling Bob ends his session at once.
    bobs = open_session(api, uuid.UUID(bob["id"]))
    assert api.get(ME, headers=bobs.headers()).status_code == 200
    disabled = api.patch(
        f"/api/v1/users/{bob['id']}", json={"active": False}, headers=root.headers()
    )
    assert (disabled.status_code, disabled.json()["active"]) == (200, False)
    assert api.get(ME, headers=bobs.headers()).status_code == 401
    assert (
        api.post(LOGIN, json={"username": "bob", "password": "bobs long password"}).status_code
        == 401
    )

    # The last active administrator can be neither demoted nor disabled.
    root_id = str(root.user_id)
    for change in ({"role": "analyst"}, {"active": False}):
        refused = api.patch(f"/api/v1/users/{root_id}", json=change, headers=root.headers())
        assert refused.status_code == 409
        assert "no active administrator" in refused.json()["detail"]
    promoted = api.patch(
        f"/api/v1/users/{bob['id']}", json={"active": True, "role": "admin"}, headers=root.headers()
    )
    assert promoted.json()["role"] == "admin"
    assert (
        api.patch(
            f"/api/v1/users/{root_id}", json={"role": "viewer"}, headers=root.headers()
        ).json()["role"]
        == "viewer"
    )
    # Root's session now carries the viewer role.
    assert api.get("/api/v1/users", headers=root.headers()).status_code == 403
    missing = api.patch(
        "/api/v1/users/00000000-0000-7000-8000-000000000000",
        json={"role": "viewer"},
        headers=bearer(make_token(api, Role.ADMIN)),
    )
    assert missing.status_code == 404
    updates = _audit(api, "user.update")
    assert [(e.actor, e.before["active"], e.after["active"]) for e in updates[:1]] == [
        ("root", True, False)
    ]
    assert [e.entity_id for e in _audit(api, "user.create")] == [bob["id"]]


def test_a_users_tokens_are_theirs(api: TestClient) -> None:
    root_id = make_user(api, "root", Role.ADMIN)
    root = open_session(api, root_id)
    make_user(api, "second", Role.ADMIN)
    issued = api.post(
        "/api/v1/tokens", json={"name": "ci", "role": "admin"}, headers=root.headers()
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    assert issued.json()["owner"] == "root"
    me = api.get(ME, headers=bearer(token)).json()
    assert (me["username"], me["role"], me["via"], me["csrf_token"]) == (
        "root",
        "admin",
        "token",
        None,
    )
    listed = api.get("/api/v1/tokens", headers=bearer(token)).json()
    assert [(t["name"], t["owner"]) for t in listed] == [("ci", "root")]
    assert token not in json.dumps(listed)
    # The token acts with no more than its owner's current role.
    with ctx_of(api).sessions.begin() as session:
        service.set_role(session, user_id=root_id, role=Role.VIEWER)
    assert api.get(ME, headers=bearer(token)).json()["role"] == "viewer"
    assert api.get("/api/v1/tokens", headers=bearer(token)).status_code == 403
    with ctx_of(api).sessions.begin() as session:
        service.set_role(session, user_id=root_id, role=Role.ADMIN)
    revoked = api.delete(f"/api/v1/tokens/{issued.json()['id']}", headers=root.headers())
    assert revoked.status_code == 204
    assert api.get(ME, headers=bearer(token)).status_code == 401
    assert [e.operation for e in _audit(api, "token.create") + _audit(api, "token.revoke")] == [
        "token.create",
        "token.revoke",
    ]


def test_me_for_a_token_of_no_user(api: TestClient) -> None:
    me = api.get(ME, headers=bearer(make_token(api, Role.ANALYST, name="automation")))
    assert me.json() == {
        "username": "automation",
        "display_name": "",
        "role": "analyst",
        "csrf_token": None,
        "expires_at": None,
        "user_id": None,
        "via": "token",
    }


def test_a_cross_site_form_cannot_sign_a_browser_in(api: TestClient) -> None:
    """Login CSRF: a page elsewhere can post text/plain or a form, never application/json
    without a preflight; the sign-in accepts only JSON."""
    make_user(api, "alice", Role.ANALYST)
    body = json.dumps({"username": "alice", "password": PASSWORD})
    as_text = api.post(LOGIN, content=body, headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 422
    as_form = api.post(LOGIN, data={"username": "alice", "password": PASSWORD})
    assert as_form.status_code == 422
    assert "set-cookie" not in as_text.headers
    assert "set-cookie" not in as_form.headers
