"""Mail configuration pages without a browser: forms, validation, write-only credentials, roles."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi.testclient import TestClient

from mailtrawl.accounts.models import Role
from mailtrawl.audit import service as audit_service
from mailtrawl.configurations import service as configurations_service
from mailtrawl.configurations.schemas import ConfigurationCreate
from tests.web.conftest import add_user, sign_in

SECRET = "s3cr3t-Value~ABCDEFGHIJKLMNOPQRSTUVWX-9z"
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="alert(1)">'
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def _form(**changes: str) -> dict[str, str]:
    fields = {
        "name": "contoso",
        "tenant": TENANT,
        "client_id": CLIENT_ID,
        "credential_kind": "secret",
        "client_secret": SECRET,
        "cloud": "global",
        "test_mailbox": "it-test@contoso.com",
        "authorized_domains": "contoso.com, fabrikam.com",
        "scope_kind": "all",
        "scope_values": "",
        "enabled": "on",
    }
    return fields | changes


def _store(client: TestClient, name: str, secret: str = SECRET) -> uuid.UUID:
    """A configuration written through the service (no connection test)."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions.begin() as session:
        record = configurations_service.create_configuration(
            session,
            box=ctx.box,
            data=ConfigurationCreate.model_validate(
                {
                    "name": name,
                    "tenant": TENANT,
                    "client_id": CLIENT_ID,
                    "credential": {"kind": "secret", "client_secret": secret},
                    "authorized_domains": ["contoso.com"],
                }
            ),
        )
        return record.id


def _operations(client: TestClient) -> list[str]:
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        return [e.operation for e in audit_service.list_entries(session, limit=100).items]


def _post(client: TestClient, path: str, csrf: str, data: dict[str, Any]) -> Any:
    return client.post(path, data={"csrf_token": csrf, **data})


def test_the_list_shows_each_configuration_and_admin_buttons(
    client: TestClient, admin: str
) -> None:
    configuration_id = _store(client, "contoso")
    page = client.get("/configurations")
    assert page.status_code == 200
    row = re.search(r'<tr data-configuration="contoso".*?</tr>', page.text, flags=re.S)
    assert row, page.text
    assert "Microsoft 365" in row.group(0)
    assert "never" in row.group(0)
    assert f'href="/configurations/{configuration_id}/edit"' in row.group(0)
    assert f'action="/configurations/{configuration_id}/test"' in row.group(0)
    assert f'href="/configurations/{configuration_id}/remove"' in row.group(0)
    assert 'href="/configurations/new"' in page.text


def test_step_one_offers_microsoft_365_and_shows_the_others_as_coming(
    client: TestClient, admin: str
) -> None:
    choose = client.get("/configurations/new")
    assert choose.status_code == 200
    assert 'href="/configurations/new?platform=m365"' in choose.text
    for label in ("Google Workspace", "Exchange (EWS)", "IMAP"):
        assert re.search(rf"disabled[^>]*>{re.escape(label)} <span[^>]*>\(coming\)", choose.text)
    form = client.get("/configurations/new?platform=m365")
    assert form.status_code == 200
    assert "<details" in form.text
    for permission in (
        "Directory.Read.All",
        "Mail.ReadWrite",
        "MailboxSettings.ReadWrite",
        "User.Read.All",
    ):
        assert f"<code>{permission}</code>" in form.text
    assert "Grant admin consent" in form.text
    assert "New-ApplicationAccessPolicy" in form.text


def test_validation_errors_sit_next_to_their_fields_and_keep_the_values_but_not_the_secret(
    client: TestClient, admin: str
) -> None:
    answer = _post(
        client,
        "/configurations/new",
        admin,
        _form(
            name="typed name",
            tenant="not a tenant!",
            client_id="12345",
            test_mailbox="nobody",
            authorized_domains="",
            cloud="custom",
            authority_host="http://plain.example",
            graph_endpoint="https://graph.example",
        ),
    )
    assert answer.status_code == 422
    html = answer.text
    assert 'value="typed name"' in html
    assert 'value="not a tenant!"' in html
    for name in ("tenant", "client_id", "test_mailbox", "authorized_domains", "authority_host"):
        assert f'data-error-for="{name}"' in html, name
    assert "Must be the Directory (tenant) ID" in html
    assert "Must be an https:// URL" in html
    assert SECRET not in html
    assert _operations(client).count("configuration.create") == 0

    missing = _post(client, "/configurations/new", admin, _form(client_secret=""))
    assert missing.status_code == 422
    assert 'data-error-for="client_secret"' in missing.text
    assert "not its Secret ID" in missing.text


def test_the_name_must_be_unique(client: TestClient, admin: str) -> None:
    _store(client, "contoso")
    answer = _post(client, "/configurations/new", admin, _form())
    assert answer.status_code == 422
    assert 'data-error-for="name"' in answer.text
    assert "already exists" in answer.text
    assert SECRET not in answer.text


def test_saving_creates_tests_and_audits_and_the_secret_stays_write_only(
    client: TestClient, admin: str
) -> None:
    # The tenant exists nowhere reachable: the test runs and fails, the configuration stays.
    answer = _post(
        client,
        "/configurations/new",
        admin,
        _form(
            cloud="custom",
            authority_host="https://127.0.0.1:9",
            graph_endpoint="https://127.0.0.1:9",
        ),
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert re.fullmatch(r"/configurations/[0-9a-f-]{36}\?done=(created|saved)", location)
    detail = client.get(location)
    assert detail.status_code == 200
    assert 'id="checks"' in detail.text
    assert 'data-check="token"' in detail.text
    assert 'data-check-status="failed"' in detail.text
    operations = _operations(client)
    assert "configuration.create" in operations
    assert "configuration.test" in operations
    configuration_id = location.split("/")[2].split("?")[0]
    pages = [
        detail.text,
        client.get("/configurations").text,
        client.get(f"/configurations/{configuration_id}/edit").text,
        client.get(f"/configurations/{configuration_id}/remove").text,
        client.get("/").text,
    ]
    for html in pages:
        assert SECRET not in html
        assert SECRET[:-4] not in html
    edit = pages[2]
    assert 'name="client_secret" value=""' in edit
    assert "Leave the fields below empty to keep it" in edit
    assert SECRET[-4:] in edit  # the hint, and only the hint


def test_editing_keeps_an_empty_secret_and_audits_the_change(
    client: TestClient, admin: str
) -> None:
    configuration_id = _store(client, "contoso")
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    answer = _post(
        client,
        f"/configurations/{configuration_id}/edit",
        admin,
        _form(name="contoso renamed", client_secret="", authorized_domains="contoso.com"),
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/configurations/{configuration_id}?done=saved"
    with ctx.sessions.begin() as session:
        record = configurations_service.get_configuration(session, ref=configuration_id)
        assert record.name == "contoso renamed"
        assert record.test_mailbox == "it-test@contoso.com"
        assert configurations_service.credential_of(ctx.box, record).client_secret == SECRET
    assert _operations(client).count("configuration.update") == 1

    # The same values again change nothing and write no audit entry.
    again = _post(
        client,
        f"/configurations/{configuration_id}/edit",
        admin,
        _form(name="contoso renamed", client_secret="", authorized_domains="contoso.com"),
    )
    assert again.headers["location"].endswith("?done=unchanged")
    assert _operations(client).count("configuration.update") == 1

    new_secret = "another-secret-value-0123456789"
    replaced = _post(
        client,
        f"/configurations/{configuration_id}/edit",
        admin,
        _form(name="contoso renamed", client_secret=new_secret, authorized_domains="contoso.com"),
    )
    assert replaced.status_code == 303
    with ctx.sessions.begin() as session:
        record = configurations_service.get_configuration(session, ref=configuration_id)
        assert configurations_service.credential_of(ctx.box, record).client_secret == new_secret
        assert record.status == "unknown"


def test_removing_asks_first_then_deletes_and_audits(client: TestClient, admin: str) -> None:
    configuration_id = _store(client, "contoso")
    confirm = client.get(f"/configurations/{configuration_id}/remove")
    assert confirm.status_code == 200
    assert "contoso" in confirm.text
    assert "keep their results" in confirm.text
    # Without the CSRF token nothing happens.
    refused = client.post(f"/configurations/{configuration_id}/remove")
    assert refused.status_code == 403
    assert client.get(f"/configurations/{configuration_id}").status_code == 200
    removed = _post(client, f"/configurations/{configuration_id}/remove", admin, {})
    assert removed.status_code == 303
    assert removed.headers["location"] == "/configurations?done=removed"
    assert "keep their results" in client.get(removed.headers["location"]).text
    assert client.get(f"/configurations/{configuration_id}").status_code == 404
    assert "configuration.delete" in _operations(client)


def test_hostile_names_are_escaped_everywhere(client: TestClient, admin: str) -> None:
    configuration_id = _store(client, HOSTILE)
    for path in (
        "/configurations",
        f"/configurations/{configuration_id}",
        f"/configurations/{configuration_id}/edit",
        f"/configurations/{configuration_id}/remove",
        "/",
    ):
        html = client.get(path).text
        assert "<script>window.__pwned" not in html, path
        assert "<img src=x" not in html, path
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html, path


def test_every_write_needs_the_csrf_token(client: TestClient, admin: str) -> None:
    configuration_id = _store(client, "contoso")
    for path in (
        "/configurations/new",
        f"/configurations/{configuration_id}/edit",
        f"/configurations/{configuration_id}/test",
        f"/configurations/{configuration_id}/remove",
    ):
        answer = client.post(path, data=_form())
        assert answer.status_code == 403, path
        wrong = client.post(path, data={"csrf_token": "wrong", **_form()})
        assert wrong.status_code == 403, path
    assert _operations(client).count("configuration.create") == 0


def test_viewers_and_analysts_see_the_list_without_buttons_and_are_refused(
    client: TestClient,
) -> None:
    configuration_id = _store(client, "contoso")
    for username, role in (("vic", Role.VIEWER), ("al", Role.ANALYST)):
        client.cookies.clear()
        csrf = sign_in(client, add_user(client, username, role))
        listing = client.get("/configurations")
        assert listing.status_code == 200
        assert 'data-configuration="contoso"' in listing.text
        main = listing.text.split('<main id="main"', 1)[1]
        assert 'method="post"' not in main
        assert "/edit" not in main
        assert "/remove" not in main
        assert 'href="/configurations/new"' not in main
        detail = client.get(f"/configurations/{configuration_id}")
        assert detail.status_code == 200
        assert 'id="test-again"' not in detail.text
        for path in (
            "/configurations/new",
            "/configurations/new?platform=m365",
            f"/configurations/{configuration_id}/edit",
            f"/configurations/{configuration_id}/remove",
        ):
            assert client.get(path).status_code == 403, path
        for path in (
            "/configurations/new",
            f"/configurations/{configuration_id}/edit",
            f"/configurations/{configuration_id}/test",
            f"/configurations/{configuration_id}/remove",
        ):
            assert _post(client, path, csrf, _form(name=f"by {username}")).status_code == 403, path
    assert [op for op in _operations(client) if op.startswith("configuration.")] == []


def test_unknown_configurations_are_404_pages(client: TestClient, admin: str) -> None:
    missing = client.get(f"/configurations/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
