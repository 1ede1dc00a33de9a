"""`/api/v1/mail-configurations`: CRUD, validation, roles, and credentials that never come back."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from mailtrawl.config import Settings

SECRET = "Pl4nted~Secret.Value-" + "x" * 20


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Contoso",
        "provider": "m365",
        "tenant": "7d4b6a52-3c1e-4f0a-9b8d-2e5f6a7b8c9d",
        "client_id": "0f8e7d6c-5b4a-4392-8170-6e5d4c3b2a19",
        "credential": {"kind": "secret", "client_secret": SECRET},
        "test_mailbox": "alice@contoso.com",
        "authorized_domains": ["contoso.com"],
    }
    body.update(overrides)
    return body


def test_the_api_needs_a_token(api: TestClient) -> None:
    response = api.get("/api/v1/mail-configurations")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    bad = api.get(
        "/api/v1/mail-configurations", headers={"Authorization": "Bearer mtk_not-a-real-token"}
    )
    assert bad.status_code == 401


def test_create_list_get_update_delete(api: TestClient, admin: dict[str, str]) -> None:
    created = api.post("/api/v1/mail-configurations", json=_body(), headers=admin)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["credential"] == {"kind": "secret", "hint": "••••xxxx", "expires_at": None}
    assert view["status"] == "unknown"
    assert view["authorized_domains"] == ["contoso.com"]
    listed = api.get("/api/v1/mail-configurations", headers=admin).json()
    assert [c["name"] for c in listed] == ["Contoso"]
    by_name = api.get("/api/v1/mail-configurations/Contoso", headers=admin).json()
    assert by_name["id"] == view["id"]
    patched = api.patch(
        f"/api/v1/mail-configurations/{view['id']}",
        json={"test_mailbox": "bob@contoso.com"},
        headers=admin,
    )
    assert patched.status_code == 200
    assert patched.json()["test_mailbox"] == "bob@contoso.com"
    assert api.delete(f"/api/v1/mail-configurations/{view['id']}", headers=admin).status_code == 204
    assert api.get(f"/api/v1/mail-configurations/{view['id']}", headers=admin).status_code == 404


def test_duplicate_name_is_a_conflict(api: TestClient, admin: dict[str, str]) -> None:
    assert api.post("/api/v1/mail-configurations", json=_body(), headers=admin).status_code == 201
    again = api.post("/api/v1/mail-configurations", json=_body(), headers=admin)
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]


def test_invalid_input_names_the_field_and_the_reason(
    api: TestClient, admin: dict[str, str]
) -> None:
    cases = {
        ("body", "tenant"): _body(tenant="not a tenant!"),
        ("body", "client_id"): _body(client_id="12345"),
        ("body", "authorized_domains"): _body(authorized_domains=[]),
        ("body", "test_mailbox"): _body(test_mailbox="nobody"),
    }
    for loc, body in cases.items():
        response = api.post("/api/v1/mail-configurations", json=body, headers=admin)
        assert response.status_code == 422, body
        errors = response.json()["detail"]
        assert any(tuple(e["loc"][:2]) == loc for e in errors), errors
    custom = api.post("/api/v1/mail-configurations", json=_body(cloud="custom"), headers=admin)
    assert custom.status_code == 422
    assert "custom" in custom.text


def test_a_bad_certificate_is_refused_with_its_reason(
    api: TestClient, admin: dict[str, str]
) -> None:
    body = _body(
        credential={"kind": "certificate", "private_key_pem": "nope", "certificate_pem": "nope"}
    )
    response = api.post("/api/v1/mail-configurations", json=body, headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "credential"]
    assert "PEM" in response.json()["detail"][0]["msg"]


def test_a_viewer_reads_but_cannot_change(
    api: TestClient, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    created = api.post("/api/v1/mail-configurations", json=_body(), headers=admin).json()
    assert api.get("/api/v1/mail-configurations", headers=viewer).status_code == 200
    assert (
        api.post(
            "/api/v1/mail-configurations", json=_body(name="Other"), headers=viewer
        ).status_code
        == 403
    )
    assert (
        api.patch(
            f"/api/v1/mail-configurations/{created['id']}", json={"enabled": False}, headers=viewer
        ).status_code
        == 403
    )
    assert (
        api.delete(f"/api/v1/mail-configurations/{created['id']}", headers=viewer).status_code
        == 403
    )
    assert (
        api.post(f"/api/v1/mail-configurations/{created['id']}/test", headers=viewer).status_code
        == 403
    )


def test_unknown_configuration_is_404(api: TestClient, admin: dict[str, str]) -> None:
    assert api.get(f"/api/v1/mail-configurations/{uuid.uuid4()}", headers=admin).status_code == 404


def test_the_secret_is_never_returned_nor_stored_in_clear(
    api: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    responses = [api.post("/api/v1/mail-configurations", json=_body(), headers=admin)]
    cid = responses[0].json()["id"]
    responses += [
        api.get("/api/v1/mail-configurations", headers=admin),
        api.get(f"/api/v1/mail-configurations/{cid}", headers=admin),
        api.patch(
            f"/api/v1/mail-configurations/{cid}",
            json={"credential": {"kind": "secret", "client_secret": SECRET + "2"}},
            headers=admin,
        ),
        api.get("/api/openapi.json"),
    ]
    for response in responses:
        assert SECRET not in response.text
    if settings.database_url.startswith("sqlite"):
        db_file = settings.database_url.removeprefix("sqlite:///")
        from pathlib import Path

        for path in Path(db_file).parent.glob(
            Path(db_file).name + "*"
        ):  # the database, its WAL and SHM files
            assert SECRET.encode() not in path.read_bytes()
