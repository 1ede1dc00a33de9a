"""Graph v1.0 mail reading over HTTPS: folders, message lists, query rules, search, MIME,
attachments, mailbox errors and the limits of Mail.ReadBasic.All."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.graph_assertions import assert_graph_error as _error

VISIBLE_TOP_FOLDERS = {
    "Inbox",
    "Drafts",
    "Sent Items",
    "Deleted Items",
    "Junk Email",
    "Archive",
    "Outbox",
    "Conversation History",
}
PHISH_ID = "<inv-20261102-0001@fabrikam-billing.com>"
PHISH_SUBJECT = "Overdue invoice – action required"


def _mail(
    subject: str,
    *,
    sender: str = "news@fabrikam.example",
    to: str = "bob@contoso.com",
    body: str = "hello",
    html: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Thu, 05 Nov 2026 07:59:00 +0000"
    if message_id:
        msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, content_type, content in attachments:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def _deliver(
    emulator: EmulatorProcess,
    raw: bytes,
    mailbox: str = "bob@contoso.com",
    *,
    received: str | None = None,
    folder: str = "inbox",
    copies: int = 1,
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {
        "mime": base64.b64encode(raw).decode(),
        "recipients": [mailbox],
        "folder": folder,
        "copies": copies,
    }
    if received:
        body["receivedDateTime"] = received
    return list(emulator.control("POST", "/deliver", body)["delivered"])


@contextmanager
def _app(emulator: EmulatorProcess, *roles: str) -> Iterator[httpx.Client]:
    app = emulator.control(
        "POST", "/apps", {"displayName": "scoped", "permissions": dict.fromkeys(roles, True)}
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


def _walk(
    graph: httpx.Client, url: str, params: dict[str, str] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    next_url: str | None = url
    pages = 0
    while next_url:
        response = graph.get(next_url, params=params if pages == 0 else None, **kwargs)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        next_url = body.get("@odata.nextLink")
        pages += 1
        assert pages < 200
    return items


def _subjects(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m["subject"] for m in response.json()["value"]]


# Folders ----------------------------------------------------------------------------------------


def test_top_level_folders_are_the_visible_well_known_ones(graph: httpx.Client) -> None:
    response = graph.get("users/alice@contoso.com/mailFolders")
    assert response.status_code == 200
    body = response.json()
    assert {f["displayName"] for f in body["value"]} == VISIBLE_TOP_FOLDERS
    assert "@odata.nextLink" not in body
    root = graph.get("users/alice@contoso.com/mailFolders/msgfolderroot").json()
    assert all(f["parentFolderId"] == root["id"] for f in body["value"])
    assert all(f["isHidden"] is False for f in body["value"])
    inbox = next(f for f in body["value"] if f["displayName"] == "Inbox")
    assert (inbox["totalItemCount"], inbox["unreadItemCount"], inbox["childFolderCount"]) == (
        2,
        2,
        0,
    )
    hidden = graph.get(
        "users/alice@contoso.com/mailFolders", params={"includeHiddenFolders": "true", "$top": "50"}
    ).json()["value"]
    assert {f["displayName"] for f in hidden} > VISIBLE_TOP_FOLDERS
    assert any(f["isHidden"] for f in hidden)
    # Recoverable Items is outside the visible tree either way.
    assert "Deletions" not in {f["displayName"] for f in hidden}


def test_folder_pages_follow_skip_next_links(graph: httpx.Client) -> None:
    first = graph.get("users/alice@contoso.com/mailFolders", params={"$top": "3"}).json()
    assert len(first["value"]) == 3
    assert "$skip=3" in first["@odata.nextLink"]
    folders = _walk(graph, "users/alice@contoso.com/mailFolders", params={"$top": "3"})
    names = [f["displayName"] for f in folders]
    assert len(names) == len(set(names)) == len(VISIBLE_TOP_FOLDERS)


@pytest.mark.parametrize(
    ("name", "display"),
    [
        ("inbox", "Inbox"),
        ("Inbox", "Inbox"),
        ("drafts", "Drafts"),
        ("sentitems", "Sent Items"),
        ("deleteditems", "Deleted Items"),
        ("junkemail", "Junk Email"),
        ("archive", "Archive"),
        ("outbox", "Outbox"),
        ("recoverableitemsdeletions", "Deletions"),
        ("msgfolderroot", "Top of Information Store"),
    ],
)
def test_well_known_folder_names(graph: httpx.Client, name: str, display: str) -> None:
    response = graph.get(f"users/alice@contoso.com/mailFolders/{name}")
    assert response.status_code == 200, response.text
    folder = response.json()
    assert folder["displayName"] == display
    by_id = graph.get(f"users/alice@contoso.com/mailFolders/{folder['id']}")
    assert by_id.json()["id"] == folder["id"]


def test_well_known_names_resolve_per_mailbox(graph: httpx.Client) -> None:
    alice_inbox = graph.get("users/alice@contoso.com/mailFolders/inbox").json()["id"]
    bob_inbox = graph.get("users/bob@contoso.com/mailFolders/inbox").json()["id"]
    assert alice_inbox != bob_inbox
    _error(graph.get(f"users/alice@contoso.com/mailFolders/{bob_inbox}"), 404, "ErrorItemNotFound")


def test_folder_select_and_filter(graph: httpx.Client) -> None:
    inbox = graph.get(
        "users/alice@contoso.com/mailFolders/inbox",
        params={"$select": "displayName,totalItemCount"},
    ).json()
    assert set(inbox) == {"id", "displayName", "totalItemCount"}
    listed = graph.get(
        "users/alice@contoso.com/mailFolders", params={"$select": "displayName"}
    ).json()["value"]
    assert all(set(f) == {"id", "displayName"} for f in listed)
    _error(
        graph.get("users/alice@contoso.com/mailFolders", params={"$select": "colour"}),
        400,
        "RequestBroker--ParseUri",
    )
    archive = graph.get(
        "users/alice@contoso.com/mailFolders", params={"$filter": "displayName eq 'archive'"}
    ).json()["value"]
    assert [f["displayName"] for f in archive] == ["Archive"]


def test_create_child_folders_and_duplicates(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    inbox = graph.get("users/alice@contoso.com/mailFolders/inbox").json()
    created = graph.post(
        "users/alice@contoso.com/mailFolders/inbox/childFolders", json={"displayName": "Reported"}
    )
    assert created.status_code == 201
    folder = created.json()
    assert folder["displayName"] == "Reported"
    assert folder["parentFolderId"] == inbox["id"]
    assert (folder["totalItemCount"], folder["childFolderCount"]) == (0, 0)
    children = graph.get("users/alice@contoso.com/mailFolders/inbox/childFolders").json()["value"]
    assert [(c["id"], c["displayName"]) for c in children] == [(folder["id"], "Reported")]
    assert graph.get("users/alice@contoso.com/mailFolders/inbox").json()["childFolderCount"] == 1
    assert graph.get(f"users/alice@contoso.com/mailFolders/{folder['id']}").status_code == 200
    _error(
        graph.post(
            "users/alice@contoso.com/mailFolders/inbox/childFolders",
            json={"displayName": "REPORTED"},
        ),
        409,
        "ErrorFolderExists",
    )
    # The same name under another parent is fine.
    assert (
        graph.post(
            "users/alice@contoso.com/mailFolders/archive/childFolders",
            json={"displayName": "Reported"},
        ).status_code
        == 201
    )
    nested = graph.post(
        f"users/alice@contoso.com/mailFolders/{folder['id']}/childFolders",
        json={"displayName": "2026"},
    )
    assert nested.status_code == 201
    assert nested.json()["parentFolderId"] == folder["id"]
    assert (
        graph.post("users/alice@contoso.com/mailFolders/inbox/childFolders", json={}).status_code
        == 400
    )
    snapshot = emulator.snapshot("alice@contoso.com")
    stored = {f["id"]: f for f in snapshot["folders"]}
    assert stored[folder["id"]]["displayName"] == "Reported"
    assert stored[folder["id"]]["parentId"] == inbox["id"]
    assert stored[nested.json()["id"]]["parentId"] == folder["id"]


def test_create_top_level_folder(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    created = graph.post("users/bob@contoso.com/mailFolders", json={"displayName": "Quarantine"})
    assert created.status_code == 201
    names = {
        f["displayName"]
        for f in graph.get("users/bob@contoso.com/mailFolders", params={"$top": "50"}).json()[
            "value"
        ]
    }
    assert names == VISIBLE_TOP_FOLDERS | {"Quarantine"}
    _error(
        graph.post("users/bob@contoso.com/mailFolders", json={"displayName": "inbox"}),
        409,
        "ErrorFolderExists",
    )
    # Mail can be delivered into it, and listed from it.
    _deliver(emulator, _mail("Held"), folder=created.json()["id"])
    held = graph.get(f"users/bob@contoso.com/mailFolders/{created.json()['id']}/messages")
    assert _subjects(held) == ["Held"]


# Listing messages -------------------------------------------------------------------------------


def test_messages_per_mailbox_and_per_folder(graph: httpx.Client) -> None:
    everything = graph.get("users/alice@contoso.com/messages", params={"$select": "subject"})
    assert sorted(_subjects(everything)) == sorted(
        [PHISH_SUBJECT, "Quarterly numbers", "Team lunch"]
    )
    inbox = graph.get("users/alice@contoso.com/mailFolders/inbox/messages")
    assert _subjects(inbox) == [PHISH_SUBJECT, "Quarterly numbers"]
    archive = graph.get("users/alice@contoso.com/mailFolders/archive/messages")
    assert _subjects(archive) == ["Team lunch"]
    assert graph.get("users/alice@contoso.com/mailFolders/drafts/messages").json()["value"] == []
    inbox_id = graph.get("users/alice@contoso.com/mailFolders/inbox").json()["id"]
    assert all(m["parentFolderId"] == inbox_id for m in inbox.json()["value"])
    assert inbox.json()["@odata.context"].endswith("/messages")


def test_default_page_is_10_and_skip_links_walk_everything_newest_first(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    for i in range(24):
        _deliver(emulator, _mail(f"Newsletter {i:02}"), received=f"2026-10-01T10:{i:02}:00Z")
    first = graph.get("users/bob@contoso.com/messages").json()
    assert len(first["value"]) == 10
    assert "$skip=10" in first["@odata.nextLink"]
    items = _walk(
        graph, "users/bob@contoso.com/messages", params={"$select": "subject,receivedDateTime"}
    )
    assert len(items) == 25
    assert len({m["id"] for m in items}) == 25
    received = [m["receivedDateTime"] for m in items]
    assert received == sorted(received, reverse=True)
    assert items[0]["subject"] == PHISH_SUBJECT  # received 2026-11-02: the newest
    assert items[1]["subject"] == "Newsletter 23"
    assert items[-1]["subject"] == "Newsletter 00"
    sized = _walk(graph, "users/bob@contoso.com/mailFolders/inbox/messages", params={"$top": "7"})
    assert [m["id"] for m in sized] == [m["id"] for m in items]
    ascending = graph.get(
        "users/bob@contoso.com/messages",
        params={"$orderby": "receivedDateTime asc", "$top": "3", "$select": "subject"},
    )
    assert _subjects(ascending) == ["Newsletter 00", "Newsletter 01", "Newsletter 02"]


@pytest.mark.parametrize("top", ["1", "1000"])
def test_message_top_bounds_accept_1_and_1000(graph: httpx.Client, top: str) -> None:
    response = graph.get("users/alice@contoso.com/messages", params={"$top": top})
    assert response.status_code == 200
    assert len(response.json()["value"]) == min(int(top), 3)


@pytest.mark.parametrize("top", ["1001", "0"])
def test_message_top_out_of_bounds_is_400(graph: httpx.Client, top: str) -> None:
    error = _error(
        graph.get("users/alice@contoso.com/messages", params={"$top": top}),
        400,
        "ErrorInvalidArgument",
    )
    assert "1000" in error["message"]


def test_negative_skip_is_400(graph: httpx.Client) -> None:
    assert graph.get("users/alice@contoso.com/messages", params={"$skip": "-1"}).status_code == 400


def test_select_returns_only_the_selected_fields_and_the_id(graph: httpx.Client) -> None:
    listed = graph.get(
        "users/alice@contoso.com/messages", params={"$select": "subject,from"}
    ).json()["value"]
    assert all(set(m) == {"@odata.etag", "id", "subject", "from"} for m in listed)
    one = graph.get(
        f"users/alice@contoso.com/messages/{listed[0]['id']}", params={"$select": "isRead"}
    ).json()
    assert set(one) == {"@odata.etag", "id", "isRead"}
    _error(
        graph.get("users/alice@contoso.com/messages", params={"$select": "subject,colour"}),
        400,
        "RequestBroker--ParseUri",
    )


def test_default_fields_and_internet_message_headers_only_when_selected(
    graph: httpx.Client,
) -> None:
    listed = graph.get("users/alice@contoso.com/messages", params={"$top": "1"}).json()["value"][0]
    assert {
        "id",
        "subject",
        "body",
        "bodyPreview",
        "from",
        "sender",
        "toRecipients",
        "ccRecipients",
        "replyTo",
        "receivedDateTime",
        "sentDateTime",
        "hasAttachments",
        "internetMessageId",
        "isRead",
        "isDraft",
        "importance",
        "flag",
        "categories",
        "parentFolderId",
        "conversationId",
        "changeKey",
    } <= set(listed)
    assert "internetMessageHeaders" not in listed
    single = graph.get(f"users/alice@contoso.com/messages/{listed['id']}").json()
    assert "internetMessageHeaders" not in single
    selected = graph.get(
        f"users/alice@contoso.com/messages/{listed['id']}",
        params={"$select": "internetMessageHeaders"},
    ).json()
    headers = {h["name"]: h["value"] for h in selected["internetMessageHeaders"]}
    assert headers["Message-ID"] == PHISH_ID
    assert headers["Reply-To"] == "payments@fabrikam-pay.net"
    assert "spf=fail" in headers["Authentication-Results"]
    in_list = graph.get(
        "users/alice@contoso.com/messages", params={"$select": "internetMessageHeaders"}
    ).json()["value"]
    assert all("internetMessageHeaders" in m for m in in_list)


def test_prefer_body_content_type(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    phish = graph.get(
        "users/alice@contoso.com/messages",
        params={"$filter": f"internetMessageId eq '{PHISH_ID}'", "$select": "body"},
    )
    assert "preference-applied" not in phish.headers
    html = phish.json()["value"][0]["body"]
    assert html["contentType"] == "html"
    assert "<b>overdue</b>" in html["content"]
    text = graph.get(
        "users/alice@contoso.com/messages",
        params={"$filter": f"internetMessageId eq '{PHISH_ID}'", "$select": "body"},
        headers={"Prefer": 'outlook.body-content-type="text"'},
    )
    assert text.headers["Preference-Applied"] == 'outlook.body-content-type="text"'
    body = text.json()["value"][0]["body"]
    assert body["contentType"] == "text"
    assert "<b>" not in body["content"]
    assert "overdue" in body["content"]
    # A plain-text message asked for as HTML comes back as HTML.
    plain = graph.get(
        "users/erin@contoso.com/messages",
        params={"$select": "body"},
        headers={"Prefer": 'outlook.body-content-type="html"'},
    )
    assert plain.headers["Preference-Applied"] == 'outlook.body-content-type="html"'
    converted = plain.json()["value"][0]["body"]
    assert converted["contentType"] == "html"
    assert "Deck is ready." in converted["content"]
    assert "<html" in converted["content"].lower()


# $filter and $orderby ---------------------------------------------------------------------------


@pytest.fixture
def bob_mail(emulator: EmulatorProcess, graph: httpx.Client) -> dict[str, str]:
    """Three more messages in Bob's inbox, one of them read and categorised."""
    ids = {}
    ids["payroll"] = _deliver(
        emulator,
        _mail(
            "Payroll update",
            sender="HR Team <hr@contoso.com>",
            body="Your payslip is ready.",
            attachments=(("report.csv", "text/csv", b"a,b\n1,2\n"),),
            headers={"Importance": "high"},
            message_id="<payroll-1@contoso.com>",
        ),
        received="2026-11-05T08:00:00Z",
    )[0]["id"]
    ids["lunch"] = _deliver(
        emulator,
        _mail("Lunch", sender="Grace Green <grace@contoso.com>", body="Pizza on Friday?"),
        received="2026-11-06T08:00:00Z",
    )[0]["id"]
    ids["invoice"] = _deliver(
        emulator,
        _mail(
            "Invoice 7",
            sender="Billing <billing@fabrikam.example>",
            body="Wire transfer details inside.",
            headers={"Sender": "relay@mailer.example"},
        ),
        received="2026-11-07T08:00:00Z",
    )[0]["id"]
    patched = graph.patch(
        f"users/bob@contoso.com/messages/{ids['lunch']}",
        json={"isRead": True, "categories": ["Reviewed"]},
    )
    assert patched.status_code == 200
    return ids


@pytest.mark.usefixtures("bob_mail")
@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("from/emailAddress/address eq 'HR@contoso.com'", {"Payroll update"}),
        ("from/emailAddress/address eq 'billing@fabrikam-billing.com'", {PHISH_SUBJECT}),
        ("sender/emailAddress/address eq 'relay@mailer.example'", {"Invoice 7"}),
        ("subject eq 'lunch'", {"Lunch"}),
        ("subject eq 'Lunch' or subject eq 'Invoice 7'", {"Lunch", "Invoice 7"}),
        ("contains(subject,'invoice')", {PHISH_SUBJECT, "Invoice 7"}),
        ("startswith(subject,'pay')", {"Payroll update"}),
        (
            "receivedDateTime ge 2026-11-06T00:00:00Z and receivedDateTime lt 2026-11-07T00:00:00Z",
            {"Lunch"},
        ),
        ("receivedDateTime gt 2026-11-06T08:00:00Z", {"Invoice 7"}),
        ("receivedDateTime le 2026-11-02T09:15:02Z", {PHISH_SUBJECT}),
        ("hasAttachments eq true", {"Payroll update", PHISH_SUBJECT}),
        ("hasAttachments eq false", {"Lunch", "Invoice 7"}),
        ("isRead eq true", {"Lunch"}),
        ("isRead eq false and hasAttachments eq true", {"Payroll update", PHISH_SUBJECT}),
        ("importance eq 'high'", {"Payroll update"}),
        (f"internetMessageId eq '{PHISH_ID}'", {PHISH_SUBJECT}),
        ("internetMessageId eq '<payroll-1@contoso.com>'", {"Payroll update"}),
        ("categories/any(c:c eq 'Reviewed')", {"Lunch"}),
        ("categories/any(c:c eq 'Nothing')", set()),
    ],
)
def test_message_filters(graph: httpx.Client, flt: str, expected: set[str]) -> None:
    response = graph.get(
        "users/bob@contoso.com/messages", params={"$filter": flt, "$select": "subject"}
    )
    assert set(_subjects(response)) == expected
    assert len(_subjects(response)) == len(expected)


@pytest.mark.usefixtures("bob_mail")
@pytest.mark.parametrize(
    ("flt", "code"),
    [
        ("receivedDateTime ge '2026-11-01'", "BadRequest"),
        ("subject gt 'a'", "ErrorInvalidUrlQueryFilter"),
        ("endswith(subject,'update')", "ErrorInvalidUrlQueryFilter"),
        ("colour eq 'red'", "RequestBroker--ParseUri"),
        ("subject eq", "BadRequest"),
    ],
)
def test_message_filters_graph_refuses(graph: httpx.Client, flt: str, code: str) -> None:
    _error(graph.get("users/bob@contoso.com/messages", params={"$filter": flt}), 400, code)


@pytest.mark.usefixtures("bob_mail")
def test_orderby_rule_with_filter(graph: httpx.Client) -> None:
    ordered = graph.get(
        "users/bob@contoso.com/messages",
        params={
            "$filter": "receivedDateTime ge 2026-11-05T00:00:00Z and hasAttachments eq false",
            "$orderby": "receivedDateTime desc",
            "$select": "subject",
        },
    )
    assert _subjects(ordered) == ["Invoice 7", "Lunch"]
    ascending = graph.get(
        "users/bob@contoso.com/messages",
        params={
            "$filter": "receivedDateTime ge 2026-11-05T00:00:00Z",
            "$orderby": "receivedDateTime",
            "$select": "subject",
        },
    )
    assert _subjects(ascending) == ["Payroll update", "Lunch", "Invoice 7"]
    for params in (
        {"$orderby": "receivedDateTime", "$filter": "subject eq 'x'"},
        {
            "$orderby": "receivedDateTime desc",
            "$filter": "isRead eq false and receivedDateTime ge 2026-11-05T00:00:00Z",
        },
    ):
        error = _error(
            graph.get("users/bob@contoso.com/messages", params=params), 400, "InefficientFilter"
        )
        assert (
            error["message"] == "The restriction or sort order is too complex for this operation."
        )
    by_subject = graph.get(
        "users/bob@contoso.com/messages", params={"$orderby": "subject", "$select": "subject"}
    )
    assert _subjects(by_subject) == sorted(_subjects(by_subject), key=str.casefold)


# $search ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("bob_mail")
@pytest.mark.parametrize(
    ("kql", "expected"),
    [
        ("from:hr@contoso.com", {"Payroll update"}),
        ("from:grace", {"Lunch"}),
        ("subject:payroll", {"Payroll update"}),
        ("subject:invoic", {PHISH_SUBJECT, "Invoice 7"}),
        ("subject:nvoice", set()),
        ('body:\\"wire transfer\\"', {"Invoice 7"}),
        ("body:payslip", {"Payroll update"}),
        ("attachment:report", {"Payroll update"}),
        ("attachment:Invoice_8842.pdf", {PHISH_SUBJECT}),
        ("to:alice@contoso.com", {PHISH_SUBJECT}),
        (
            "participants:bob@contoso.com",
            {PHISH_SUBJECT, "Payroll update", "Lunch", "Invoice 7"},
        ),
        ("participants:grace@contoso.com", {"Lunch"}),
        ("received:2026-11-06", {"Lunch"}),
        ("received>=2026-11-06", {"Lunch", "Invoice 7"}),
        ("hasAttachments:true", {"Payroll update", PHISH_SUBJECT}),
        ("pizza", {"Lunch"}),
        ("overdue", {PHISH_SUBJECT}),
        ("payroll OR lunch", {"Payroll update", "Lunch"}),
        ("subject:invoice AND from:billing@fabrikam.example", {"Invoice 7"}),
        ("invoice AND hasAttachments:true", {PHISH_SUBJECT}),
        ("nothingmatchesthis", set()),
    ],
)
def test_message_search_kql(graph: httpx.Client, kql: str, expected: set[str]) -> None:
    response = graph.get(
        "users/bob@contoso.com/messages", params={"$search": f'"{kql}"', "$select": "subject"}
    )
    assert set(_subjects(response)) == expected


def test_search_within_a_folder(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    _deliver(emulator, _mail("Junk offer", body="cheap pills"), folder="junkemail")
    _deliver(emulator, _mail("Inbox offer", body="cheap flights"))
    junk = graph.get(
        "users/bob@contoso.com/mailFolders/junkemail/messages", params={"$search": '"cheap"'}
    )
    assert _subjects(junk) == ["Junk offer"]
    everywhere = graph.get("users/bob@contoso.com/messages", params={"$search": '"cheap"'})
    assert set(_subjects(everywhere)) == {"Junk offer", "Inbox offer"}


def test_search_refuses_orderby_and_filter(graph: httpx.Client) -> None:
    error = _error(
        graph.get(
            "users/bob@contoso.com/messages",
            params={"$search": '"invoice"', "$orderby": "receivedDateTime desc"},
        ),
        400,
        "SearchWithOrderBy",
    )
    assert "$search" in error["message"]
    response = graph.get(
        "users/bob@contoso.com/messages",
        params={"$search": '"invoice"', "$filter": "isRead eq false"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"]
    # KQL outside the quotes does not parse.
    _error(
        graph.get("users/bob@contoso.com/messages", params={"$search": "from:alice"}),
        400,
        "RequestBroker--ParseUri",
    )


def test_search_returns_at_most_1000_results(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    delivered = _deliver(
        emulator, _mail("Bulk notice", body="bulkword"), "grace@contoso.com", copies=1050
    )
    assert len(delivered) == len({d["id"] for d in delivered}) == 1050
    found = _walk(
        graph,
        "users/grace@contoso.com/messages",
        params={"$search": '"bulkword"', "$select": "id", "$top": "300"},
    )
    assert len(found) == len({m["id"] for m in found}) == 1000
    one_page = graph.get(
        "users/grace@contoso.com/messages",
        params={"$search": '"bulkword"', "$select": "id", "$top": "1000"},
    ).json()
    assert len(one_page["value"]) == 1000
    assert "@odata.nextLink" not in one_page
    # A filter is not capped.
    counted = graph.get(
        "users/grace@contoso.com/messages",
        params={"$filter": "subject eq 'Bulk notice'", "$count": "true", "$top": "1"},
    ).json()
    assert counted["@odata.count"] == 1050
    listed = _walk(
        graph,
        "users/grace@contoso.com/mailFolders/inbox/messages",
        params={"$select": "id", "$top": "1000"},
    )
    assert len(listed) == 1050


# MIME and attachments ---------------------------------------------------------------------------

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def test_mime_value_is_the_delivered_bytes(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    raw = _mail("Exact bytes", attachments=(("a.pdf", "application/pdf", PDF),))
    msg_id = _deliver(emulator, raw)[0]["id"]
    mime = graph.get(f"users/bob@contoso.com/messages/{msg_id}/$value")
    assert mime.status_code == 200
    assert mime.content == raw
    in_folder = graph.get(f"users/bob@contoso.com/mailFolders/inbox/messages/{msg_id}")
    assert in_folder.status_code == 200
    assert in_folder.json()["subject"] == "Exact bytes"


def test_attachments_list_get_and_value(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    csv = b"name,amount\nacme,100\n"
    raw = _mail(
        "Two files",
        attachments=(("statement.pdf", "application/pdf", PDF), ("data.csv", "text/csv", csv)),
    )
    msg_id = _deliver(emulator, raw)[0]["id"]
    message = graph.get(f"users/bob@contoso.com/messages/{msg_id}").json()
    assert message["hasAttachments"] is True
    listed = graph.get(f"users/bob@contoso.com/messages/{msg_id}/attachments")
    assert listed.status_code == 200
    by_name = {a["name"]: a for a in listed.json()["value"]}
    assert set(by_name) == {"statement.pdf", "data.csv"}
    for name, content_type, content in (
        ("statement.pdf", "application/pdf", PDF),
        ("data.csv", "text/csv", csv),
    ):
        att = by_name[name]
        assert att["@odata.type"] == "#microsoft.graph.fileAttachment"
        assert att["contentType"] == content_type
        assert att["size"] == len(content)
        assert att["isInline"] is False
        assert base64.b64decode(att["contentBytes"]) == content
        one = graph.get(f"users/bob@contoso.com/messages/{msg_id}/attachments/{att['id']}")
        assert one.status_code == 200
        assert one.json()["name"] == name
        assert base64.b64decode(one.json()["contentBytes"]) == content
        value = graph.get(f"users/bob@contoso.com/messages/{msg_id}/attachments/{att['id']}/$value")
        assert value.status_code == 200
        assert value.content == content
        assert value.headers["content-type"].startswith(content_type)
    expanded = graph.get(
        f"users/bob@contoso.com/messages/{msg_id}", params={"$expand": "attachments"}
    ).json()
    assert {a["name"] for a in expanded["attachments"]} == {"statement.pdf", "data.csv"}
    _error(
        graph.get(f"users/bob@contoso.com/messages/{msg_id}/attachments/AAMkAGATnope="),
        404,
        "ErrorItemNotFound",
    )
    no_files = graph.get("users/erin@contoso.com/messages").json()["value"][0]
    assert no_files["hasAttachments"] is False
    assert (
        graph.get(f"users/erin@contoso.com/messages/{no_files['id']}/attachments").json()["value"]
        == []
    )


def test_forwarded_email_is_an_item_attachment(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    inner = _mail("Original lure", sender="lure@evil.example", body="click here")
    outer = EmailMessage()
    outer["From"] = "Bob Baker <bob@contoso.com>"
    outer["To"] = "phishing@contoso.com"
    outer["Subject"] = "FW: Original lure"
    outer.set_content("Reporting this.")
    outer.add_attachment(inner, maintype="message", subtype="rfc822")
    msg_id = _deliver(emulator, outer.as_bytes(), "phishing@contoso.com")[0]["id"]
    listed = graph.get(f"users/phishing@contoso.com/messages/{msg_id}/attachments").json()["value"]
    assert len(listed) == 1
    att = listed[0]
    assert att["@odata.type"] == "#microsoft.graph.itemAttachment"
    assert att["name"] == "Original lure"
    assert "contentBytes" not in att
    assert graph.get(f"users/phishing@contoso.com/messages/{msg_id}").json()["hasAttachments"]
    value = graph.get(
        f"users/phishing@contoso.com/messages/{msg_id}/attachments/{att['id']}/$value"
    )
    assert value.status_code == 200
    assert b"Subject: Original lure" in value.content
    assert b"click here" in value.content


# Scope and errors -------------------------------------------------------------------------------


def test_mailbox_messages_exclude_recoverable_items(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    before = graph.get("users/alice@contoso.com/messages", params={"$select": "subject"})
    assert len(_subjects(before)) == 3
    target = graph.get(
        "users/alice@contoso.com/messages", params={"$filter": "subject eq 'Team lunch'"}
    ).json()["value"][0]
    assert graph.delete(f"users/alice@contoso.com/messages/{target['id']}").status_code == 204
    after = graph.get("users/alice@contoso.com/messages", params={"$select": "subject"})
    assert sorted(_subjects(after)) == sorted([PHISH_SUBJECT, "Quarterly numbers"])
    dumpster = graph.get("users/alice@contoso.com/mailFolders/recoverableitemsdeletions/messages")
    assert _subjects(dumpster) == ["Team lunch"]
    searched = graph.get("users/alice@contoso.com/messages", params={"$search": '"lunch"'})
    assert _subjects(searched) == []


def test_user_without_a_mailbox(graph: httpx.Client) -> None:
    for path in (
        "users/dave@contoso.com/messages",
        "users/dave@contoso.com/mailFolders",
        "users/dave@contoso.com/mailFolders/inbox/messages",
        "users/dave@contoso.com/mailboxSettings",
    ):
        _error(graph.get(path), 404, "MailboxNotEnabledForRESTAPI")


def test_unknown_user_and_unknown_items(graph: httpx.Client) -> None:
    _error(graph.get("users/nobody@contoso.com/messages"), 404, "ErrorInvalidUser")
    _error(graph.get("users/nobody@contoso.com/mailFolders/inbox"), 404, "ErrorInvalidUser")
    _error(graph.get("users/alice@contoso.com/messages/AAMkAGnope="), 404, "ErrorItemNotFound")
    bob_msg = graph.get("users/bob@contoso.com/messages").json()["value"][0]["id"]
    # Another mailbox's message id is not found here.
    _error(graph.get(f"users/alice@contoso.com/messages/{bob_msg}"), 404, "ErrorItemNotFound")
    # A message addressed through a folder it is not in is not found either.
    _error(
        graph.get(f"users/bob@contoso.com/mailFolders/archive/messages/{bob_msg}"),
        404,
        "ErrorItemNotFound",
    )


def test_me_needs_a_delegated_token(graph: httpx.Client) -> None:
    error = _error(graph.get("me/messages"), 400, "BadRequest")
    assert "/me request is only valid with delegated authentication flow." in error["message"]
    _error(graph.get("me/mailFolders/inbox/messages"), 400, "BadRequest")


def test_read_basic_gets_no_body_and_no_attachments(emulator: EmulatorProcess) -> None:
    with _app(emulator, "Mail.ReadBasic.All") as client:
        listed = client.get("users/alice@contoso.com/messages")
        assert listed.status_code == 200
        messages = listed.json()["value"]
        assert len(messages) == 3
        for msg in messages:
            assert "body" not in msg
            assert "bodyPreview" not in msg
            assert msg["subject"]
            assert msg["from"]
        msg_id = next(m["id"] for m in messages if m["hasAttachments"])
        single = client.get(f"users/alice@contoso.com/messages/{msg_id}")
        assert single.status_code == 200
        assert "body" not in single.json()
        for params in ({"$select": "body"}, {"$select": "subject,bodyPreview"}):
            _error(
                client.get("users/alice@contoso.com/messages", params=params),
                403,
                "ErrorAccessDenied",
            )
        for path in (
            f"users/alice@contoso.com/messages/{msg_id}/attachments",
            f"users/alice@contoso.com/messages/{msg_id}/$value",
        ):
            _error(client.get(path), 403, "ErrorAccessDenied")
        _error(
            client.get(
                f"users/alice@contoso.com/messages/{msg_id}", params={"$expand": "attachments"}
            ),
            403,
            "ErrorAccessDenied",
        )
        _error(
            client.patch(f"users/alice@contoso.com/messages/{msg_id}", json={"isRead": True}),
            403,
            "ErrorAccessDenied",
        )
        # Folders and basic search still work.
        assert client.get("users/alice@contoso.com/mailFolders").status_code == 200
        assert (
            client.get(
                "users/alice@contoso.com/messages", params={"$search": '"invoice"'}
            ).status_code
            == 200
        )


def test_mail_read_reads_bodies_but_cannot_change_anything(emulator: EmulatorProcess) -> None:
    with _app(emulator, "Mail.Read") as client:
        msg = client.get("users/alice@contoso.com/messages", params={"$top": "1"}).json()["value"][
            0
        ]
        assert msg["body"]["content"]
        assert (
            client.get(f"users/alice@contoso.com/messages/{msg['id']}/attachments").status_code
            == 200
        )
        for response in (
            client.patch(f"users/alice@contoso.com/messages/{msg['id']}", json={"isRead": True}),
            client.post(
                f"users/alice@contoso.com/messages/{msg['id']}/move",
                json={"destinationId": "junkemail"},
            ),
            client.delete(f"users/alice@contoso.com/messages/{msg['id']}"),
            client.post(
                "users/alice@contoso.com/mailFolders/inbox/childFolders",
                json={"displayName": "x"},
            ),
        ):
            error = _error(response, 403, "ErrorAccessDenied")
            assert error["message"] == "Access is denied. Check credentials and try again."
    # Nothing changed: the inbox still holds both messages, unread, no folder was added.
    folders = emulator.snapshot("alice@contoso.com")["folders"]
    inbox = next(f for f in folders if f["wellKnownName"] == "inbox")
    assert [m["isRead"] for m in inbox["messages"]] == [False, False]
    assert "x" not in {f["displayName"] for f in folders}


def test_content_addressed_through_a_folder(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    raw = _mail("Via folder", attachments=(("a.pdf", "application/pdf", PDF),))
    msg_id = _deliver(emulator, raw)[0]["id"]
    base = f"users/bob@contoso.com/mailFolders/inbox/messages/{msg_id}"
    assert graph.get(f"{base}/$value").content == raw
    attachments = graph.get(f"{base}/attachments").json()["value"]
    assert [a["name"] for a in attachments] == ["a.pdf"]
    assert graph.get(f"{base}/attachments/{attachments[0]['id']}").json()["name"] == "a.pdf"
    assert graph.get(f"{base}/attachments/{attachments[0]['id']}/$value").content == PDF
    wrong = f"users/bob@contoso.com/mailFolders/junkemail/messages/{msg_id}"
    for path in (f"{wrong}/$value", f"{wrong}/attachments"):
        _error(graph.get(path), 404, "ErrorItemNotFound")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (
            "users/alice@contoso.com/messages",
            {"$filter": "receivedDateTime ge 2026-01-01T00:00:00Z", "$top": "1"},
        ),
        (
            "users/alice@contoso.com/messages",
            {"$search": '"invoice OR lunch OR numbers"', "$top": "1"},
        ),
        ("users", {"$filter": "department eq 'Sales'", "$top": "1"}),
    ],
)
def test_next_links_are_valid_urls_for_any_http_client(
    emulator: EmulatorProcess, graph: httpx.Client, path: str, params: dict[str, str]
) -> None:
    link = graph.get(path, params=params).json()["@odata.nextLink"]
    assert " " not in link
    # Python's own http.client refuses a URL with a raw space: follow the link with it.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=emulator.verify)
    )
    request = urllib.request.Request(
        link, headers={"Authorization": graph.headers["Authorization"]}
    )
    with opener.open(request, timeout=30) as response:
        page = json.load(response)
    assert len(page["value"]) == 1


def test_listing_with_expanded_attachments(graph: httpx.Client) -> None:
    listed = graph.get(
        "users/alice@contoso.com/mailFolders/inbox/messages",
        params={"$select": "subject,hasAttachments", "$expand": "attachments"},
    )
    assert listed.status_code == 200
    by_subject = {m["subject"]: m for m in listed.json()["value"]}
    assert [a["name"] for a in by_subject[PHISH_SUBJECT]["attachments"]] == ["Invoice_8842.pdf"]
    assert [a["name"] for a in by_subject["Quarterly numbers"]["attachments"]] == ["q3.csv"]
    assert base64.b64decode(by_subject["Quarterly numbers"]["attachments"][0]["contentBytes"]) == (
        b"quarter,revenue\nQ3,1000\n"
    )
    _error(
        graph.get("users/alice@contoso.com/messages", params={"$expand": "mentions"}),
        400,
        "BadRequest",
    )


def test_expanded_attachments_with_select_carry_no_content(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    outer = EmailMessage()
    outer["From"] = "Bob Baker <bob@contoso.com>"
    outer["To"] = "phishing@contoso.com"
    outer["Subject"] = "FW: lure"
    outer.set_content("Reporting this.")
    outer.add_attachment(b"a,b\n", maintype="text", subtype="csv", filename="data.csv")
    outer.add_attachment(_mail("Lure"), maintype="message", subtype="rfc822")
    msg_id = _deliver(emulator, outer.as_bytes(), "phishing@contoso.com")[0]["id"]
    expand = "attachments($select=name,size)"

    listed = graph.get("users/phishing@contoso.com/messages", params={"$expand": expand})
    assert listed.status_code == 200, listed.text
    [message] = [m for m in listed.json()["value"] if m["id"] == msg_id]
    file, item = sorted(message["attachments"], key=lambda a: a["@odata.type"])
    # Annotations, the id and exactly the selected properties: never the content.
    assert file == {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": "text/csv",
        "id": file["id"],
        "name": "data.csv",
        "size": 4,
    }
    assert item["@odata.type"] == "#microsoft.graph.itemAttachment"
    assert set(item) == {"@odata.type", "id", "name", "size"}

    every = "Attachments($select=id,name,contentType,size,isInline,lastModifiedDateTime)"
    one = graph.get(f"users/phishing@contoso.com/messages/{msg_id}", params={"$expand": every})
    assert one.status_code == 200, one.text
    for att in one.json()["attachments"]:
        assert "contentBytes" not in att
        assert {"id", "name", "contentType", "size", "isInline", "lastModifiedDateTime"} <= set(att)
    # Through a folder, and together with $select on the message.
    in_folder = graph.get(
        "users/phishing@contoso.com/mailFolders/inbox/messages",
        params={"$select": "subject", "$expand": "attachments($select=isInline)"},
    )
    assert in_folder.status_code == 200
    [rendered] = [m for m in in_folder.json()["value"] if m["id"] == msg_id]
    assert set(rendered) == {"@odata.etag", "id", "subject", "attachments"}
    assert [set(a) - {"@odata.mediaContentType"} for a in rendered["attachments"]] == [
        {"@odata.type", "id", "isInline"}
    ] * 2
    # Plain $expand=attachments still brings the content.
    full = graph.get(
        f"users/phishing@contoso.com/messages/{msg_id}", params={"$expand": "attachments"}
    )
    [csv] = [a for a in full.json()["attachments"] if a["name"] == "data.csv"]
    assert base64.b64decode(csv["contentBytes"]) == b"a,b\n"


@pytest.mark.parametrize(
    ("expand", "status", "code"),
    [
        ("attachments($select=name,bogus)", 400, "BadRequest"),
        # contentBytes belongs to fileAttachment, not to the attachment base type.
        ("attachments($select=contentBytes)", 400, "BadRequest"),
        ("attachments($top=1)", 501, "NotImplemented"),
        ("mentions($select=id)", 400, "BadRequest"),
    ],
)
def test_expanded_attachment_options_are_checked(
    graph: httpx.Client, expand: str, status: int, code: str
) -> None:
    for path in (
        "users/alice@contoso.com/messages",
        "users/alice@contoso.com/mailFolders/inbox/messages",
    ):
        _error(graph.get(path, params={"$expand": expand}), status, code)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("users/alice@contoso.com/mailFolders", {"$orderby": "displayName"}),
        ("users/alice@contoso.com/mailFolders", {"$filter": "totalItemCount gt 0"}),
        ("users/alice@contoso.com/mailFolders/inbox", {"$expand": "childFolders"}),
        ("users/alice@contoso.com/messages", {"$format": "json"}),
    ],
)
def test_query_options_the_emulator_does_not_evaluate_are_refused(
    graph: httpx.Client, path: str, params: dict[str, str]
) -> None:
    # Never silently ignored: that would look like a right answer.
    _error(graph.get(path, params=params), 501, "NotImplemented")


def test_several_preferences_in_one_header(graph: httpx.Client) -> None:
    immutable = graph.get(
        "users/alice@contoso.com/messages",
        params={"$filter": f"internetMessageId eq '{PHISH_ID}'", "$select": "id"},
        headers={"Prefer": 'IdType="ImmutableId"'},
    ).json()["value"][0]["id"]
    response = graph.get(
        f"users/alice@contoso.com/messages/{immutable}",
        params={"$select": "body"},
        headers={"Prefer": 'outlook.body-content-type="text", IdType="ImmutableId"'},
    )
    assert response.status_code == 200
    assert response.json()["id"] == immutable
    assert response.json()["body"]["contentType"] == "text"
    applied = {p.strip() for p in response.headers["Preference-Applied"].split(",")}
    assert applied == {'outlook.body-content-type="text"', 'IdType="ImmutableId"'}
