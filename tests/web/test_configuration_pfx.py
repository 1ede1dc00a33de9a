"""Uploading a certificate credential as a .pfx/.p12 file on the configuration form."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailtrawl.audit import service as audit_service
from mailtrawl.providers.graph.auth import ClientCertificate
from mailtrawl.storage.models import MailConfiguration
from mailtrawl.web.ui.configurations import MAX_PFX_BYTES, MAX_UPLOAD_BYTES
from tests.web.test_configuration_pages import _form, _store

PASSWORD = "pfx-pass-Wd7!"


def _pfx(password: str | None = PASSWORD) -> tuple[bytes, str]:
    """A PKCS#12 file with a fresh key and self-signed certificate; and its thumbprint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailtrawl test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    data = pkcs12.serialize_key_and_certificates(b"mailtrawl", key, certificate, None, encryption)
    return data, ClientCertificate.from_pfx(data, password).thumbprint.lower()


def _post(
    client: TestClient, path: str, csrf: str, fields: dict[str, str], pfx: bytes | None
) -> Any:
    # No file chosen: a browser still sends the part, with an empty file name.
    files = {
        "pfx_file": ("mailtrawl.pfx", pfx, "application/x-pkcs12")
        if pfx is not None
        else ("", b"", "application/octet-stream")
    }
    return client.post(path, data={"csrf_token": csrf, **fields}, files=files)


def _pfx_fields(**changes: str) -> dict[str, str]:
    fields = _form(
        credential_kind="pfx",
        client_secret="",
        pfx_password=PASSWORD,
        cloud="custom",
        authority_host="https://127.0.0.1:9",
        graph_endpoint="https://127.0.0.1:9",
    )
    return fields | changes


def _stored(client: TestClient, name: str = "contoso") -> MailConfiguration:
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        record = session.scalars(
            select(MailConfiguration).where(MailConfiguration.name == name)
        ).one()
        session.expunge(record)
        return record


def _pfx_error(html: str) -> str:
    found = re.search(
        r'<ul class="error" id="pfx_file-error" data-error-for="pfx_file">(.*?)</ul>', html, re.S
    )
    assert found, "no error next to the file input"
    return found.group(1)


def test_the_form_is_multipart_and_offers_the_file(client: TestClient, admin: str) -> None:
    page = client.get("/configurations/new?platform=m365").text
    assert 'enctype="multipart/form-data"' in page
    assert 'type="file" id="c-pfx" name="pfx_file" accept=".pfx,.p12,application/x-pkcs12"' in page
    assert 'name="pfx_password" value=""' in page


def test_a_pfx_with_its_password_becomes_the_certificate_credential(
    client: TestClient, admin: str
) -> None:
    data, thumbprint = _pfx()
    answer = _post(client, "/configurations/new", admin, _pfx_fields(), data)
    assert answer.status_code == 303, answer.text
    record = _stored(client)
    assert record.credential_kind == "certificate"
    assert record.credential_hint == thumbprint[-4:]
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        operations = [e.operation for e in audit_service.list_entries(session, limit=20).items]
    assert "configuration.create" in operations
    shown = (
        client.get(answer.headers["location"]).text
        + client.get(f"/configurations/{record.id}/edit").text
    )
    assert PASSWORD not in shown
    assert "MII" not in shown  # no base64 of the file or key


def test_a_wrong_password_or_a_broken_file_is_named_next_to_the_file(
    client: TestClient, admin: str
) -> None:
    data, _ = _pfx()
    wrong = _post(client, "/configurations/new", admin, _pfx_fields(pfx_password="nope"), data)
    assert wrong.status_code == 422
    assert "wrong password" in _pfx_error(wrong.text)
    assert "nope" not in wrong.text.split("<main", 1)[1]  # the password is not echoed
    assert 'value="contoso"' in wrong.text  # the other fields are kept
    broken = _post(client, "/configurations/new", admin, _pfx_fields(), b"not a pkcs12 file")
    assert broken.status_code == 422
    assert "could not be opened" in _pfx_error(broken.text)
    missing = _post(client, "/configurations/new", admin, _pfx_fields(), None)
    assert missing.status_code == 422
    assert "Choose the .pfx or .p12 file" in _pfx_error(missing.text)
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(MailConfiguration)).first() is None


def test_uploads_are_bounded(client: TestClient, admin: str) -> None:
    too_big = _post(client, "/configurations/new", admin, _pfx_fields(), b"0" * (MAX_PFX_BYTES + 1))
    assert too_big.status_code == 422
    assert "larger than 64 KB" in _pfx_error(too_big.text)
    huge = _post(client, "/configurations/new", admin, _pfx_fields(), b"0" * (MAX_UPLOAD_BYTES + 1))
    assert huge.status_code == 413


def test_editing_replaces_the_credential_with_an_uploaded_pfx(
    client: TestClient, admin: str
) -> None:
    configuration = _store(client, "contoso")
    data, thumbprint = _pfx(password=None)
    fields = _pfx_fields(pfx_password="", test_mailbox="", authorized_domains="contoso.com")
    answer = _post(client, f"/configurations/{configuration}/edit", admin, fields, data)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/configurations/{configuration}?done=saved"
    record = _stored(client)
    assert record.id == uuid.UUID(str(configuration))
    assert record.credential_kind == "certificate"
    assert record.credential_hint == thumbprint[-4:]
    # Without a file, the stored credential stays.
    again = _post(client, f"/configurations/{configuration}/edit", admin, fields, None)
    assert again.status_code == 303
    assert _stored(client).credential_hint == thumbprint[-4:]
