"""The message preview page without a browser: roles, escaping, the audit entry, errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailtrawl.accounts.models import Role
from mailtrawl.audit.models import AuditEntry
from mailtrawl.configurations import service as configurations_service
from mailtrawl.configurations.schemas import ConfigurationCreate
from mailtrawl.core.mail import Body, FetchedMessage, MessageMeta, MessageParts, MessageRef
from mailtrawl.errors import NotFound, ProviderUnavailable
from mailtrawl.investigations.hits import store_hits
from mailtrawl.investigations.models import Investigation
from mailtrawl.web.ui import investigations as ui_investigations
from mailtrawl.web.ui.preview import PREVIEW_CSP
from tests.web.conftest import add_user, sign_in

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
JS_LINK = "javascript:window.__pwned=1"
BODY = f'<p>Dear user</p>{SCRIPT}{IMG}<a href="{JS_LINK}">click</a><img src="http://127.0.0.1:9/t.png">'


class FakeProvider:
    """Answers `fetch` with a fixed body, or raises the error it was given."""

    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.fetched: list[tuple[MessageRef, MessageParts, str | None]] = []

    async def __aenter__(self) -> FakeProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def fetch(
        self, ref: MessageRef, parts: MessageParts, *, body_format: str | None = None
    ) -> FetchedMessage:
        self.fetched.append((ref, parts, body_format))
        if isinstance(self.answer, Exception):
            raise self.answer
        content_type = "text" if body_format == "text" else "html"
        return FetchedMessage(meta=MessageMeta(ref=ref), body=Body(content_type, self.answer))  # type: ignore[arg-type]


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    fake = FakeProvider(BODY)
    monkeypatch.setattr(ui_investigations, "open_message_provider", lambda ctx, record: fake)
    return fake


def _hit(client: TestClient) -> tuple[uuid.UUID, uuid.UUID]:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions.begin() as session:
        configuration = configurations_service.create_configuration(
            session,
            box=ctx.box,
            data=ConfigurationCreate.model_validate(
                {
                    "name": "contoso",
                    "tenant": "contoso.onmicrosoft.com",
                    "client_id": "00000000-0000-0000-0000-000000000001",
                    "credential": {"kind": "secret", "client_secret": "s3cret-value"},
                    "authorized_domains": ["contoso.com"],
                }
            ),
        )
        record = Investigation(
            name="Phish",
            configuration_id=configuration.id,
            configuration_name="contoso",
            query={"match": {"from": {"equals": "evil@hostile.example"}}},
            scope={"kind": "all", "values": []},
            status="completed",
            mailboxes_total=1,
            mailboxes_done=1,
            hits=1,
        )
        session.add(record)
        session.flush()
        hit_id = uuid.uuid4()
        hit = dict(
            id=hit_id,
            investigation_id=record.id,
            mailbox_id="id-alice",
            mailbox_upn="alice@contoso.com",
            message_id="AAMk-1",
            folder="inbox",
            internet_message_id="<hostile@hostile.example>",
            subject=f"{SCRIPT} {IMG} {JS_LINK}",
            sender_address="evil@hostile.example",
            sender_name=f"{IMG} {SCRIPT}",
            recipients="alice@contoso.com",
            received=datetime(2025, 3, 1, tzinfo=UTC),
            attachment_names=f"{IMG} {JS_LINK}.html; invoice.pdf",
            has_attachments=True,
            matched=["from equals"],
            found_at=datetime(2025, 3, 1, tzinfo=UTC),
        )
        store_hits(session, [hit])
        return record.id, hit_id


def _previews(client: TestClient) -> list[AuditEntry]:
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.operation == "message.preview")
        ).all()
        session.expunge_all()
        return list(entries)


def test_a_viewer_sees_the_escaped_metadata_and_a_sandboxed_frame(
    client: TestClient, viewer: str, provider: FakeProvider
) -> None:
    investigation_id, hit_id = _hit(client)
    answer = client.get(f"/investigations/{investigation_id}/hits/{hit_id}")
    assert answer.status_code == 200, answer.text
    text = answer.text
    for raw in (SCRIPT, IMG, 'href="javascript'):
        assert raw not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text
    assert "invoice.pdf" in text
    assert "<li>&lt;img src=x" in text
    body_url = f"/investigations/{investigation_id}/hits/{hit_id}/body"
    assert f'<iframe sandbox src="{body_url}"' in text
    assert "allow-scripts" not in text
    assert "allow-same-origin" not in text
    assert "?format=text" in text
    # Showing the page fetched nothing: the frame does.
    assert provider.fetched == []
    # The hits table links each subject here.
    table = client.get(f"/investigations/{investigation_id}")
    assert f'href="/investigations/{investigation_id}/hits/{hit_id}"' in table.text


def test_the_body_is_sanitised_served_with_the_preview_csp_and_audited(
    client: TestClient, viewer: str, provider: FakeProvider
) -> None:
    investigation_id, hit_id = _hit(client)
    answer = client.get(f"/investigations/{investigation_id}/hits/{hit_id}/body")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-security-policy"] == PREVIEW_CSP
    assert answer.headers["x-frame-options"] == "SAMEORIGIN"
    assert "Dear user" in answer.text
    for bad in ("<script", "onerror", "javascript:", "127.0.0.1:9"):
        assert bad not in answer.text
    ref, parts, body_format = provider.fetched[0]
    assert ref.mailbox.id == "id-alice"
    assert ref.message_id == "AAMk-1"
    assert MessageParts.BODY in parts
    assert body_format == "html"
    entries = _previews(client)
    assert len(entries) == 1
    entry = entries[0]
    assert entry.actor == "vic"
    assert entry.entity_id == str(hit_id)
    assert entry.after is not None
    assert entry.after["mailbox"] == "alice@contoso.com"
    assert entry.after["investigation"] == str(investigation_id)


def test_plain_text_is_escaped_inside_pre(
    client: TestClient, viewer: str, provider: FakeProvider
) -> None:
    investigation_id, hit_id = _hit(client)
    answer = client.get(f"/investigations/{investigation_id}/hits/{hit_id}/body?format=text")
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == PREVIEW_CSP
    assert "<pre>" in answer.text
    assert "&lt;script&gt;" in answer.text
    assert "<script" not in answer.text
    assert provider.fetched[0][2] == "text"
    assert _previews(client)[0].after["format"] == "text"  # type: ignore[index]


@pytest.mark.parametrize(
    ("error", "code", "sentence"),
    [
        (NotFound(what="The message"), 404, "moved or deleted"),
        (ProviderUnavailable(), 502, "could not be fetched from the mail platform"),
    ],
)
def test_a_message_that_is_gone_or_unreachable_says_so(
    client: TestClient,
    viewer: str,
    provider: FakeProvider,
    error: Exception,
    code: int,
    sentence: str,
) -> None:
    investigation_id, hit_id = _hit(client)
    provider.answer = error
    answer = client.get(f"/investigations/{investigation_id}/hits/{hit_id}/body")
    assert answer.status_code == code
    assert sentence in answer.text
    assert answer.headers["content-security-policy"] == PREVIEW_CSP
    assert _previews(client)[0].outcome != "ok"


def test_signed_out_unknown_and_foreign_hits_are_refused(
    client: TestClient, provider: FakeProvider
) -> None:
    investigation_id, hit_id = _hit(client)
    anonymous = client.get(f"/investigations/{investigation_id}/hits/{hit_id}/body")
    assert anonymous.status_code in (303, 401)
    sign_in(client, add_user(client, "al", Role.ANALYST))
    other = uuid.uuid4()
    assert client.get(f"/investigations/{investigation_id}/hits/{other}").status_code == 404
    assert client.get(f"/investigations/{investigation_id}/hits/nope/body").status_code == 404
    assert client.get(f"/investigations/{other}/hits/{hit_id}").status_code == 404
    assert provider.fetched == []
    assert _previews(client) == []
