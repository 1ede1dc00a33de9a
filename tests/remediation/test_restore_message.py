"""A purged message rebuilt from its MIME comes back as the same received mail, and hostile
or broken MIME never breaks the rebuild."""

from __future__ import annotations

import base64
import email.policy
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from mailtrawl.core import Action, MessageParts, ServerQuery
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.errors import NotFound
from mailtrawl.providers.graph.provider import GraphProvider
from mailtrawl.remediation.restore import (
    FALLBACK_NAME,
    MAX_CUSTOM_HEADERS,
    MimeTooLarge,
    message_from_mime,
)
from tests.providers.conftest import m365_settings

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(200))
SUBJECT = "Rechnung fällig – bitte prüfen ✓ 請求書"
HTML = (
    "<html><body><p>Bitte prüfen Sie <b>Rechnung 42</b>.</p>"
    '<img src="cid:logo@fabrikam.example"></body></html>'
)
RECEIVED = datetime(2026, 11, 3, 9, 5, 7, tzinfo=UTC)
SELECT = "subject,from,toRecipients,ccRecipients,replyTo,sentDateTime,body,internetMessageId"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def m365(emulator: EmulatorProcess) -> AsyncIterator[GraphProvider]:
    provider = GraphProvider(m365_settings(emulator))
    yield provider
    await provider.aclose()


@pytest.fixture
async def graph_api(emulator: EmulatorProcess) -> AsyncIterator[httpx.AsyncClient]:
    """Graph v1.0 for the test app, to read and set what the provider does not expose."""
    async with httpx.AsyncClient(
        base_url=emulator.graph + "/",
        headers={"Authorization": f"Bearer {emulator.token()}"},
        verify=emulator.verify,
        trust_env=False,
        timeout=30.0,
    ) as client:
        yield client


def _phish() -> bytes:
    inner = EmailMessage(policy=email.policy.SMTP)
    inner["From"] = "Original Sender <orig@fabrikam.example>"
    inner["To"] = "alice@contoso.com"
    inner["Subject"] = "Ursprüngliche Rechnung"
    inner["Date"] = "Mon, 02 Nov 2026 08:00:00 +0000"
    inner["Message-ID"] = "<inner-1@fabrikam.example>"
    inner.set_content("The forwarded original.\n")

    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Jürgen Öhler <juergen@fabrikam.example>"
    msg["To"] = "Alice Archer <alice@contoso.com>, bob@contoso.com"
    msg["Cc"] = "Erin Evans <erin@contoso.com>"
    msg["Reply-To"] = "payments@fabrikam-pay.example"
    msg["Subject"] = SUBJECT
    msg["Message-ID"] = "<restore-42@fabrikam.example>"
    msg["Date"] = "Tue, 03 Nov 2026 10:00:00 +0100"
    msg["X-Campaign-Id"] = "restore-7"
    msg.set_content("Bitte prüfen Sie Rechnung 42.\n")
    msg.add_alternative(HTML, subtype="html")
    msg.get_payload()[1].add_related(
        PNG,
        maintype="image",
        subtype="png",
        cid="<logo@fabrikam.example>",
        filename="logo.png",
        disposition="inline",
    )
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="Rechnung 42.pdf")
    msg.add_attachment(inner)
    return msg.as_bytes()


def _stored(emu: EmulatorProcess, mailbox: str, immutable_id: str) -> dict[str, Any] | None:
    for folder in emu.snapshot(mailbox)["folders"]:
        for message in folder["messages"]:
            if message["immutableId"] == immutable_id:
                return dict(message)
    return None


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _addresses(recipients: list[dict[str, Any]]) -> list[str]:
    return [r["emailAddress"]["address"] for r in recipients]


@pytest.mark.anyio
async def test_a_purged_message_comes_back_as_the_same_received_mail(
    emulator: EmulatorProcess, graph_api: httpx.AsyncClient, m365: GraphProvider
) -> None:
    [delivered] = emulator.deliver(_phish(), ["alice@contoso.com"], received=RECEIVED.isoformat())
    alice = await m365.get_mailbox("alice@contoso.com")
    [meta] = [
        m
        async for m in m365.search(
            alice, ServerQuery(internet_message_id=delivered["internetMessageId"])
        )
    ]
    ref = meta.ref
    await m365.act(ref, Action.set_categories(["Phish suspect", "Finance"]))
    patched = await graph_api.patch(
        f"users/{alice.id}/messages/{ref.message_id}",
        json={"flag": {"flagStatus": "flagged"}, "isRead": True, "importance": "high"},
    )
    assert patched.status_code == 200, patched.text
    original = await graph_api.get(
        f"users/{alice.id}/messages/{ref.message_id}", params={"$select": SELECT}
    )
    assert original.status_code == 200, original.text
    before = _stored(emulator, "alice@contoso.com", delivered["immutableId"])
    assert before is not None
    assert before["isRead"] is True
    assert before["flagStatus"] == "flagged"

    # What the undo vault keeps: the MIME and the mailbox state.
    fetched = await m365.fetch(ref, MessageParts.MIME)
    assert fetched.mime is not None
    await m365.act(ref, Action.purge())
    assert _stored(emulator, "alice@contoso.com", delivered["immutableId"]) is None
    with pytest.raises(NotFound):
        await m365.fetch(ref, MessageParts.MIME)

    rebuilt = message_from_mime(
        fetched.mime,
        received=_when(before["receivedDateTime"]),
        categories=tuple(before["categories"]),
        is_read=before["isRead"],
        flag_status=before["flagStatus"],
        importance=before["importance"],
    )
    restored = await m365.create_message(alice, before["folderId"], rebuilt, draft=False)

    after = _stored(emulator, "alice@contoso.com", restored.message_id)
    assert after is not None
    assert after["isDraft"] is False
    assert after["folder"] == before["folder"] == "inbox"
    assert after["subject"] == before["subject"] == SUBJECT
    assert after["from"] == before["from"] == "juergen@fabrikam.example"
    assert _when(after["receivedDateTime"]) == _when(before["receivedDateTime"]) == RECEIVED
    assert after["categories"] == before["categories"] == ["Phish suspect", "Finance"]
    assert after["isRead"] is True
    assert after["flagStatus"] == "flagged"
    assert after["importance"] == "high"
    assert after["internetMessageId"] == before["internetMessageId"]

    def attachments(message: dict[str, Any]) -> dict[str, str]:
        return {a["name"]: a["sha256"] for a in message["attachments"]}

    # The attached email comes back as an .eml file holding the same MIME.
    expected = {
        (f"{name}.eml" if item["kind"] == "item" else name): item["sha256"]
        for name, item in ((a["name"], a) for a in before["attachments"])
    }
    assert attachments(after) == expected
    assert set(expected) == {"logo.png", "Rechnung 42.pdf", "Ursprüngliche Rechnung.eml"}
    assert expected["Rechnung 42.pdf"] == hashlib.sha256(PDF).hexdigest()
    assert expected["logo.png"] == hashlib.sha256(PNG).hexdigest()

    now = await graph_api.get(
        f"users/{alice.id}/messages/{restored.message_id}", params={"$select": SELECT}
    )
    assert now.status_code == 200, now.text
    old, new = original.json(), now.json()
    for field in ("toRecipients", "ccRecipients", "replyTo"):
        assert _addresses(new[field]) == _addresses(old[field]), field
    assert new["from"]["emailAddress"]["name"] == "Jürgen Öhler"
    assert _when(new["sentDateTime"]) == _when(old["sentDateTime"])
    assert new["body"]["contentType"] == "html"
    assert 'src="cid:logo@fabrikam.example"' in new["body"]["content"]
    listed = await graph_api.get(f"users/{alice.id}/messages/{restored.message_id}/attachments")
    inline = listed.json()
    [logo] = [a for a in inline["value"] if a["name"] == "logo.png"]
    assert logo["isInline"] is True
    assert logo["contentId"] == "logo@fabrikam.example"


# Pure rebuilds of broken and hostile MIME ------------------------------------------------


def _rebuild(raw: bytes, **options: Any) -> Any:
    state: dict[str, Any] = {
        "received": None,
        "is_read": None,
        "flag_status": None,
        "importance": None,
    }
    state.update(options)
    return message_from_mime(raw, **state)


def test_broken_charsets_degrade_to_text() -> None:
    raw = (
        b"From: =?no-such-charset?B?SsO8cmdlbg==?= <j@fabrikam.example>\r\n"
        b"To: alice@contoso.com\r\n"
        b"Subject: =?utf-8?B?broken base64?= and \xff\xfe raw bytes\r\n"
        b"Date: Tue, 03 Nov 2026 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="x-unknown-9"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"Gr\xc3\xbc\xc3\x9fe \xff\xfe end\r\n"
    )
    message = _rebuild(raw)
    assert message.body_type == "text"
    assert message.body.startswith("Grüße")
    assert "\ufffd" in message.body
    assert "raw bytes" in message.subject
    assert message.from_ is not None
    assert message.from_.address == "j@fabrikam.example"


def test_rot13_and_other_non_text_codecs_are_not_used() -> None:
    raw = (
        b"Subject: codec\r\nContent-Type: text/plain; charset=rot13\r\n\r\nuryyb\r\n"
        b"\\u0041 stays\r\n"
    )
    assert _rebuild(raw).body.startswith("uryyb")
    escaped = (
        b"Subject: codec\r\nContent-Type: text/plain; charset=unicode_escape\r\n\r\n\\u0041\r\n"
    )
    assert _rebuild(escaped).body.startswith("\\u0041")


def test_missing_date_uses_the_snapshot_time_or_none() -> None:
    raw = b"From: a@fabrikam.example\r\nTo: alice@contoso.com\r\nSubject: no date\r\n\r\nhi\r\n"
    received = datetime(2026, 11, 4, 12, 30, tzinfo=UTC)
    with_time = _rebuild(raw, received=received)
    assert with_time.sent is None
    assert with_time.received == received
    without = _rebuild(raw)
    assert without.sent is None
    assert without.received is None
    # The snapshot's received time wins over the Date header; Date stays the sent time.
    dated = b"Date: Tue, 03 Nov 2026 10:00:00 +0000\r\n" + raw
    both = _rebuild(dated, received=received)
    assert both.received == received
    assert both.sent == datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    assert _rebuild(dated).received == both.sent


def test_header_injection_attempts_stay_inside_their_values() -> None:
    x_headers = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(40))
    raw = (
        "From: =?utf-8?Q?Evil=0D=0ABcc=3A_victim=40contoso.com?= <evil@fabrikam.example>\r\n"
        "To: alice@contoso.com\r\n"
        "Subject: =?utf-8?Q?Hello=0D=0ABcc:_victim@contoso.com=0D=0A=0D=0A<b>body</b>?=\r\n"
        "X-Injected: =?utf-8?Q?one=0D=0AX-Other:_two?=\r\n"
        "Bcc: hidden@contoso.com\r\n"
        "Received: from mx.fabrikam.example\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"{x_headers}"
        "\r\n"
        "body\r\n"
    ).encode()
    message = _rebuild(raw)
    assert message.subject == "Hello Bcc: victim@contoso.com <b>body</b>"
    assert message.from_ is not None
    # The parser refuses a name that decodes to line breaks: the address survives alone.
    assert "\n" not in message.from_.name
    assert "\r" not in message.from_.name
    assert message.from_.address == "evil@fabrikam.example"
    names = [h.name for h in message.headers]
    assert all(name.lower().startswith("x-") for name in names)
    assert "Bcc" not in names
    assert "Received" not in names
    injected = next(h for h in message.headers if h.name == "X-Injected")
    assert injected.value == "one X-Other: two"
    assert all("\r" not in h.value and "\n" not in h.value for h in message.headers)
    assert len(message.headers) == MAX_CUSTOM_HEADERS


def test_oversize_mime_is_refused_with_a_clear_error() -> None:
    raw = b"Subject: big\r\n\r\n" + b"x" * 2_000
    with pytest.raises(MimeTooLarge, match="more than the 1000 bytes") as caught:
        _rebuild(raw, max_bytes=1_000)
    assert isinstance(caught.value, ValueError)
    assert _rebuild(raw, max_bytes=len(raw)).subject == "big"


def test_text_only_body() -> None:
    raw = (
        b"From: a@fabrikam.example\r\nTo: alice@contoso.com\r\nSubject: plain\r\n"
        b"Message-ID: <plain-1@fabrikam.example>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        b"\r\nLine one =C3=A4\r\nLine two\r\n"
    )
    message = _rebuild(raw, is_read=True, flag_status="complete", importance="low")
    assert message.body_type == "text"
    assert message.body == "Line one ä\r\nLine two\r\n"
    assert message.attachments == ()
    assert message.internet_message_id == "<plain-1@fabrikam.example>"
    assert (message.is_read, message.flag_status, message.importance) == (True, "complete", "low")


def test_unknown_state_values_are_left_to_the_platform() -> None:
    raw = b"Subject: s\r\nX-Priority: 1 (Highest)\r\n\r\nbody\r\n"
    message = _rebuild(raw, flag_status="purple", importance=None, categories=["A", "", "A"])
    assert message.flag_status is None
    assert message.importance == "high"  # read from X-Priority when the snapshot has none
    assert message.categories == ("A",)
    assert message.is_read is False


def test_unparseable_structure_is_kept_whole_as_an_eml() -> None:
    depth = 200
    head = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    raw = (
        b"Subject: nested\r\nFrom: a@fabrikam.example\r\n"
        b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + head + b"--b200--\r\n"
    )
    message = _rebuild(raw)
    assert message.subject == "nested"
    [whole] = message.attachments
    assert whole.name == FALLBACK_NAME
    assert whole.content == raw
    assert FALLBACK_NAME in message.body


def test_attachments_without_names_and_encoded_attached_emails() -> None:
    inner = b"Subject: Inner\r\nFrom: x@fabrikam.example\r\n\r\ninner body\r\n"
    raw = (
        b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n"
        b"--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"\x00\x01binary")
        + b"\r\n--B\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(inner)
        + b"\r\n--B--\r\n"
    )
    message = _rebuild(raw)
    assert message.body_type == "html"
    assert message.body.strip() == "<p>hi</p>"
    by_name = {a.name: a for a in message.attachments}
    assert set(by_name) == {"ATT00001.bin", "Inner.eml"}
    assert by_name["ATT00001.bin"].content == b"\x00\x01binary"
    assert by_name["Inner.eml"].content == inner
    assert by_name["Inner.eml"].content_type == "message/rfc822"
