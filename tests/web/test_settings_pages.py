"""The settings page without a browser: roles, CSRF, escaping, users, tokens, remediation."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mailtrawl.accounts.models import Role, User, WebSession
from mailtrawl.audit import service as audit
from mailtrawl.audit.models import AuditEntry
from mailtrawl.settings_store import service as store
from tests.web.conftest import BASE_URL, PASSWORD, add_user, sign_in

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="alert(1)">'
NEW_PASSWORD = "another horse battery staple"


def _sessions(client: TestClient) -> Any:
    return client.app.state.ctx.sessions  # type: ignore[attr-defined]


def _user(client: TestClient, username: str) -> User:
    with _sessions(client)() as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        session.expunge(user)
        return user


def _audit(client: TestClient, operation: str) -> list[AuditEntry]:
    with _sessions(client)() as session:
        return list(audit.list_entries(session, operation=operation, limit=100).items)


def _post(client: TestClient, path: str, csrf: str, **data: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf, **data})


def _section_ids(html: str) -> list[str]:
    return re.findall(r'data-section="([a-z]+)"', html)


def test_a_viewer_sees_only_their_account_and_is_refused_the_rest(
    client: TestClient, viewer: str
) -> None:
    page = client.get("/settings")
    assert page.status_code == 200
    assert _section_ids(page.text) == ["account"]
    assert 'action="/settings/password"' in page.text
    assert "/settings/users" not in page.text
    assert "/settings/tokens" not in page.text
    for path, data in (
        ("/settings/users", {"username": "eve", "role": "admin", "password": PASSWORD}),
        ("/settings/tokens", {"name": "mine", "role": "viewer"}),
        ("/settings/remediation", {"approval_threshold": "1"}),
    ):
        refused = _post(client, path, viewer, **data)
        assert refused.status_code == 403, path
        assert "This needs the admin role" in refused.text
    with _sessions(client)() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert store.overrides(session) == {}


def test_an_administrator_sees_every_section(client: TestClient, admin: str) -> None:
    page = client.get("/settings")
    assert _section_ids(page.text) == ["account", "users", "tokens", "remediation"]
    # Every input has a label.
    ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', page.text))
    labelled = set(re.findall(r'<label for="([^"]+)"', page.text))
    assert ids
    assert ids <= labelled, ids - labelled
    assert "$organisation" in page.text  # the placeholder list


def test_every_form_needs_the_csrf_token(client: TestClient, admin: str) -> None:
    ada = _user(client, "ada")
    for path in (
        "/settings/password",
        "/settings/users",
        f"/settings/users/{ada.id}/role",
        f"/settings/users/{ada.id}/active",
        f"/settings/users/{ada.id}/password",
        "/settings/tokens",
        "/settings/remediation",
    ):
        refused = client.post(path, data={"username": "eve", "role": "viewer"})
        assert refused.status_code == 403, path
        wrong = client.post(path, data={"csrf_token": "x" * 40, "role": "viewer"})
        assert wrong.status_code == 403, path
    foreign = client.post(
        "/settings/users",
        data={"csrf_token": admin, "username": "eve", "role": "admin", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    with _sessions(client)() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_an_administrator_creates_a_user_who_can_sign_in(client: TestClient, admin: str) -> None:
    created = _post(
        client,
        "/settings/users",
        admin,
        username="Vera",
        display_name=HOSTILE,
        role="viewer",
        password=PASSWORD,
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/settings?done=user_created"
    page = client.get(created.headers["location"])
    assert "The user was created" in page.text
    assert 'data-user="vera"' in page.text
    assert HOSTILE not in page.text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page.text
    [entry] = _audit(client, "user.create")
    assert entry.actor == "ada"
    assert entry.after is not None
    assert entry.after["username"] == "vera"
    assert entry.after["role"] == "viewer"
    assert "password" not in str(entry.after).lower().replace("password_changed_at", "")

    client.cookies.clear()
    sign_in(client, "vera")
    assert _section_ids(client.get("/settings").text) == ["account"]


def test_user_form_errors_are_shown_next_to_the_field(client: TestClient, admin: str) -> None:
    short = _post(client, "/settings/users", admin, username="eve", role="viewer", password="short")
    assert short.status_code == 422
    assert re.search(r'id="uc-password-error"[^>]*>The password is too short', short.text)
    assert 'value="eve"' in short.text  # kept for another try; the password is not
    assert 'value="short"' not in short.text
    taken = _post(
        client, "/settings/users", admin, username="ADA", role="viewer", password=PASSWORD
    )
    assert taken.status_code == 422
    assert re.search(
        r'id="uc-username-error"[^>]*>A user named &#39;ada&#39; exists already', taken.text
    )
    odd = _post(client, "/settings/users", admin, username=HOSTILE, role="root", password=PASSWORD)
    assert odd.status_code == 422
    assert HOSTILE not in odd.text
    assert 'id="uc-role-error"' in odd.text


def test_the_last_administrator_cannot_be_demoted_or_disabled(
    client: TestClient, admin: str
) -> None:
    ada = _user(client, "ada")
    for path, data in (
        (f"/settings/users/{ada.id}/role", {"role": "viewer"}),
        (f"/settings/users/{ada.id}/active", {"active": "false"}),
    ):
        refused = _post(client, path, admin, **data)
        assert refused.status_code == 409, path
        assert "leave no active administrator" in refused.text
    assert _user(client, "ada").role == "admin"
    assert _user(client, "ada").is_active
    assert _audit(client, "user.update") == []


def test_role_changes_disabling_and_password_resets(client: TestClient, admin: str) -> None:
    add_user(client, "al", Role.ANALYST)
    al = _user(client, "al")
    promoted = _post(client, f"/settings/users/{al.id}/role", admin, role="admin")
    assert promoted.headers["location"] == "/settings?done=role"
    assert _user(client, "al").role == "admin"
    [entry] = _audit(client, "user.update")
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["role"], entry.after["role"]) == ("analyst", "admin")

    # Now ada is not the last administrator: she may step down... but al is demoted instead.
    _post(client, f"/settings/users/{al.id}/role", admin, role="viewer")
    disabled = _post(client, f"/settings/users/{al.id}/active", admin, active="false")
    assert disabled.headers["location"] == "/settings?done=disabled"
    assert not _user(client, "al").is_active
    enabled = _post(client, f"/settings/users/{al.id}/active", admin, active="true")
    assert enabled.headers["location"] == "/settings?done=enabled"

    weak = _post(client, f"/settings/users/{al.id}/password", admin, password="weak")
    assert weak.status_code == 422
    assert "too short" in weak.text
    reset = _post(client, f"/settings/users/{al.id}/password", admin, password=NEW_PASSWORD)
    assert reset.headers["location"] == "/settings?done=reset"
    assert [e.entity_id for e in _audit(client, "user.password_reset")] == [str(al.id)]
    client.cookies.clear()
    sign_in(client, "al", NEW_PASSWORD)


def test_a_token_is_shown_once_works_and_is_revoked(client: TestClient, admin: str) -> None:
    created = _post(
        client, "/settings/tokens", admin, name=f"SIEM {HOSTILE}", role="analyst", expires_days="30"
    )
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    found = re.search(r'id="issued-token" value="(mtk_[^"]+)"', created.text)
    assert found
    token = found.group(1)
    assert HOSTILE not in created.text
    # Not on the page again, nor in any URL.
    again = client.get("/settings")
    assert token not in again.text
    assert "data-issued-token" not in again.text
    assert "analyst" in again.text
    assert "ada" in again.text

    with TestClient(client.app, base_url=BASE_URL) as bare:
        me = bare.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["role"] == "analyst"
    [entry] = _audit(client, "token.create")
    assert entry.after is not None
    assert entry.after["owner"] == "ada"
    assert token not in str(entry.after)

    token_id = entry.entity_id
    revoked = _post(client, f"/settings/tokens/{token_id}/revoke", admin)
    assert revoked.headers["location"] == "/settings?done=revoked"
    with TestClient(client.app, base_url=BASE_URL) as bare:
        gone = bare.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401
    assert [e.entity_id for e in _audit(client, "token.revoke")] == [token_id]
    assert "revoked" in client.get("/settings").text


def test_token_form_errors(client: TestClient, admin: str) -> None:
    empty = _post(client, "/settings/tokens", admin, name="", role="viewer")
    assert empty.status_code == 422
    assert 'id="tc-name-error"' in empty.text
    bad_role = _post(client, "/settings/tokens", admin, name="x", role="root")
    assert bad_role.status_code == 422
    assert 'id="tc-role-error"' in bad_role.text
    bad_days = _post(
        client, "/settings/tokens", admin, name="x", role="viewer", expires_days="soon"
    )
    assert bad_days.status_code == 422
    assert 'id="tc-expires-error"' in bad_days.text
    assert _audit(client, "token.create") == []


def test_changing_ones_own_password_ends_the_other_sessions(client: TestClient, admin: str) -> None:
    ada = _user(client, "ada")
    with TestClient(client.app, base_url=BASE_URL, follow_redirects=False) as other:
        sign_in(other, "ada")
        wrong = _post(
            client,
            "/settings/password",
            admin,
            current_password="not it at all",
            new_password=NEW_PASSWORD,
            confirm_password=NEW_PASSWORD,
        )
        assert wrong.status_code == 422
        assert re.search(r'id="pw-current-error"[^>]*>The current password is wrong', wrong.text)
        differ = _post(
            client,
            "/settings/password",
            admin,
            current_password=PASSWORD,
            new_password=NEW_PASSWORD,
            confirm_password=NEW_PASSWORD + "!",
        )
        assert differ.status_code == 422
        assert 'id="pw-confirm-error"' in differ.text
        changed = _post(
            client,
            "/settings/password",
            admin,
            current_password=PASSWORD,
            new_password=NEW_PASSWORD,
            confirm_password=NEW_PASSWORD,
        )
        assert changed.headers["location"] == "/settings?done=password"
        assert client.get("/settings").status_code == 200  # this session goes on
        assert other.get("/settings").status_code == 303  # the other one ended
    with _sessions(client)() as session:
        live = session.scalar(
            select(func.count())
            .select_from(WebSession)
            .where(WebSession.user_id == ada.id, WebSession.revoked_at.is_(None))
        )
    assert live == 1
    outcomes = [e.outcome for e in _audit(client, "auth.password_change")]
    assert sorted(outcomes) == ["ok", "refused: wrong current password"]


REMEDIATION_FORM = {
    "approval_required": "on",
    "approval_threshold": "1",
    "approval_always_for": ["purge", "delete"],
    "vault_retention_days": "14",
    "warning_category": "Phish - SOC",
    "warning_notice_subject": "Warning from $organisation",
    "warning_notice_body": "",
    "organisation_name": "Contoso <Security>",
}


def test_remediation_settings_are_saved_audited_and_shown(client: TestClient, admin: str) -> None:
    saved = _post(client, "/settings/remediation", admin, **REMEDIATION_FORM)
    assert saved.status_code == 303
    assert saved.headers["location"] == "/settings?done=remediation"
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        effective = store.effective_settings(session, ctx.settings)
    assert effective.approval_threshold == 1
    assert effective.approval_always_for == ["purge", "delete"]
    assert effective.vault_retention_days == 14
    assert effective.organisation_name == "Contoso <Security>"
    page = client.get("/settings")
    assert 'id="rs-approval-threshold" name="approval_threshold" value="1"' in page.text
    assert 'value="Contoso &lt;Security&gt;"' in page.text
    assert re.search(r'id="rs-always-delete"[^>]*checked', page.text)
    assert "by ada" in page.text
    [entry] = _audit(client, "settings.update")
    assert entry.before is not None
    assert entry.after is not None
    assert entry.before["approval_threshold"] == 100
    assert entry.after["approval_threshold"] == 1
    assert "approval_required" not in entry.after  # unchanged

    same = _post(client, "/settings/remediation", admin, **REMEDIATION_FORM)
    assert same.headers["location"] == "/settings?done=unchanged"
    assert len(_audit(client, "settings.update")) == 1

    # Unticked: no field at all.
    off = {k: v for k, v in REMEDIATION_FORM.items() if k != "approval_required"}
    _post(client, "/settings/remediation", admin, **off)
    with ctx.sessions() as session:
        assert store.effective_settings(session, ctx.settings).approval_required is False


def test_bad_remediation_settings_are_refused_field_by_field(
    client: TestClient, admin: str
) -> None:
    bad = {
        **REMEDIATION_FORM,
        "approval_threshold": "-3",
        "vault_retention_days": "0",
        "warning_notice_body": f"<p>$victim {HOSTILE}</p>",
    }
    refused = _post(client, "/settings/remediation", admin, **bad)
    assert refused.status_code == 422
    assert re.search(r'id="rs-approval-threshold-error"[^>]*>Input should be greater', refused.text)
    assert 'id="rs-vault-retention-error"' in refused.text
    assert re.search(r'id="rs-notice-body-error"[^>]*>[^<]*\$victim', refused.text)
    assert 'value="-3"' in refused.text  # what was typed comes back to fix
    assert HOSTILE not in refused.text
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        assert store.overrides(session) == {}
    assert _audit(client, "settings.update") == []
