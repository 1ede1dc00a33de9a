"""What an incident responder changes through Graph v1.0, checked through Graph and through the
control plane's mailbox snapshot: move, copy, delete, purge, update, create, categories, rules
and mailbox settings."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.graph_assertions import assert_graph_error as _error

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
PHISH_ID = "<inv-20261102-0001@fabrikam-billing.com>"


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


def _phish(graph: httpx.Client, mailbox: str = "bob@contoso.com", **headers: str) -> dict[str, Any]:
    """The fixture's phishing message in `mailbox` (alice and bob both got it)."""
    found = graph.get(
        f"users/{mailbox}/messages",
        params={"$filter": f"internetMessageId eq '{PHISH_ID}'"},
        headers=headers,
    ).json()["value"]
    assert len(found) == 1
    return dict(found[0])


def _stored(emulator: EmulatorProcess, mailbox: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Snapshot: immutable id -> (folder's well-known name or display name, summary)."""
    out = {}
    for folder in emulator.snapshot(mailbox)["folders"]:
        for msg in folder["messages"]:
            out[msg["immutableId"]] = (folder["wellKnownName"] or folder["displayName"], msg)
    return out


def _folder_id(graph: httpx.Client, mailbox: str, name: str) -> str:
    return str(graph.get(f"users/{mailbox}/mailFolders/{name}").json()["id"])


# Move and copy ----------------------------------------------------------------------------------


def test_move_answers_201_with_a_new_id(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    msg = _phish(graph)
    moved = graph.post(
        f"users/bob@contoso.com/messages/{msg['id']}/move", json={"destinationId": "junkemail"}
    )
    assert moved.status_code == 201
    body = moved.json()
    assert body["id"] != msg["id"]
    assert body["parentFolderId"] == _folder_id(graph, "bob@contoso.com", "junkemail")
    assert body["internetMessageId"] == PHISH_ID
    _error(graph.get(f"users/bob@contoso.com/messages/{msg['id']}"), 404, "ErrorItemNotFound")
    assert graph.get(f"users/bob@contoso.com/messages/{body['id']}").status_code == 200
    junk = graph.get("users/bob@contoso.com/mailFolders/junkemail/messages").json()["value"]
    assert [m["id"] for m in junk] == [body["id"]]
    assert graph.get("users/bob@contoso.com/mailFolders/inbox/messages").json()["value"] == []
    stored = _stored(emulator, "bob@contoso.com")
    assert [(folder, m["id"]) for folder, m in stored.values()] == [("junkemail", body["id"])]


def test_move_by_folder_id_and_to_a_created_folder(graph: httpx.Client) -> None:
    quarantine = graph.post(
        "users/bob@contoso.com/mailFolders", json={"displayName": "Quarantine"}
    ).json()
    msg = _phish(graph)
    moved = graph.post(
        f"users/bob@contoso.com/messages/{msg['id']}/move",
        json={"destinationId": quarantine["id"]},
    )
    assert moved.status_code == 201
    assert moved.json()["parentFolderId"] == quarantine["id"]
    assert (
        graph.get(f"users/bob@contoso.com/mailFolders/{quarantine['id']}").json()["totalItemCount"]
        == 1
    )


def test_move_with_immutable_ids_keeps_the_id(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    msg = _phish(graph, **IMMUTABLE)
    first = graph.post(
        f"users/bob@contoso.com/messages/{msg['id']}/move",
        json={"destinationId": "deleteditems"},
        headers=IMMUTABLE,
    )
    assert first.status_code == 201
    assert first.json()["id"] == msg["id"]
    assert first.headers["Preference-Applied"] == 'IdType="ImmutableId"'
    second = graph.post(
        f"users/bob@contoso.com/messages/{msg['id']}/move",
        json={"destinationId": "archive"},
        headers=IMMUTABLE,
    )
    assert second.json()["id"] == msg["id"]
    again = graph.get(f"users/bob@contoso.com/messages/{msg['id']}", headers=IMMUTABLE)
    assert again.status_code == 200
    assert again.json()["parentFolderId"] == _folder_id(graph, "bob@contoso.com", "archive")
    assert _stored(emulator, "bob@contoso.com")[msg["id"]][0] == "archive"


def test_move_errors(graph: httpx.Client) -> None:
    msg = _phish(graph)
    _error(
        graph.post(
            f"users/bob@contoso.com/messages/{msg['id']}/move", json={"destinationId": "nowhere"}
        ),
        404,
        "ErrorItemNotFound",
    )
    assert (
        graph.post(f"users/bob@contoso.com/messages/{msg['id']}/move", json={}).status_code == 400
    )
    _error(
        graph.post(
            "users/bob@contoso.com/messages/AAMkAGnope=/move", json={"destinationId": "inbox"}
        ),
        404,
        "ErrorItemNotFound",
    )
    # The failed moves changed nothing.
    assert _phish(graph)["id"] == msg["id"]


def test_copy_leaves_the_original(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    msg = _phish(graph)
    copied = graph.post(
        f"users/bob@contoso.com/messages/{msg['id']}/copy", json={"destinationId": "archive"}
    )
    assert copied.status_code == 201
    copy = copied.json()
    assert copy["id"] != msg["id"]
    assert copy["parentFolderId"] == _folder_id(graph, "bob@contoso.com", "archive")
    assert copy["subject"] == msg["subject"]
    assert copy["internetMessageId"] == PHISH_ID
    assert graph.get(f"users/bob@contoso.com/messages/{msg['id']}").status_code == 200
    assert graph.get(f"users/bob@contoso.com/messages/{copy['id']}").status_code == 200
    original_atts = graph.get(f"users/bob@contoso.com/messages/{msg['id']}/attachments").json()
    copy_atts = graph.get(f"users/bob@contoso.com/messages/{copy['id']}/attachments").json()
    assert [a["contentBytes"] for a in copy_atts["value"]] == [
        a["contentBytes"] for a in original_atts["value"]
    ]
    stored = _stored(emulator, "bob@contoso.com")
    assert sorted(folder for folder, _ in stored.values()) == ["archive", "inbox"]
    both = graph.get(
        "users/bob@contoso.com/messages", params={"$filter": f"internetMessageId eq '{PHISH_ID}'"}
    ).json()["value"]
    assert len(both) == 2


# Delete and purge -------------------------------------------------------------------------------


def test_delete_moves_to_recoverable_items(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    msg = _phish(graph, **IMMUTABLE)
    deleted = graph.delete(f"users/bob@contoso.com/messages/{msg['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert graph.get("users/bob@contoso.com/messages").json()["value"] == []
    dumpster = graph.get(
        "users/bob@contoso.com/mailFolders/recoverableitemsdeletions/messages", headers=IMMUTABLE
    ).json()["value"]
    assert [m["id"] for m in dumpster] == [msg["id"]]
    assert _stored(emulator, "bob@contoso.com")[msg["id"]][0] == "recoverableitemsdeletions"
    # Deleting it again, from Recoverable Items, is refused.
    _error(
        graph.delete(f"users/bob@contoso.com/messages/{msg['id']}"),
        400,
        "ErrorCannotDeleteObject",
    )
    assert _stored(emulator, "bob@contoso.com")[msg["id"]][0] == "recoverableitemsdeletions"


def test_delete_through_a_folder_path(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    msg = _phish(graph, **IMMUTABLE)
    _error(
        graph.delete(f"users/bob@contoso.com/mailFolders/archive/messages/{msg['id']}"),
        404,
        "ErrorItemNotFound",
    )
    assert _stored(emulator, "bob@contoso.com")[msg["id"]][0] == "inbox"
    assert (
        graph.delete(f"users/bob@contoso.com/mailFolders/inbox/messages/{msg['id']}").status_code
        == 204
    )
    assert _stored(emulator, "bob@contoso.com")[msg["id"]][0] == "recoverableitemsdeletions"


def test_permanent_delete_removes_the_item_everywhere(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    msg = _phish(graph, **IMMUTABLE)
    purged = graph.post(f"users/bob@contoso.com/messages/{msg['id']}/permanentDelete")
    assert purged.status_code == 204
    _error(graph.get(f"users/bob@contoso.com/messages/{msg['id']}"), 404, "ErrorItemNotFound")
    for path in (
        "users/bob@contoso.com/messages",
        "users/bob@contoso.com/mailFolders/inbox/messages",
        "users/bob@contoso.com/mailFolders/recoverableitemsdeletions/messages",
    ):
        assert graph.get(path).json()["value"] == [], path
    snapshot = emulator.snapshot("bob@contoso.com")
    assert all(f["messages"] == [] for f in snapshot["folders"])
    assert [(m["immutableId"], m["internetMessageId"]) for m in snapshot["purged"]] == [
        (msg["id"], PHISH_ID)
    ]
    _error(
        graph.post(f"users/bob@contoso.com/messages/{msg['id']}/permanentDelete"),
        404,
        "ErrorItemNotFound",
    )
    # Alice's copy of the same email is untouched.
    assert _phish(graph, "alice@contoso.com")["internetMessageId"] == PHISH_ID


def test_permanent_delete_from_recoverable_items(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    msg = _phish(graph, **IMMUTABLE)
    assert graph.delete(f"users/bob@contoso.com/messages/{msg['id']}").status_code == 204
    assert (
        graph.post(
            f"users/bob@contoso.com/mailFolders/recoverableitemsdeletions/messages/{msg['id']}/permanentDelete"
        ).status_code
        == 204
    )
    snapshot = emulator.snapshot("bob@contoso.com")
    assert [m["immutableId"] for m in snapshot["purged"]] == [msg["id"]]
    assert msg["id"] not in _stored(emulator, "bob@contoso.com")


# Updates ----------------------------------------------------------------------------------------


def test_patch_categories_flag_read_state_and_importance(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    msg = _phish(graph)
    patched = graph.patch(
        f"users/bob@contoso.com/messages/{msg['id']}",
        json={
            "categories": ["Suspicious", "Reviewed"],
            "flag": {"flagStatus": "flagged"},
            "isRead": True,
            "importance": "high",
        },
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["id"] == msg["id"]
    assert body["categories"] == ["Suspicious", "Reviewed"]
    assert body["flag"] == {"flagStatus": "flagged"}
    assert body["isRead"] is True
    assert body["importance"] == "high"
    assert body["changeKey"] != msg["changeKey"]
    assert body["subject"] == msg["subject"]
    again = graph.get(f"users/bob@contoso.com/messages/{msg['id']}").json()
    assert (again["categories"], again["flag"], again["isRead"], again["importance"]) == (
        ["Suspicious", "Reviewed"],
        {"flagStatus": "flagged"},
        True,
        "high",
    )
    _, stored = next(iter(_stored(emulator, "bob@contoso.com").values()))
    assert stored["categories"] == ["Suspicious", "Reviewed"]
    assert stored["flagStatus"] == "flagged"
    assert stored["isRead"] is True
    assert stored["importance"] == "high"
    cleared = graph.patch(
        f"users/bob@contoso.com/messages/{msg['id']}",
        json={"categories": [], "flag": {"flagStatus": "complete"}},
    ).json()
    assert (cleared["categories"], cleared["flag"]["flagStatus"]) == ([], "complete")


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "edited"},
        {"body": {"contentType": "text", "content": "edited"}},
        {"toRecipients": [{"emailAddress": {"address": "x@contoso.com"}}]},
    ],
)
def test_received_mail_content_cannot_be_changed(
    emulator: EmulatorProcess, graph: httpx.Client, change: dict[str, Any]
) -> None:
    msg = _phish(graph)
    error = _error(
        graph.patch(f"users/bob@contoso.com/messages/{msg['id']}", json=change),
        400,
        "ErrorInvalidPropertyUpdateSentMessage",
    )
    assert error["message"] == "Update operation is invalid for property of a sent message."
    assert _phish(graph)["subject"] == msg["subject"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"receivedDateTime": "2020-01-01T00:00:00Z"}, "ErrorInvalidPropertySet"),
        ({"shoeSize": 11}, "RequestBodyRead"),
        ({"importance": "urgent"}, "RequestBodyRead"),
        ({"isRead": "yes"}, "RequestBodyRead"),
        ({"flag": {"flagStatus": "maybe"}}, "RequestBodyRead"),
    ],
)
def test_invalid_patches_are_400(graph: httpx.Client, change: dict[str, Any], code: str) -> None:
    msg = _phish(graph)
    _error(graph.patch(f"users/bob@contoso.com/messages/{msg['id']}", json=change), 400, code)
    assert _phish(graph)["changeKey"] == msg["changeKey"]


def test_patch_needs_a_body(graph: httpx.Client) -> None:
    msg = _phish(graph)
    _error(graph.patch(f"users/bob@contoso.com/messages/{msg['id']}"), 400, "RequestBodyRead")


def test_drafts_can_be_edited(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    created = graph.post(
        "users/erin@contoso.com/messages",
        json={"subject": "Draft notice", "body": {"contentType": "text", "content": "v1"}},
    )
    assert created.status_code == 201
    draft = created.json()
    assert draft["isDraft"] is True
    assert draft["parentFolderId"] == _folder_id(graph, "erin@contoso.com", "drafts")
    edited = graph.patch(
        f"users/erin@contoso.com/messages/{draft['id']}",
        json={
            "subject": "Final notice",
            "body": {"contentType": "html", "content": "<p>v2</p>"},
            "toRecipients": [{"emailAddress": {"address": "frank@contoso.com"}}],
        },
    )
    assert edited.status_code == 200
    body = edited.json()
    assert body["subject"] == "Final notice"
    assert body["body"] == {"contentType": "html", "content": "<p>v2</p>"}
    assert [r["emailAddress"]["address"] for r in body["toRecipients"]] == ["frank@contoso.com"]
    stored = {m["subject"]: m for _, m in _stored(emulator, "erin@contoso.com").values()}
    assert stored["Final notice"]["isDraft"] is True


# Creating messages ------------------------------------------------------------------------------


def test_a_message_created_in_a_folder_is_a_draft_by_default(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    created = graph.post(
        "users/frank@contoso.com/mailFolders/inbox/messages", json={"subject": "no flags"}
    )
    assert created.status_code == 201
    assert created.json()["isDraft"] is True
    assert created.json()["parentFolderId"] == _folder_id(graph, "frank@contoso.com", "inbox")
    stored = _stored(emulator, "frank@contoso.com")
    assert [(folder, m["isDraft"]) for folder, m in stored.values()] == [("inbox", True)]


def test_message_flags_at_creation_make_received_mail(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    notice = {
        "subject": "Security notice",
        "body": {"contentType": "html", "content": "<p>A suspicious email was removed.</p>"},
        "from": {"emailAddress": {"name": "Security", "address": "security@contoso.com"}},
        "toRecipients": [{"emailAddress": {"address": "frank@contoso.com"}}],
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0E06", "value": "2026-11-04T12:00:00Z"},
        ],
        "internetMessageHeaders": [{"name": "X-Mailtrawl-Notice", "value": "removed"}],
    }
    created = graph.post("users/frank@contoso.com/mailFolders/inbox/messages", json=notice)
    assert created.status_code == 201
    body = created.json()
    assert body["isDraft"] is False
    assert body["isRead"] is True  # 0x0E07 = 1 is mfRead
    assert body["receivedDateTime"] == "2026-11-04T12:00:00Z"
    assert body["from"]["emailAddress"]["address"] == "security@contoso.com"
    headers = graph.get(
        f"users/frank@contoso.com/messages/{body['id']}",
        params={"$select": "internetMessageHeaders"},
    ).json()["internetMessageHeaders"]
    assert {"name": "X-Mailtrawl-Notice", "value": "removed"} in headers
    # It is received mail now: its content is fixed.
    _error(
        graph.patch(f"users/frank@contoso.com/messages/{body['id']}", json={"subject": "x"}),
        400,
        "ErrorInvalidPropertyUpdateSentMessage",
    )
    stored = {m["subject"]: m for _, m in _stored(emulator, "frank@contoso.com").values()}
    assert stored["Security notice"]["isDraft"] is False
    assert stored["Security notice"]["receivedDateTime"] == "2026-11-04T12:00:00Z"


def test_unsent_flag_keeps_a_draft(graph: httpx.Client) -> None:
    created = graph.post(
        "users/frank@contoso.com/mailFolders/inbox/messages",
        json={
            "subject": "still a draft",
            "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "9"}],
        },
    )
    assert created.status_code == 201
    assert created.json()["isDraft"] is True


@pytest.mark.parametrize("name", ["Received", "Subject", "Xmailer", ""])
def test_created_internet_message_headers_must_start_with_x(graph: httpx.Client, name: str) -> None:
    _error(
        graph.post(
            "users/frank@contoso.com/mailFolders/inbox/messages",
            json={"subject": "h", "internetMessageHeaders": [{"name": name, "value": "v"}]},
        ),
        400,
        "InvalidInternetMessageHeader",
    )
    assert graph.get("users/frank@contoso.com/messages").json()["value"] == []


def test_bad_extended_property_values_are_400(graph: httpx.Client) -> None:
    for prop in (
        {"id": "Integer 0x0E07", "value": "one"},
        {"id": "SystemTime 0x0E06", "value": "yesterday"},
    ):
        response = graph.post(
            "users/frank@contoso.com/mailFolders/inbox/messages",
            json={"subject": "x", "singleValueExtendedProperties": [prop]},
        )
        _error(response, 400, "ErrorInvalidExtendedPropertyValue")


# Master categories ------------------------------------------------------------------------------


def test_master_categories_crud(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    base = "users/grace@contoso.com/outlook/masterCategories"
    defaults = graph.get(base)
    assert defaults.status_code == 200
    assert len(defaults.json()["value"]) == 6
    assert {"Red category", "Blue category"} <= {c["displayName"] for c in defaults.json()["value"]}
    created = graph.post(base, json={"displayName": "Suspicious (mailtrawl)", "color": "preset0"})
    assert created.status_code == 201
    category = created.json()
    assert (category["displayName"], category["color"]) == ("Suspicious (mailtrawl)", "preset0")
    assert graph.get(f"{base}/{category['id']}").json() == category
    _error(
        graph.post(base, json={"displayName": "SUSPICIOUS (mailtrawl)"}), 409, "ErrorAlreadyExists"
    )
    assert graph.post(base, json={"displayName": "x", "color": "preset99"}).status_code == 400
    assert graph.post(base, json={"color": "preset1"}).status_code == 400
    recoloured = graph.patch(f"{base}/{category['id']}", json={"color": "preset4"})
    assert recoloured.status_code == 200
    assert recoloured.json()["color"] == "preset4"
    assert (
        graph.patch(f"{base}/{category['id']}", json={"displayName": "renamed"}).status_code == 400
    )
    stored = emulator.snapshot("grace@contoso.com")["masterCategories"]
    assert {"id": category["id"], "displayName": "Suspicious (mailtrawl)", "color": "preset4"} in (
        stored
    )
    assert graph.delete(f"{base}/{category['id']}").status_code == 204
    _error(graph.get(f"{base}/{category['id']}"), 404, "ErrorItemNotFound")
    _error(graph.delete(f"{base}/{category['id']}"), 404, "ErrorItemNotFound")
    assert len(graph.get(base).json()["value"]) == 6
    assert len(emulator.snapshot("grace@contoso.com")["masterCategories"]) == 6


def test_master_categories_permissions(emulator: EmulatorProcess) -> None:
    base = "users/grace@contoso.com/outlook/masterCategories"
    with _app(emulator, "MailboxSettings.Read") as reader:
        assert reader.get(base).status_code == 200
        _error(reader.post(base, json={"displayName": "x"}), 403, "ErrorAccessDenied")
        cid = reader.get(base).json()["value"][0]["id"]
        _error(reader.delete(f"{base}/{cid}"), 403, "ErrorAccessDenied")
    with _app(emulator, "Mail.ReadWrite") as mail_only:
        _error(mail_only.get(base), 403, "ErrorAccessDenied")
    assert len(emulator.snapshot("grace@contoso.com")["masterCategories"]) == 6


# Inbox rules ------------------------------------------------------------------------------------


def test_inbox_message_rules_crud(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    rules = "users/grace@contoso.com/mailFolders/inbox/messageRules"
    assert graph.get(rules).json()["value"] == []
    _error(graph.post(rules, json={"displayName": "no sequence"}), 400, "ErrorInvalidRequest")
    _error(graph.post(rules, json={"sequence": 1}), 400, "ErrorInvalidRequest")
    quarantine = {
        "displayName": "Quarantine fabrikam",
        "sequence": 2,
        "isEnabled": True,
        "conditions": {"senderContains": ["fabrikam"]},
        "actions": {"moveToFolder": "junkemail", "stopProcessingRules": True},
    }
    created = graph.post(rules, json=quarantine)
    assert created.status_code == 201
    rule = created.json()
    assert rule["displayName"] == "Quarantine fabrikam"
    assert rule["conditions"] == {"senderContains": ["fabrikam"]}
    assert rule["actions"]["moveToFolder"] == "junkemail"
    first = graph.post(rules, json={"displayName": "First", "sequence": 1}).json()
    listed = graph.get(rules).json()["value"]
    assert [r["displayName"] for r in listed] == ["First", "Quarantine fabrikam"]
    assert graph.get(f"{rules}/{rule['id']}").json()["sequence"] == 2
    updated = graph.patch(f"{rules}/{rule['id']}", json={"isEnabled": False})
    assert updated.status_code == 200
    assert updated.json()["isEnabled"] is False
    stored = emulator.snapshot("grace@contoso.com")["messageRules"]
    assert {r["displayName"]: r.get("isEnabled") for r in stored} == {
        "Quarantine fabrikam": False,
        "First": None,
    }
    assert graph.delete(f"{rules}/{first['id']}").status_code == 204
    _error(graph.get(f"{rules}/{first['id']}"), 404, "ErrorItemNotFound")
    assert [r["displayName"] for r in graph.get(rules).json()["value"]] == ["Quarantine fabrikam"]
    assert graph.post(rules, json={**quarantine, "colour": "red"}).status_code == 400
    # Rules live on the inbox only.
    assert graph.get("users/grace@contoso.com/mailFolders/archive/messageRules").status_code == 400


def test_message_rules_permissions(emulator: EmulatorProcess) -> None:
    rules = "users/grace@contoso.com/mailFolders/inbox/messageRules"
    with _app(emulator, "MailboxSettings.Read") as reader:
        assert reader.get(rules).status_code == 200
        _error(
            reader.post(rules, json={"displayName": "x", "sequence": 1}), 403, "ErrorAccessDenied"
        )
    assert emulator.snapshot("grace@contoso.com")["messageRules"] == []


# Mailbox settings -------------------------------------------------------------------------------


def test_mailbox_settings(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    response = graph.get("users/grace@contoso.com/mailboxSettings")
    assert response.status_code == 200
    settings = response.json()
    assert settings["archiveFolder"] == _folder_id(graph, "grace@contoso.com", "archive")
    assert settings["timeZone"]
    assert settings["automaticRepliesSetting"]["status"] in (
        "disabled",
        "alwaysEnabled",
        "scheduled",
    )
    assert settings["language"]["locale"]
    with _app(emulator, "Mail.ReadWrite") as mail_only:
        _error(mail_only.get("users/grace@contoso.com/mailboxSettings"), 403, "ErrorAccessDenied")
    with _app(emulator, "MailboxSettings.Read") as reader:
        assert reader.get("users/grace@contoso.com/mailboxSettings").status_code == 200


def test_changes_addressed_through_a_folder(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    msg = _phish(graph, **IMMUTABLE)
    base = f"users/bob@contoso.com/mailFolders/inbox/messages/{msg['id']}"
    patched = graph.patch(base, json={"categories": ["Phish"]}, headers=IMMUTABLE)
    assert patched.status_code == 200
    assert patched.json()["categories"] == ["Phish"]
    # Through the wrong folder the message is not found, and nothing changes.
    wrong = f"users/bob@contoso.com/mailFolders/archive/messages/{msg['id']}"
    _error(graph.patch(wrong, json={"isRead": True}), 404, "ErrorItemNotFound")
    _error(
        graph.post(f"{wrong}/move", json={"destinationId": "junkemail"}), 404, "ErrorItemNotFound"
    )
    copied = graph.post(f"{base}/copy", json={"destinationId": "archive"}, headers=IMMUTABLE)
    assert copied.status_code == 201
    moved = graph.post(f"{base}/move", json={"destinationId": "junkemail"}, headers=IMMUTABLE)
    assert moved.status_code == 201
    stored = _stored(emulator, "bob@contoso.com")
    assert stored[msg["id"]][0] == "junkemail"
    assert stored[msg["id"]][1]["categories"] == ["Phish"]
    assert stored[msg["id"]][1]["isRead"] is False
    assert stored[copied.json()["id"]][0] == "archive"


def test_attachments_can_be_added_to_drafts_only(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    draft = graph.post("users/erin@contoso.com/messages", json={"subject": "with file"}).json()
    content = b"evidence bytes"
    added = graph.post(
        f"users/erin@contoso.com/messages/{draft['id']}/attachments",
        json={
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "evidence.txt",
            "contentType": "text/plain",
            "contentBytes": base64.b64encode(content).decode(),
        },
    )
    assert added.status_code == 201
    assert added.json()["name"] == "evidence.txt"
    value = graph.get(
        f"users/erin@contoso.com/messages/{draft['id']}/attachments/{added.json()['id']}/$value"
    )
    assert value.content == content
    assert graph.get(f"users/erin@contoso.com/messages/{draft['id']}").json()["hasAttachments"]
    received = _phish(graph, "alice@contoso.com")
    refused = graph.post(
        f"users/alice@contoso.com/messages/{received['id']}/attachments",
        json={
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "x.txt",
            "contentBytes": base64.b64encode(b"x").decode(),
        },
    )
    assert refused.status_code == 400
    stored = {m["subject"]: m for _, m in _stored(emulator, "erin@contoso.com").values()}
    assert [a["name"] for a in stored["with file"]["attachments"]] == ["evidence.txt"]
