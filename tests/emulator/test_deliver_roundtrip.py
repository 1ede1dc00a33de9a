"""A multipart email delivered through the control plane reads back through Graph exactly:
addresses, subject, bodies, identifiers, headers and every attachment's bytes."""

from __future__ import annotations

import base64
import email.policy
import hashlib
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from mailtrawl.emulator.testing import EmulatorProcess

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(200))
CSV = "name;betrag\nMüller;100\n".encode()
SUBJECT = "Rechnung fällig – bitte prüfen ✓"
MESSAGE_ID = "<roundtrip-42@fabrikam.example>"
TEXT = "Please review invoice 42 before Friday.\nPay at https://fabrikam.example/pay?id=42\n"
HTML = (
    "<html><body><p>Please review <b>invoice 42</b> before Friday.</p>"
    '<p><a href="https://fabrikam.example/pay?id=42">Pay</a></p>'
    '<img src="cid:logo@fabrikam.example"></body></html>'
)
SELECT = (
    "id,subject,from,sender,toRecipients,ccRecipients,bccRecipients,replyTo,body,bodyPreview,"
    "internetMessageId,internetMessageHeaders,hasAttachments,receivedDateTime,sentDateTime,"
    "isRead,isDraft,importance,parentFolderId"
)


def _roundtrip_email() -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Jürgen Öhler <juergen@fabrikam.example>"
    msg["Sender"] = "Fabrikam Mailer <bounce@mailer.fabrikam.example>"
    msg["To"] = "Alice Archer <alice@contoso.com>, bob@contoso.com"
    msg["Cc"] = "Erin Evans <erin@contoso.com>, audit@fabrikam.example"
    msg["Reply-To"] = "payments@fabrikam-pay.example"
    msg["Subject"] = SUBJECT
    msg["Message-ID"] = MESSAGE_ID
    msg["Date"] = "Tue, 03 Nov 2026 10:00:00 +0100"
    msg["X-Campaign-Id"] = "roundtrip-7"
    msg["X-Mailer"] = "Fabrikam Bulk 3.1"
    msg["Importance"] = "High"
    msg.set_content(TEXT)
    msg.add_alternative(HTML, subtype="html")
    html_part = msg.get_payload()[1]
    html_part.add_related(
        PNG,
        maintype="image",
        subtype="png",
        cid="<logo@fabrikam.example>",
        filename="logo.png",
        disposition="inline",
    )
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="Rechnung 42.pdf")
    msg.add_attachment(CSV, maintype="text", subtype="csv", filename="Übersicht.csv")
    return msg.as_bytes()


def _deliver(emulator: EmulatorProcess, raw: bytes, recipients: list[str], **extra: Any) -> Any:
    body = {"mime": base64.b64encode(raw).decode(), "recipients": recipients, **extra}
    return emulator.control("POST", "/deliver", body)["delivered"]


def _address(name: str, address: str) -> dict[str, Any]:
    return {"emailAddress": {"name": name, "address": address}}


@pytest.fixture
def delivered(emulator: EmulatorProcess) -> tuple[bytes, dict[str, str]]:
    raw = _roundtrip_email()
    # The test checks RFC 2047 decoding, so the subject must travel encoded.
    assert b"=?utf-8?" in raw.lower()
    assert SUBJECT.encode() not in raw
    answer = _deliver(
        emulator,
        raw,
        ["alice@contoso.com", "bob@contoso.com"],
        receivedDateTime="2026-11-03T09:00:05Z",
    )
    assert [d["mailbox"] for d in answer] == ["alice@contoso.com", "bob@contoso.com"]
    assert all(d["subject"] == SUBJECT for d in answer)
    return raw, {d["mailbox"]: d["id"] for d in answer}


@pytest.mark.parametrize("mailbox", ["alice@contoso.com", "bob@contoso.com"])
def test_properties_read_back(
    graph: httpx.Client, delivered: tuple[bytes, dict[str, str]], mailbox: str
) -> None:
    _, ids = delivered
    found = graph.get(
        f"users/{mailbox}/messages",
        params={"$filter": f"internetMessageId eq '{MESSAGE_ID}'", "$select": SELECT},
    )
    assert found.status_code == 200
    assert [m["id"] for m in found.json()["value"]] == [ids[mailbox]]
    msg = found.json()["value"][0]
    assert msg["subject"] == SUBJECT
    assert msg["from"] == _address("Jürgen Öhler", "juergen@fabrikam.example")
    assert msg["sender"] == _address("Fabrikam Mailer", "bounce@mailer.fabrikam.example")
    assert [r["emailAddress"]["address"] for r in msg["toRecipients"]] == [
        "alice@contoso.com",
        "bob@contoso.com",
    ]
    assert msg["toRecipients"][0]["emailAddress"]["name"] == "Alice Archer"
    assert [r["emailAddress"] for r in msg["ccRecipients"]] == [
        {"name": "Erin Evans", "address": "erin@contoso.com"},
        {"name": "audit@fabrikam.example", "address": "audit@fabrikam.example"},
    ]
    assert msg["bccRecipients"] == []
    assert [r["emailAddress"]["address"] for r in msg["replyTo"]] == [
        "payments@fabrikam-pay.example"
    ]
    assert msg["internetMessageId"] == MESSAGE_ID
    assert msg["receivedDateTime"] == "2026-11-03T09:00:05Z"
    assert msg["sentDateTime"] == "2026-11-03T09:00:00Z"  # the Date header, in UTC
    assert msg["hasAttachments"] is True
    assert msg["isDraft"] is False
    assert msg["isRead"] is False
    assert msg["importance"] == "high"
    inbox = graph.get(f"users/{mailbox}/mailFolders/inbox").json()["id"]
    assert msg["parentFolderId"] == inbox
    assert msg["body"]["contentType"] == "html"
    assert "<b>invoice 42</b>" in msg["body"]["content"]
    assert 'href="https://fabrikam.example/pay?id=42"' in msg["body"]["content"]
    assert msg["bodyPreview"].startswith("Please review invoice 42 before Friday.")
    headers = [(h["name"], h["value"]) for h in msg["internetMessageHeaders"]]
    by_name = dict(headers)
    assert by_name["X-Campaign-Id"] == "roundtrip-7"
    assert by_name["X-Mailer"] == "Fabrikam Bulk 3.1"
    assert by_name["Message-ID"] == MESSAGE_ID
    assert by_name["Reply-To"] == "payments@fabrikam-pay.example"
    assert by_name["Importance"] == "High"
    assert "juergen@fabrikam.example" in by_name["From"]
    assert "bob@contoso.com" in by_name["To"]
    # The headers come in the order they were written.
    names = [n for n, _ in headers]
    assert names.index("From") < names.index("Subject") < names.index("X-Campaign-Id")


def test_text_body_on_request(graph: httpx.Client, delivered: tuple[bytes, dict[str, str]]) -> None:
    _, ids = delivered
    response = graph.get(
        f"users/alice@contoso.com/messages/{ids['alice@contoso.com']}",
        params={"$select": "body"},
        headers={"Prefer": 'outlook.body-content-type="text"'},
    )
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == 'outlook.body-content-type="text"'
    body = response.json()["body"]
    assert body["contentType"] == "text"
    assert "Please review invoice 42 before Friday." in body["content"]
    assert "<" not in body["content"]


def test_attachments_read_back_byte_for_byte(
    emulator: EmulatorProcess, graph: httpx.Client, delivered: tuple[bytes, dict[str, str]]
) -> None:
    _, ids = delivered
    msg_id = ids["bob@contoso.com"]
    listed = graph.get(f"users/bob@contoso.com/messages/{msg_id}/attachments")
    assert listed.status_code == 200
    by_name = {a["name"]: a for a in listed.json()["value"]}
    expected = {
        "logo.png": ("image/png", PNG, True),
        "Rechnung 42.pdf": ("application/pdf", PDF, False),
        "Übersicht.csv": ("text/csv", CSV, False),
    }
    assert set(by_name) == set(expected)
    for name, (content_type, content, inline) in expected.items():
        att = by_name[name]
        assert att["@odata.type"] == "#microsoft.graph.fileAttachment"
        assert att["contentType"] == content_type
        assert att["size"] == len(content)
        assert att["isInline"] is inline
        assert base64.b64decode(att["contentBytes"]) == content
        value = graph.get(f"users/bob@contoso.com/messages/{msg_id}/attachments/{att['id']}/$value")
        assert value.status_code == 200
        assert value.content == content
    assert by_name["logo.png"]["contentId"] == "logo@fabrikam.example"
    # The control plane's snapshot agrees on names and hashes.
    inbox = next(
        f for f in emulator.snapshot("bob@contoso.com")["folders"] if f["wellKnownName"] == "inbox"
    )
    stored = next(m for m in inbox["messages"] if m["internetMessageId"] == MESSAGE_ID)
    assert stored["hasAttachments"] is True
    assert {a["name"]: a["sha256"] for a in stored["attachments"]} == {
        name: hashlib.sha256(content).hexdigest() for name, (_, content, _) in expected.items()
    }


def test_mime_is_the_delivered_bytes(
    graph: httpx.Client, delivered: tuple[bytes, dict[str, str]]
) -> None:
    raw, ids = delivered
    for mailbox, msg_id in ids.items():
        response = graph.get(f"users/{mailbox}/messages/{msg_id}/$value")
        assert response.status_code == 200
        assert response.content == raw


def test_each_recipient_gets_an_independent_copy(
    graph: httpx.Client, delivered: tuple[bytes, dict[str, str]]
) -> None:
    _, ids = delivered
    assert ids["alice@contoso.com"] != ids["bob@contoso.com"]
    graph.patch(
        f"users/alice@contoso.com/messages/{ids['alice@contoso.com']}", json={"isRead": True}
    )
    assert graph.get(f"users/alice@contoso.com/messages/{ids['alice@contoso.com']}").json()[
        "isRead"
    ]
    assert not graph.get(f"users/bob@contoso.com/messages/{ids['bob@contoso.com']}").json()[
        "isRead"
    ]


def test_inline_images_alone_are_not_attachments(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    msg = EmailMessage()
    msg["From"] = "news@fabrikam.example"
    msg["To"] = "carol@contoso.com"
    msg["Subject"] = "Newsletter with a logo"
    msg.set_content("plain")
    msg.add_alternative('<p>Hi</p><img src="cid:banner">', subtype="html")
    msg.get_payload()[1].add_related(
        PNG,
        maintype="image",
        subtype="png",
        cid="<banner>",
        filename="banner.png",
        disposition="inline",
    )
    msg_id = _deliver(emulator, msg.as_bytes(), ["carol@contoso.com"])[0]["id"]
    got = graph.get(f"users/carol@contoso.com/messages/{msg_id}").json()
    assert got["hasAttachments"] is False
    attachments = graph.get(f"users/carol@contoso.com/messages/{msg_id}/attachments").json()
    assert [(a["name"], a["isInline"]) for a in attachments["value"]] == [("banner.png", True)]


def test_html_only_and_legacy_charset_bodies(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    html_only = (
        b"From: promo@fabrikam.example\r\nTo: carol@contoso.com\r\nSubject: HTML only\r\n"
        b"Message-ID: <html-only@fabrikam.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Only <i>HTML</i> here</p>\r\n"
    )
    latin = (
        b"From: =?iso-8859-1?q?Fran=E7ois?= <francois@fabrikam.example>\r\n"
        b"To: carol@contoso.com\r\nSubject: =?iso-8859-1?q?R=E9sum=E9?=\r\n"
        b"Message-ID: <latin@fabrikam.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me\r\n"
    )
    html_id = _deliver(emulator, html_only, ["carol@contoso.com"])[0]["id"]
    latin_id = _deliver(emulator, latin, ["carol@contoso.com"])[0]["id"]
    html_msg = graph.get(f"users/carol@contoso.com/messages/{html_id}").json()
    assert html_msg["body"]["contentType"] == "html"
    assert "<i>HTML</i>" in html_msg["body"]["content"]
    assert html_msg["hasAttachments"] is False
    as_text = graph.get(
        f"users/carol@contoso.com/messages/{html_id}",
        headers={"Prefer": 'outlook.body-content-type="text"'},
    ).json()["body"]
    assert as_text == {"contentType": "text", "content": "Only HTML here"}
    latin_msg = graph.get(
        f"users/carol@contoso.com/messages/{latin_id}",
        headers={"Prefer": 'outlook.body-content-type="text"'},
    ).json()
    assert latin_msg["subject"] == "Résumé"
    assert latin_msg["from"] == _address("François", "francois@fabrikam.example")
    assert latin_msg["body"]["content"].strip() == "Café crème"


def test_delivery_into_a_chosen_folder(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    raw = _roundtrip_email()
    answer = _deliver(emulator, raw, ["erin@contoso.com"], folder="junkemail")
    assert answer[0]["folder"] == "junkemail"
    junk = graph.get("users/erin@contoso.com/mailFolders/junkemail/messages").json()["value"]
    assert [m["internetMessageId"] for m in junk] == [MESSAGE_ID]
    inbox = graph.get("users/erin@contoso.com/mailFolders/inbox/messages").json()["value"]
    assert MESSAGE_ID not in {m["internetMessageId"] for m in inbox}


def test_delivery_errors(emulator: EmulatorProcess) -> None:
    raw = _roundtrip_email()
    control = f"{emulator.info['control_url']}/deliver"
    auth = {"Authorization": f"Bearer {emulator.info['control_token']}"}
    cases = [
        ({"mime": base64.b64encode(raw).decode(), "recipients": ["dave@contoso.com"]}, 409),
        ({"mime": base64.b64encode(raw).decode(), "recipients": ["nobody@contoso.com"]}, 404),
        ({"mime": base64.b64encode(raw).decode(), "recipients": []}, 400),
        ({"mime": "%%%", "recipients": ["bob@contoso.com"]}, 400),
        ({"mime": base64.b64encode(b"   \r\n").decode(), "recipients": ["bob@contoso.com"]}, 400),
        (
            {
                "mime": base64.b64encode(raw).decode(),
                "recipients": ["bob@contoso.com"],
                "folder": "nowhere",
            },
            404,
        ),
        (
            {
                "mime": base64.b64encode(raw).decode(),
                "recipients": ["bob@contoso.com"],
                "copies": 0,
            },
            400,
        ),
    ]
    with emulator.client() as client:
        for payload, status in cases:
            response = client.post(control, json=payload, headers=auth)
            assert response.status_code == status, (payload, response.text)
            assert response.json()["error"]
    inbox = next(
        f for f in emulator.snapshot("bob@contoso.com")["folders"] if f["wellKnownName"] == "inbox"
    )
    assert len(inbox["messages"]) == 1  # only the fixture's message


def test_raw_rfc822_delivery_with_copies(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    raw = _roundtrip_email()
    with emulator.client() as client:
        response = client.post(
            f"{emulator.info['control_url']}/deliver",
            content=raw,
            params={
                "recipients": "frank@contoso.com",
                "copies": "3",
                "received": "2026-11-04T00:00:00Z",
            },
            headers={
                "Authorization": f"Bearer {emulator.info['control_token']}",
                "Content-Type": "message/rfc822",
            },
        )
    assert response.status_code == 200
    assert len(response.json()["delivered"]) == 3
    listed = graph.get(
        "users/frank@contoso.com/messages", params={"$select": "subject,receivedDateTime"}
    ).json()["value"]
    assert [(m["subject"], m["receivedDateTime"]) for m in listed] == [
        (SUBJECT, "2026-11-04T00:00:00Z")
    ] * 3
    assert len({m["id"] for m in listed}) == 3


def test_a_delivery_that_fails_for_one_recipient_delivers_nothing(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    folder = graph.post("users/bob@contoso.com/mailFolders", json={"displayName": "Held"}).json()
    payload = {
        "mime": base64.b64encode(_roundtrip_email()).decode(),
        "recipients": ["bob@contoso.com", "alice@contoso.com"],
        "folder": folder["id"],  # exists in Bob's mailbox only
    }
    with emulator.client() as client:
        response = client.post(
            f"{emulator.info['control_url']}/deliver",
            json=payload,
            headers={"Authorization": f"Bearer {emulator.info['control_token']}"},
        )
    assert response.status_code == 404
    held = graph.get(f"users/bob@contoso.com/mailFolders/{folder['id']}/messages").json()
    assert held["value"] == []
