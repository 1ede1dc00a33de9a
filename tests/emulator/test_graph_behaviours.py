"""Graph v1.0 behaviours through HTTP: paging, query rules, changes, settings and error shapes."""

from __future__ import annotations

import time
from email.message import EmailMessage
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.graph_assertions import assert_graph_error as _error


def _mail(
    subject: str, sender: str = "news@fabrikam.example", body: str = "hello", attach: bool = False
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "bob@contoso.com"
    msg["Subject"] = subject
    msg.set_content(body)
    if attach:
        msg.add_attachment(b"col1,col2\n", maintype="text", subtype="csv", filename="report.csv")
    return msg.as_bytes()


# Directory ------------------------------------------------------------------------------------


def test_users_paging_top_bounds_and_skiptoken(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    for i in range(120):
        emulator.control(
            "POST", "/users", {"userPrincipalName": f"temp{i:03}@contoso.com", "department": "Temp"}
        )
    first = graph.get("users").json()
    assert len(first["value"]) == 100
    assert "$skiptoken=" in first["@odata.nextLink"]
    seen = [u["id"] for u in first["value"]]
    second = graph.get(first["@odata.nextLink"]).json()
    seen += [u["id"] for u in second["value"]]
    assert "@odata.nextLink" not in second
    assert len(seen) == len(set(seen)) == 128
    _error(graph.get("users", params={"$top": "1000"}), 400, "Request_BadRequest")
    assert "Must be between 1 and 999 inclusive" in graph.get("users", params={"$top": "0"}).text
    _error(graph.get("users", params={"$skiptoken": "forged"}), 400, "Directory_ExpiredPageToken")


def test_users_select_filter_and_advanced_queries(graph: httpx.Client) -> None:
    alice = graph.get(
        "users/alice@contoso.com", params={"$select": "department,accountEnabled"}
    ).json()
    assert alice["department"] == "Finance"
    assert alice["accountEnabled"] is True
    assert "displayName" not in alice
    _error(graph.get("users", params={"$select": "shoeSize"}), 400, "Request_BadRequest")
    sales = graph.get("users", params={"$filter": "department eq 'Sales'"}).json()["value"]
    assert {u["userPrincipalName"] for u in sales} == {"bob@contoso.com", "carol@contoso.com"}
    disabled = graph.get("users", params={"$filter": "accountEnabled eq false"}).json()["value"]
    assert [u["userPrincipalName"] for u in disabled] == ["carol@contoso.com"]
    starts = graph.get("users", params={"$filter": "startswith(displayName,'Gr')"}).json()["value"]
    assert [u["userPrincipalName"] for u in starts] == ["grace@contoso.com"]
    both = graph.get(
        "users", params={"$filter": "userPrincipalName in ('alice@contoso.com','erin@contoso.com')"}
    )
    assert len(both.json()["value"]) == 2
    for query in (
        {"$filter": "department ne 'Sales'"},
        {"$count": "true"},
        {"$search": '"displayName:ali"'},
    ):
        _error(
            graph.get("users", params=query),
            400,
            "Request_UnsupportedQuery" if "$count" not in query else "Request_BadRequest",
        )
    eventual = {"ConsistencyLevel": "eventual"}
    counted = graph.get(
        "users", params={"$filter": "department ne 'Sales'", "$count": "true"}, headers=eventual
    ).json()
    assert counted["@odata.count"] == 6
    found = graph.get("users", params={"$search": '"displayName:ali"'}, headers=eventual).json()[
        "value"
    ]
    assert [u["userPrincipalName"] for u in found] == ["alice@contoso.com"]
    assert graph.get("users/$count", headers=eventual).text == "8"
    # A user without a mailbox is a directory object like any other.
    assert graph.get("users/dave@contoso.com").status_code == 200
    _error(graph.get("users/nobody@contoso.com"), 404, "Request_ResourceNotFound")


def test_groups_members_transitive_members_and_member_of(graph: httpx.Client) -> None:
    groups = {g["displayName"]: g["id"] for g in graph.get("groups").json()["value"]}
    assert set(groups) == {"Finance Team", "Sales Team", "Leadership", "All Staff"}
    direct = graph.get(f"groups/{groups['All Staff']}/members").json()["value"]
    assert {m["@odata.type"] for m in direct} == {"#microsoft.graph.group", "#microsoft.graph.user"}
    everyone = graph.get(
        f"groups/{groups['All Staff']}/transitiveMembers",
        params={"$select": "id,userPrincipalName"},
    ).json()["value"]
    upns = {m["userPrincipalName"] for m in everyone if m["@odata.type"] == "#microsoft.graph.user"}
    assert upns == {
        "alice@contoso.com",
        "bob@contoso.com",
        "carol@contoso.com",
        "erin@contoso.com",
        "frank@contoso.com",
        "grace@contoso.com",
        "dave@contoso.com",
    }
    member_of = graph.get("users/alice@contoso.com/memberOf").json()["value"]
    assert [g["displayName"] for g in member_of] == ["Finance Team"]
    by_name = graph.get("groups", params={"$filter": "displayName eq 'Leadership'"}).json()["value"]
    assert [g["id"] for g in by_name] == [groups["Leadership"]]


def test_directory_roles(emulator: EmulatorProcess) -> None:
    app = emulator.control(
        "POST", "/apps", {"displayName": "users only", "permissions": {"User.Read.All": True}}
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        assert client.get("users").status_code == 200
        _error(client.get("users/alice@contoso.com/memberOf"), 403, "Authorization_RequestDenied")
        _error(client.get("groups"), 403, "Authorization_RequestDenied")
        _error(client.get("users/alice@contoso.com/messages"), 403, "ErrorAccessDenied")


# Folders and messages --------------------------------------------------------------------------


def test_folders_well_known_child_and_create(graph: httpx.Client) -> None:
    top = graph.get("users/alice@contoso.com/mailFolders", params={"$top": "50"}).json()["value"]
    names = [f["displayName"] for f in top]
    assert {"Inbox", "Drafts", "Sent Items", "Deleted Items", "Junk Email", "Archive"} <= set(names)
    assert "Deletions" not in names
    inbox = graph.get("users/alice@contoso.com/mailFolders/inbox").json()
    assert inbox["id"] == next(f["id"] for f in top if f["displayName"] == "Inbox")
    assert inbox["totalItemCount"] == 2
    created = graph.post(
        "users/alice@contoso.com/mailFolders/inbox/childFolders", json={"displayName": "Reported"}
    )
    assert created.status_code == 201
    _error(
        graph.post(
            "users/alice@contoso.com/mailFolders/inbox/childFolders",
            json={"displayName": "reported"},
        ),
        409,
        "ErrorFolderExists",
    )
    children = graph.get("users/alice@contoso.com/mailFolders/inbox/childFolders").json()["value"]
    assert [c["displayName"] for c in children] == ["Reported"]
    assert graph.get("users/alice@contoso.com/mailFolders", params={"$top": "2"}).json()[
        "@odata.nextLink"
    ]


def test_message_paging_order_and_select(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    for i in range(25):
        emulator.deliver(
            _mail(f"Newsletter {i:02}"), ["bob@contoso.com"], received=f"2026-10-01T10:{i:02}:00Z"
        )
    page = graph.get(
        "users/bob@contoso.com/mailFolders/inbox/messages",
        params={"$select": "subject,receivedDateTime"},
    ).json()
    assert len(page["value"]) == 10
    received = [m["receivedDateTime"] for m in page["value"]]
    assert received == sorted(received, reverse=True)
    assert set(page["value"][0]) == {"@odata.etag", "id", "subject", "receivedDateTime"}
    subjects = []
    url: str | None = "users/bob@contoso.com/mailFolders/inbox/messages?$select=subject&$top=7"
    while url:
        body = graph.get(url).json()
        subjects += [m["subject"] for m in body["value"]]
        url = body.get("@odata.nextLink")
        assert url is None or "$skip=" in url
    assert len(subjects) == len(set(subjects)) == 26
    _error(
        graph.get("users/bob@contoso.com/messages", params={"$top": "1001"}),
        400,
        "ErrorInvalidArgument",
    )
    default = graph.get("users/bob@contoso.com/messages", params={"$top": "1"}).json()["value"][0]
    assert "internetMessageHeaders" not in default
    assert {"body", "from", "toRecipients", "flag", "categories", "parentFolderId"} <= set(default)


def test_message_filters_and_orderby_rule(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    emulator.deliver(
        _mail("Payroll update", sender="hr@contoso.com", attach=True),
        ["bob@contoso.com"],
        received="2026-11-05T08:00:00Z",
    )
    emulator.deliver(
        _mail("Lunch", sender="grace@contoso.com"),
        ["bob@contoso.com"],
        received="2026-11-06T08:00:00Z",
    )

    def subjects(flt: str, **extra: str) -> list[str]:
        response = graph.get(
            "users/bob@contoso.com/messages", params={"$filter": flt, "$select": "subject", **extra}
        )
        assert response.status_code == 200, response.text
        return [m["subject"] for m in response.json()["value"]]

    assert subjects("from/emailAddress/address eq 'HR@contoso.com'") == ["Payroll update"]
    assert subjects("hasAttachments eq true and receivedDateTime ge 2026-11-05T00:00:00Z") == [
        "Payroll update"
    ]
    assert subjects(
        "receivedDateTime ge 2026-11-06T00:00:00Z and receivedDateTime lt 2026-11-07T00:00:00Z"
    ) == ["Lunch"]
    assert subjects("contains(subject,'payroll')") == ["Payroll update"]
    assert subjects("isRead eq false and importance eq 'normal'", **{"$top": "50"})
    assert subjects(
        "receivedDateTime ge 2026-11-01T00:00:00Z and from/emailAddress/address eq 'grace@contoso.com'",
        **{"$orderby": "receivedDateTime desc"},
    ) == ["Lunch"]
    _error(
        graph.get(
            "users/bob@contoso.com/messages",
            params={"$filter": "subject eq 'Lunch'", "$orderby": "receivedDateTime"},
        ),
        400,
        "InefficientFilter",
    )
    _error(
        graph.get(
            "users/bob@contoso.com/messages", params={"$filter": "receivedDateTime ge '2026-11-01'"}
        ),
        400,
        "BadRequest",
    )
    mid = graph.get(
        "users/bob@contoso.com/messages",
        params={"$filter": "subject eq 'Lunch'", "$select": "internetMessageId"},
    ).json()["value"][0]
    assert subjects(f"internetMessageId eq '{mid['internetMessageId']}'") == ["Lunch"]


def test_message_search_kql_and_its_rules(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    emulator.deliver(
        _mail(
            "Quarterly invoice",
            sender="billing@fabrikam.example",
            body="Wire transfer details",
            attach=True,
        ),
        ["bob@contoso.com"],
        received="2026-11-05T08:00:00Z",
    )

    def search(kql: str) -> list[str]:
        response = graph.get(
            "users/bob@contoso.com/messages", params={"$search": f'"{kql}"', "$select": "subject"}
        )
        assert response.status_code == 200, response.text
        return [m["subject"] for m in response.json()["value"]]

    # A prefix of a word matches; a piece from inside a word does not.
    assert set(search("subject:invoic")) == {
        "Quarterly invoice",
        "Overdue invoice – action required",
    }
    assert search("subject:voice") == []
    assert search("from:billing@fabrikam.example") == ["Quarterly invoice"]
    assert search("body:wire AND attachment:report") == ["Quarterly invoice"]
    assert search("participants:bob@contoso.com AND received:2026-11-05") == ["Quarterly invoice"]
    assert search("hasAttachments:true AND quarterly") == ["Quarterly invoice"]
    assert "Overdue invoice – action required" in search("overdue OR quarterly")
    _error(
        graph.get(
            "users/bob@contoso.com/messages",
            params={"$search": '"x"', "$orderby": "receivedDateTime desc"},
        ),
        400,
        "SearchWithOrderBy",
    )
    assert (
        graph.get(
            "users/bob@contoso.com/messages", params={"$search": '"x"', "$filter": "isRead eq true"}
        ).status_code
        == 400
    )


def test_search_results_are_capped_at_1000(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    raw = _mail("Bulk notice", body="bulkword")
    for _ in range(1010):
        emulator.control(
            "POST",
            "/deliver",
            content=raw,
            headers={"Content-Type": "message/rfc822"},
            params={"recipients": "grace@contoso.com"},
        )
    total = 0
    url: str | None = 'users/grace@contoso.com/messages?$search="bulkword"&$select=id&$top=1000'
    while url:
        body = graph.get(url).json()
        total += len(body["value"])
        url = body.get("@odata.nextLink")
    assert total == 1000
    listed = graph.get(
        "users/grace@contoso.com/messages",
        params={"$filter": "subject eq 'Bulk notice'", "$count": "true", "$top": "1"},
    ).json()
    assert listed["@odata.count"] == 1010


def test_mailbox_errors(graph: httpx.Client) -> None:
    _error(graph.get("users/dave@contoso.com/messages"), 404, "MailboxNotEnabledForRESTAPI")
    _error(graph.get("users/nobody@contoso.com/messages"), 404, "ErrorInvalidUser")
    _error(graph.get("me/messages"), 400, "BadRequest")
    _error(graph.get("users/alice@contoso.com/messages/AAMkAGnope="), 404, "ErrorItemNotFound")
    _error(graph.get("users/alice@contoso.com/nonsense"), 400, "BadRequest")


def test_read_basic_gets_no_body(emulator: EmulatorProcess) -> None:
    app = emulator.control(
        "POST", "/apps", {"displayName": "basic", "permissions": {"Mail.ReadBasic.All": True}}
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        msg = client.get("users/alice@contoso.com/messages", params={"$top": "1"}).json()["value"][
            0
        ]
        assert "body" not in msg
        assert "bodyPreview" not in msg
        assert "subject" in msg
        _error(
            client.get("users/alice@contoso.com/messages", params={"$select": "body"}),
            403,
            "ErrorAccessDenied",
        )
        _error(
            client.get(f"users/alice@contoso.com/messages/{msg['id']}/attachments"),
            403,
            "ErrorAccessDenied",
        )
        _error(
            client.get(f"users/alice@contoso.com/messages/{msg['id']}/$value"),
            403,
            "ErrorAccessDenied",
        )


# Changes ---------------------------------------------------------------------------------------


def _first(
    graph: httpx.Client, mailbox: str, folder: str = "inbox", **headers: str
) -> dict[str, Any]:
    return dict(
        graph.get(
            f"users/{mailbox}/mailFolders/{folder}/messages", params={"$top": "1"}, headers=headers
        ).json()["value"][0]
    )


def _folder_of(emulator: EmulatorProcess, mailbox: str, immutable_id: str) -> str | None:
    for folder in emulator.snapshot(mailbox)["folders"]:
        if any(m["immutableId"] == immutable_id for m in folder["messages"]):
            return str(folder["wellKnownName"] or folder["displayName"])
    return None


def test_move_gives_a_new_id_unless_immutable(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    msg = _first(graph, "bob@contoso.com")
    moved = graph.post(
        f"users/bob@contoso.com/messages/{msg['id']}/move", json={"destinationId": "junkemail"}
    )
    assert moved.status_code == 201
    assert moved.json()["id"] != msg["id"]
    _error(graph.get(f"users/bob@contoso.com/messages/{msg['id']}"), 404, "ErrorItemNotFound")
    immutable = {"Prefer": 'IdType="ImmutableId"'}
    stable = _first(graph, "bob@contoso.com", "junkemail", **immutable)
    back = graph.post(
        f"users/bob@contoso.com/messages/{stable['id']}/move",
        json={"destinationId": "inbox"},
        headers=immutable,
    )
    assert back.json()["id"] == stable["id"]
    assert _folder_of(emulator, "bob@contoso.com", stable["id"]) == "inbox"
    _error(
        graph.post(
            f"users/bob@contoso.com/messages/{stable['id']}/move", json={"destinationId": "nowhere"}
        ),
        404,
        "ErrorItemNotFound",
    )


def test_copy_delete_and_permanent_delete(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    immutable = {"Prefer": 'IdType="ImmutableId"'}
    msg = _first(graph, "alice@contoso.com", **immutable)
    copy = graph.post(
        f"users/alice@contoso.com/messages/{msg['id']}/copy",
        json={"destinationId": "archive"},
        headers=immutable,
    )
    assert copy.status_code == 201
    assert _folder_of(emulator, "alice@contoso.com", copy.json()["id"]) == "archive"
    assert graph.delete(f"users/alice@contoso.com/messages/{msg['id']}").status_code == 204
    assert _folder_of(emulator, "alice@contoso.com", msg["id"]) == "recoverableitemsdeletions"
    visible = graph.get(
        "users/alice@contoso.com/messages",
        params={"$select": "id", "$top": "100"},
        headers=immutable,
    ).json()["value"]
    assert msg["id"] not in {m["id"] for m in visible}
    in_dumpster = graph.get(
        "users/alice@contoso.com/mailFolders/recoverableitemsdeletions/messages", headers=immutable
    ).json()["value"]
    assert [m["id"] for m in in_dumpster] == [msg["id"]]
    _error(
        graph.delete(f"users/alice@contoso.com/messages/{msg['id']}"),
        400,
        "ErrorCannotDeleteObject",
    )
    assert (
        graph.post(
            f"users/alice@contoso.com/messages/{copy.json()['id']}/permanentDelete"
        ).status_code
        == 204
    )
    snapshot = emulator.snapshot("alice@contoso.com")
    assert [m["immutableId"] for m in snapshot["purged"]] == [copy.json()["id"]]
    _error(
        graph.get(f"users/alice@contoso.com/messages/{copy.json()['id']}"), 404, "ErrorItemNotFound"
    )


def test_patch_rules_for_received_mail_and_drafts(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    msg = _first(graph, "erin@contoso.com")
    patched = graph.patch(
        f"users/erin@contoso.com/messages/{msg['id']}",
        json={
            "categories": ["Suspicious"],
            "flag": {"flagStatus": "flagged"},
            "isRead": True,
            "importance": "high",
        },
    )
    assert patched.status_code == 200
    body = patched.json()
    assert (body["categories"], body["flag"], body["isRead"], body["importance"]) == (
        ["Suspicious"],
        {"flagStatus": "flagged"},
        True,
        "high",
    )
    summary = emulator.snapshot("erin@contoso.com")["folders"]
    stored = next(m for f in summary for m in f["messages"] if m["id"] == msg["id"])
    assert stored["categories"] == ["Suspicious"]
    assert stored["flagStatus"] == "flagged"
    _error(
        graph.patch(f"users/erin@contoso.com/messages/{msg['id']}", json={"subject": "edited"}),
        400,
        "ErrorInvalidPropertyUpdateSentMessage",
    )
    _error(
        graph.patch(f"users/erin@contoso.com/messages/{msg['id']}", json={"shoe": 1}),
        400,
        "RequestBodyRead",
    )
    draft = graph.post("users/erin@contoso.com/messages", json={"subject": "draft"}).json()
    assert draft["isDraft"] is True
    assert (
        graph.patch(
            f"users/erin@contoso.com/messages/{draft['id']}", json={"subject": "edited"}
        ).json()["subject"]
        == "edited"
    )


def test_creating_received_mail_with_message_flags(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    notice = {
        "subject": "Security notice",
        "body": {"contentType": "html", "content": "<p>A suspicious email was found.</p>"},
        "from": {"emailAddress": {"name": "Security", "address": "security@contoso.com"}},
        "toRecipients": [{"emailAddress": {"address": "frank@contoso.com"}}],
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0E06", "value": "2026-11-04T12:00:00Z"},
        ],
        "internetMessageHeaders": [{"name": "X-Mailtrawl-Notice", "value": "1"}],
    }
    created = graph.post("users/frank@contoso.com/mailFolders/inbox/messages", json=notice)
    assert created.status_code == 201
    assert created.json()["isDraft"] is False
    assert created.json()["receivedDateTime"] == "2026-11-04T12:00:00Z"
    plain = graph.post(
        "users/frank@contoso.com/mailFolders/inbox/messages", json={"subject": "no flags"}
    )
    assert plain.json()["isDraft"] is True
    bad = dict(notice, internetMessageHeaders=[{"name": "Received", "value": "forged"}])
    _error(
        graph.post("users/frank@contoso.com/mailFolders/inbox/messages", json=bad),
        400,
        "InvalidInternetMessageHeader",
    )


def test_master_categories_rules_and_settings(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    base = "users/grace@contoso.com/outlook/masterCategories"
    assert len(graph.get(base).json()["value"]) == 6
    created = graph.post(base, json={"displayName": "Suspicious (mailtrawl)", "color": "preset0"})
    assert created.status_code == 201
    _error(
        graph.post(base, json={"displayName": "suspicious (MAILTRAWL)"}), 409, "ErrorAlreadyExists"
    )
    cid = created.json()["id"]
    assert graph.patch(f"{base}/{cid}", json={"color": "preset4"}).json()["color"] == "preset4"
    assert graph.delete(f"{base}/{cid}").status_code == 204
    assert all(c["id"] != cid for c in graph.get(base).json()["value"])
    rules = "users/grace@contoso.com/mailFolders/inbox/messageRules"
    _error(graph.post(rules, json={"displayName": "no sequence"}), 400, "ErrorInvalidRequest")
    rule = graph.post(
        rules,
        json={
            "displayName": "Quarantine",
            "sequence": 1,
            "isEnabled": True,
            "conditions": {"senderContains": ["fabrikam"]},
            "actions": {"moveToFolder": "junkemail"},
        },
    )
    assert rule.status_code == 201
    assert [r["displayName"] for r in graph.get(rules).json()["value"]] == ["Quarantine"]
    assert emulator.snapshot("grace@contoso.com")["messageRules"][0]["displayName"] == "Quarantine"
    assert graph.delete(f"{rules}/{rule.json()['id']}").status_code == 204
    settings = graph.get("users/grace@contoso.com/mailboxSettings").json()
    assert settings["timeZone"] == "UTC"
    reader = emulator.control(
        "POST", "/apps", {"displayName": "reader", "permissions": {"MailboxSettings.Read": True}}
    )
    token = emulator.token(reader["clientId"], reader["secret"]["value"])
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        assert client.get(base).status_code == 200
        _error(client.post(base, json={"displayName": "x"}), 403, "ErrorAccessDenied")


# Delta -----------------------------------------------------------------------------------------


def test_delta_change_types_filters_and_resync(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    url = "users/bob@contoso.com/mailFolders/inbox/messages/delta"
    created_only = graph.get(url, params={"changeType": "created", "$select": "subject"}).json()
    link = created_only["@odata.deltaLink"]
    msg = created_only["value"][0]
    graph.patch(f"users/bob@contoso.com/messages/{msg['id']}", json={"isRead": True})
    emulator.deliver(_mail("Fresh"), ["bob@contoso.com"])
    round_two = graph.get(link).json()
    assert [m["subject"] for m in round_two["value"]] == ["Fresh"]  # the update is filtered out
    everything = graph.get(url).json()
    updated = graph.patch(f"users/bob@contoso.com/messages/{msg['id']}", json={"isRead": False})
    assert updated.status_code == 200
    changes = graph.get(everything["@odata.deltaLink"]).json()["value"]
    assert [m["id"] for m in changes] == [msg["id"]]
    bounded = graph.get(url, params={"$filter": "receivedDateTime ge 2030-01-01T00:00:00Z"}).json()
    assert bounded["value"] == []
    _error(graph.get(url, params={"$filter": "subject eq 'x'"}), 400, "ErrorInvalidUrlQueryFilter")
    _error(graph.get(url, params={"$deltatoken": "garbage"}), 410, "syncStateNotFound")
    emulator.control("POST", "/delta/expire")
    _error(graph.get(everything["@odata.deltaLink"]), 410, "syncStateNotFound")
    resync = graph.get(url, headers={"Prefer": "odata.maxpagesize=1"})
    ids: list[str] = []
    body = resync.json()
    while True:
        ids += [m["id"] for m in body["value"]]
        if "@odata.deltaLink" in body:
            break
        body = graph.get(body["@odata.nextLink"]).json()
    assert len(ids) == len(set(ids)) == 2


def test_batch_validation(graph: httpx.Client) -> None:
    dup = {
        "requests": [
            {"id": "a", "method": "GET", "url": "/users"},
            {"id": "A", "method": "GET", "url": "/users"},
        ]
    }
    _error(graph.post("$batch", json=dup), 400, "BadRequest")
    no_type = {
        "requests": [
            {
                "id": "1",
                "method": "PATCH",
                "url": "/users/alice@contoso.com/messages/x",
                "body": {"isRead": True},
            }
        ]
    }
    _error(graph.post("$batch", json=no_type), 400, "BadRequest")
    absolute = {
        "requests": [{"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/users"}]
    }
    _error(graph.post("$batch", json=absolute), 400, "BadRequest")
    mime = graph.get(
        "users/alice@contoso.com/messages", params={"$top": "1", "$select": "id"}
    ).json()["value"][0]["id"]
    value = graph.post(
        "$batch",
        json={
            "requests": [
                {
                    "id": "1",
                    "method": "GET",
                    "url": f"/users/alice@contoso.com/messages/{mime}/$value",
                }
            ]
        },
    )
    import base64

    assert base64.b64decode(value.json()["responses"][0]["body"]).startswith(b"Received:")


# Authentication, faults and statistics -------------------------------------------------------------


def test_tokens_missing_forged_expired_and_revoked(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    with emulator.client(base_url=emulator.graph + "/") as anonymous:
        missing = anonymous.get("users")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = int(time.time())
        forged = jwt.encode(
            {
                "aud": "https://graph.microsoft.com",
                "tid": emulator.tenant_id,
                "appid": emulator.info["client_id"],
                "roles": ["Mail.ReadWrite"],
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
            },
            key,
            algorithm="RS256",
        )
        forged_response = anonymous.get("users", headers={"Authorization": f"Bearer {forged}"})
    for response in (missing, forged_response):
        _error(response, 401, "InvalidAuthenticationToken")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert graph.get("users").status_code == 200
    emulator.control("POST", "/tokens/revoke")
    _error(graph.get("users"), 401, "InvalidAuthenticationToken")


def test_revoked_permission_applies_to_the_next_token(emulator: EmulatorProcess) -> None:
    cid = emulator.info["client_id"]
    emulator.control("POST", f"/apps/{cid}/permissions", {"revoke": ["Mail.ReadWrite"]})
    token = emulator.token()
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        _error(client.get("users/alice@contoso.com/messages"), 403, "ErrorAccessDenied")
        assert client.get("users").status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("rate_503", 503, "serviceNotAvailable"),
        ("rate_504", 504, "UnknownError"),
        ("rate_429", 429, "TooManyRequests"),
    ],
)
def test_injected_faults(
    emulator: EmulatorProcess, graph: httpx.Client, fault: str, status: int, code: str
) -> None:
    emulator.settings(faults={fault: 1.0, "retry_after": 2})
    response = graph.get("users/alice@contoso.com/messages")
    _error(response, status, code)
    if status != 504:
        assert response.headers["Retry-After"] == "2"
    assert emulator.stats()["injectedFaults"][str(status)] == 1


def test_latency_and_app_rate(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    emulator.settings(faults={"latency_ms": 150})
    started = time.perf_counter()
    assert graph.get("users/alice@contoso.com/mailFolders").status_code == 200
    assert time.perf_counter() - started >= 0.15
    emulator.settings(faults={"latency_ms": 0}, limits={"app_requests_per_second": 2})
    statuses = [graph.get("users").status_code for _ in range(5)]
    assert 429 in statuses


def test_statistics_by_endpoint_mailbox_and_status(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    graph.get("users/alice@contoso.com/messages")
    graph.get("users/alice@contoso.com/messages")
    graph.get("users/nobody@contoso.com/messages")
    stats = emulator.stats()
    assert stats["byEndpoint"]["GET /users/{user}/messages"] == 3
    assert stats["byMailbox"]["alice@contoso.com"] == 2
    assert stats["byStatus"]["200"] == 2
    assert stats["byStatus"]["404"] == 1
    emulator.control("DELETE", "/stats")
    assert emulator.stats()["total"] == 0
