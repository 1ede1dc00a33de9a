"""The behaviours every later feature leans on, end to end over HTTPS: a delivered email read
back exactly, mailbox throttling and a client that honours it, delta rounds, batches and roles."""

from __future__ import annotations

import asyncio
import base64
import email.policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx

from mailtrawl.emulator.testing import EmulatorProcess

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x01" * 300


def _multipart() -> tuple[bytes, str]:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = '"Ünïcode Sender" <sender@fabrikam.example>'
    msg["To"] = "Alice Archer <alice@contoso.com>, bob@contoso.com"
    msg["Cc"] = "erin@contoso.com"
    msg["Subject"] = "Rechnung fällig – bitte prüfen"
    msg["X-Campaign-Tag"] = "round-trip"
    message_id = make_msgid(domain="fabrikam.example")
    msg["Message-ID"] = message_id
    msg["Date"] = "Tue, 03 Nov 2026 10:00:00 +0000"
    msg.set_content("Plain part: see https://fabrikam.example/pay?id=42\n")
    msg.add_alternative(
        '<html><body><p>HTML part</p><img src="cid:logo"></body></html>', subtype="html"
    )
    html_part = msg.get_payload()[1]
    html_part.add_related(
        PNG,
        maintype="image",
        subtype="png",
        cid="<logo>",
        filename="logo.png",
        disposition="inline",
    )
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="Rechnung 42.pdf")
    return msg.as_bytes(), message_id


def test_a_delivered_multipart_email_reads_back_exactly(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    raw, message_id = _multipart()
    delivered = emulator.deliver(
        raw, ["alice@contoso.com", "bob@contoso.com"], received="2026-11-03T10:00:05Z"
    )
    assert {d["mailbox"] for d in delivered} == {"alice@contoso.com", "bob@contoso.com"}
    found = graph.get(
        "users/alice@contoso.com/messages",
        params={
            "$filter": f"internetMessageId eq '{message_id}'",
            "$select": "id,subject,from,sender,toRecipients,ccRecipients,body,internetMessageId,internetMessageHeaders,hasAttachments,receivedDateTime",
        },
    ).json()["value"]
    assert len(found) == 1
    msg = found[0]
    assert msg["subject"] == "Rechnung fällig – bitte prüfen"
    assert msg["from"] == {
        "emailAddress": {"name": "Ünïcode Sender", "address": "sender@fabrikam.example"}
    }
    assert msg["sender"] == msg["from"]
    assert [r["emailAddress"]["address"] for r in msg["toRecipients"]] == [
        "alice@contoso.com",
        "bob@contoso.com",
    ]
    assert [r["emailAddress"]["address"] for r in msg["ccRecipients"]] == ["erin@contoso.com"]
    assert msg["internetMessageId"] == message_id
    assert msg["receivedDateTime"] == "2026-11-03T10:00:05Z"
    assert msg["hasAttachments"] is True
    assert msg["body"]["contentType"] == "html"
    assert "HTML part" in msg["body"]["content"]
    headers = {h["name"]: h["value"] for h in msg["internetMessageHeaders"]}
    assert headers["X-Campaign-Tag"] == "round-trip"
    assert headers["Message-ID"] == message_id
    text = graph.get(
        f"users/alice@contoso.com/messages/{msg['id']}",
        params={"$select": "body"},
        headers={"Prefer": 'outlook.body-content-type="text"'},
    )
    assert text.json()["body"]["contentType"] == "text"
    assert "HTML part" in text.json()["body"]["content"]
    assert text.headers["Preference-Applied"] == 'outlook.body-content-type="text"'
    # MIME is the bytes delivered.
    assert graph.get(f"users/alice@contoso.com/messages/{msg['id']}/$value").content == raw
    attachments = graph.get(f"users/alice@contoso.com/messages/{msg['id']}/attachments").json()[
        "value"
    ]
    by_name = {a["name"]: a for a in attachments}
    assert set(by_name) == {"logo.png", "Rechnung 42.pdf"}
    assert base64.b64decode(by_name["Rechnung 42.pdf"]["contentBytes"]) == PDF
    assert by_name["Rechnung 42.pdf"]["contentType"] == "application/pdf"
    assert by_name["Rechnung 42.pdf"]["isInline"] is False
    assert by_name["logo.png"]["isInline"] is True
    assert by_name["logo.png"]["contentId"] == "logo"
    value = graph.get(
        f"users/alice@contoso.com/messages/{msg['id']}/attachments/{by_name['logo.png']['id']}/$value"
    )
    assert value.content == PNG


def test_forwarded_email_is_an_item_attachment(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    inner, _ = _multipart()
    outer = EmailMessage()
    outer["From"] = "bob@contoso.com"
    outer["To"] = "phishing@contoso.com"
    outer["Subject"] = "FW: suspicious"
    outer.set_content("Please check the attached.")
    outer.add_attachment(inner, maintype="message", subtype="rfc822")
    emulator.deliver(outer.as_bytes(), ["phishing@contoso.com"])
    msg = graph.get("users/phishing@contoso.com/messages", params={"$select": "id,subject"}).json()[
        "value"
    ][0]
    att = graph.get(f"users/phishing@contoso.com/messages/{msg['id']}/attachments").json()["value"][
        0
    ]
    assert att["@odata.type"] == "#microsoft.graph.itemAttachment"
    assert att["name"] == "Rechnung fällig – bitte prüfen"
    mime = graph.get(
        f"users/phishing@contoso.com/messages/{msg['id']}/attachments/{att['id']}/$value"
    ).content
    assert b"Rechnung" in mime or b"=?utf-8?" in mime.lower()


async def _burst(emu: EmulatorProcess, token: str, count: int, honour: bool) -> list[int]:
    statuses: list[int] = []
    async with httpx.AsyncClient(
        verify=emu.verify, trust_env=False, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as client:

        async def one() -> None:
            for _ in range(50):
                r = await client.get(
                    f"{emu.graph}/users/alice@contoso.com/messages", params={"$top": "1"}
                )
                statuses.append(r.status_code)
                if r.status_code != 429 or not honour:
                    return
                assert r.json()["error"]["code"] == "ApplicationThrottled"
                await asyncio.sleep(float(r.headers["Retry-After"]))

        await asyncio.gather(*(one() for _ in range(count)))
    return statuses


def test_more_than_four_concurrent_requests_on_one_mailbox_are_throttled(
    emulator: EmulatorProcess,
) -> None:
    emulator.settings(faults={"latency_ms": 300}, limits={"concurrency_retry_after": 0.2})
    token = emulator.token()
    statuses = asyncio.run(_burst(emulator, token, 8, honour=False))
    assert statuses.count(200) == 4
    assert statuses.count(429) == 4
    stats = emulator.stats()
    assert stats["peakMailboxInFlight"] == 4
    assert stats["throttled"] == 4


def test_a_client_that_honours_retry_after_completes(emulator: EmulatorProcess) -> None:
    emulator.settings(faults={"latency_ms": 100}, limits={"concurrency_retry_after": 0.1})
    statuses = asyncio.run(_burst(emulator, emulator.token(), 12, honour=True))
    assert statuses.count(200) == 12
    assert 429 in statuses
    assert emulator.stats()["peakMailboxInFlight"] <= 4


def test_throttling_answer_shape(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    emulator.settings(limits={"mailbox_requests_per_window": 2, "mailbox_window_seconds": 60})
    assert graph.get("users/bob@contoso.com/messages").status_code == 200
    assert graph.get("users/bob@contoso.com/messages").status_code == 200
    third = graph.get("users/bob@contoso.com/messages")
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) >= 1
    body = third.json()["error"]
    assert body["code"] == "ApplicationThrottled"
    assert {"date", "request-id", "client-request-id"} <= body["innerError"].keys()
    # Another mailbox has its own budget.
    assert graph.get("users/alice@contoso.com/messages").status_code == 200


def _delta_all(graph: httpx.Client, url: str, **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    response = graph.get(url, **kwargs).json()
    while True:
        items += response["value"]
        if "@odata.deltaLink" in response:
            return items, response["@odata.deltaLink"]
        response = graph.get(response["@odata.nextLink"], **kwargs).json()


def test_delta_rounds_report_new_moved_and_expired(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    prefer = {"Prefer": "odata.maxpagesize=1"}
    first, link = _delta_all(
        graph, "users/alice@contoso.com/mailFolders/inbox/messages/delta", headers=prefer
    )
    assert len(first) == 2
    raw, _ = _multipart()
    emulator.deliver(raw, ["alice@contoso.com"])
    added, link = _delta_all(graph, link, headers=prefer)
    assert [m["subject"] for m in added] == ["Rechnung fällig – bitte prüfen"]
    moved = graph.post(
        f"users/alice@contoso.com/messages/{added[0]['id']}/move",
        json={"destinationId": "junkemail"},
    )
    assert moved.status_code == 201
    gone, link = _delta_all(graph, link, headers=prefer)
    assert gone == [
        {
            "@odata.type": "#microsoft.graph.message",
            "id": added[0]["id"],
            "@removed": {"reason": "deleted"},
        }
    ]
    emulator.control("POST", "/delta/expire", {"mailboxes": ["alice@contoso.com"]})
    expired = graph.get(link)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "syncStateNotFound"
    assert expired.headers["Location"].endswith(
        "/users/alice@contoso.com/mailFolders/inbox/messages/delta"
    )


def test_batch_answers_each_request_on_its_own(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    body = {
        "requests": [
            {
                "id": "1",
                "method": "GET",
                "url": "/users/alice@contoso.com/messages?$select=subject",
            },
            {"id": "2", "method": "GET", "url": "/users/nobody@contoso.com/messages"},
            {
                "id": "3",
                "method": "PATCH",
                "url": "/users/alice@contoso.com/messages/does-not-exist",
                "headers": {"Content-Type": "application/json"},
                "body": {"isRead": True},
                "dependsOn": ["2"],
            },
        ]
    }
    responses = {r["id"]: r for r in graph.post("$batch", json=body).json()["responses"]}
    assert responses["1"]["status"] == 200
    assert responses["2"]["status"] == 404
    assert responses["2"]["body"]["error"]["code"] == "ErrorInvalidUser"
    assert responses["3"]["status"] == 424
    too_many = {"requests": [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]}
    assert graph.post("$batch", json=too_many).status_code == 400


def test_batch_inner_throttling_has_its_own_retry_after(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.settings(faults={"rate_429": 1.0, "retry_after": 7})
    body = {
        "requests": [{"id": "1", "method": "GET", "url": "/users/alice@contoso.com/mailFolders"}]
    }
    outer = graph.post("$batch", json=body)
    assert outer.status_code == 200
    inner = outer.json()["responses"][0]
    assert inner["status"] == 429
    assert inner["headers"]["Retry-After"] == "7"


def test_missing_role_is_403_in_graph_shape(emulator: EmulatorProcess) -> None:
    app = emulator.control(
        "POST", "/apps", {"displayName": "mail only", "permissions": {"Mail.ReadWrite": True}}
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    with emulator.client(
        base_url=emulator.graph + "/",
        headers={"Authorization": f"Bearer {token}", "client-request-id": "abc-123"},
    ) as client:
        users = client.get("users")
        categories = client.post(
            "users/alice@contoso.com/outlook/masterCategories", json={"displayName": "x"}
        )
        assert client.get("users/alice@contoso.com/messages").status_code == 200
    assert users.status_code == 403
    assert users.json()["error"]["code"] == "Authorization_RequestDenied"
    assert users.json()["error"]["innerError"]["client-request-id"] == "abc-123"
    assert users.headers["client-request-id"] == "abc-123"
    assert categories.status_code == 403
    assert categories.json()["error"]["code"] == "ErrorAccessDenied"


def test_access_policy_limits_the_app_to_a_group(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.control(
        "PUT", "/access-policies", [{"appId": emulator.info["client_id"], "group": "Finance Team"}]
    )
    assert graph.get("users/alice@contoso.com/messages").status_code == 200
    blocked = graph.get("users/bob@contoso.com/messages")
    assert blocked.status_code == 403
    assert "AccessPolicy" in blocked.json()["error"]["message"]


def test_injected_connection_reset_drops_the_connection(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.settings(faults={"rate_reset": 1.0})
    try:
        graph.get("users/alice@contoso.com/messages")
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("the request should have failed at the transport level")
    assert emulator.stats()["injectedFaults"]["reset"] >= 1
