"""JSON batching (`POST /v1.0/$batch`) over HTTPS: limits, validation, per-request statuses,
dependsOn with 424, inner throttling and binary bodies."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.graph_assertions import assert_graph_error as _error

PHISH_ID = "<inv-20261102-0001@fabrikam-billing.com>"


def _batch(graph: httpx.Client, requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    response = graph.post("$batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    responses = response.json()["responses"]
    assert sorted(r["id"] for r in responses) == sorted(r["id"] for r in requests)
    return {r["id"]: r for r in responses}


def _get(rid: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": rid, "method": "GET", "url": url, **extra}


def _phish_id(graph: httpx.Client, mailbox: str = "alice@contoso.com") -> str:
    return str(
        graph.get(
            f"users/{mailbox}/messages",
            params={"$filter": f"internetMessageId eq '{PHISH_ID}'", "$select": "id"},
        ).json()["value"][0]["id"]
    )


# Limits and validation --------------------------------------------------------------------------


def test_twenty_requests_are_answered(graph: httpx.Client) -> None:
    requests = [
        _get(str(i), f"/users/alice@contoso.com/mailFolders?$top={i + 1}") for i in range(20)
    ]
    responses = _batch(graph, requests)
    assert len(responses) == 20
    for i in range(20):
        answer = responses[str(i)]
        assert answer["status"] == 200
        assert len(answer["body"]["value"]) == min(i + 1, 8)
        assert answer["headers"]["Content-Type"].startswith("application/json")


def test_more_than_twenty_requests_is_400(graph: httpx.Client) -> None:
    requests = [_get(str(i), "/users") for i in range(21)]
    error = _error(graph.post("$batch", json={"requests": requests}), 400, "BadRequest")
    assert "20" in error["message"]


@pytest.mark.parametrize("ids", [("a", "a"), ("a", "A"), ("Req-1", "req-1")])
def test_duplicate_ids_are_400_case_insensitively(
    graph: httpx.Client, ids: tuple[str, str]
) -> None:
    requests = [_get(rid, "/users") for rid in ids]
    _error(graph.post("$batch", json={"requests": requests}), 400, "BadRequest")


def test_a_body_without_content_type_is_400(graph: httpx.Client) -> None:
    msg = _phish_id(graph)
    request = {
        "id": "1",
        "method": "PATCH",
        "url": f"/users/alice@contoso.com/messages/{msg}",
        "body": {"isRead": True},
    }
    _error(graph.post("$batch", json={"requests": [request]}), 400, "BadRequest")
    # Nothing ran: the message is still unread.
    assert graph.get(f"users/alice@contoso.com/messages/{msg}").json()["isRead"] is False


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"requests": []},
        {"requests": "nope"},
        {"requests": [{"method": "GET", "url": "/users"}]},
        {"requests": [{"id": "1", "url": "/users"}]},
        {"requests": [{"id": "1", "method": "GET"}]},
        {"requests": [{"id": "1", "method": "TRACE", "url": "/users"}]},
        {
            "requests": [
                {"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/users"}
            ]
        },
        {"requests": [_get("1", "/users", dependsOn=["2"]), _get("2", "/users")]},
        {"requests": [_get("1", "/users", dependsOn=["1"])]},
        {"requests": [{"id": "1", "method": "POST", "url": "/$batch"}]},
    ],
)
def test_malformed_batches_are_400(graph: httpx.Client, payload: dict[str, Any]) -> None:
    _error(graph.post("$batch", json=payload), 400, "BadRequest")


def test_a_batch_needs_a_token(emulator: EmulatorProcess) -> None:
    with emulator.client(base_url=emulator.graph + "/") as anonymous:
        response = anonymous.post("$batch", json={"requests": [_get("1", "/users")]})
    _error(response, 401, "InvalidAuthenticationToken")


# Answers ----------------------------------------------------------------------------------------


def test_mixed_statuses_in_one_batch(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    msg = _phish_id(graph)
    responses = _batch(
        graph,
        [
            _get("ok", "/users/alice@contoso.com/messages?$select=subject"),
            _get("no-user", "/users/nobody@contoso.com/messages"),
            _get("no-mailbox", "/users/dave@contoso.com/messages"),
            _get("no-message", "/users/alice@contoso.com/messages/AAMkAGnope="),
            _get("bad-top", "/users?$top=1000"),
            _get("directory", "users/bob@contoso.com?$select=department"),
            {
                "id": "patch",
                "method": "PATCH",
                "url": f"/users/alice@contoso.com/messages/{msg}",
                "headers": {"Content-Type": "application/json"},
                "body": {"isRead": True},
            },
        ],
    )
    assert responses["ok"]["status"] == 200
    assert len(responses["ok"]["body"]["value"]) == 3
    assert responses["no-user"]["status"] == 404
    assert responses["no-user"]["body"]["error"]["code"] == "ErrorInvalidUser"
    assert responses["no-mailbox"]["status"] == 404
    assert responses["no-mailbox"]["body"]["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    assert responses["no-message"]["status"] == 404
    assert responses["no-message"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert responses["bad-top"]["status"] == 400
    assert responses["directory"]["status"] == 200
    assert responses["directory"]["body"]["department"] == "Sales"
    assert responses["patch"]["status"] == 200
    assert responses["patch"]["body"]["isRead"] is True
    stored = [
        m
        for f in emulator.snapshot("alice@contoso.com")["folders"]
        for m in f["messages"]
        if m["internetMessageId"] == PHISH_ID
    ]
    assert stored[0]["isRead"] is True


def test_writes_in_a_batch(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    msg = _phish_id(graph, "bob@contoso.com")
    responses = _batch(
        graph,
        [
            {
                "id": "move",
                "method": "POST",
                "url": f"/users/bob@contoso.com/messages/{msg}/move",
                "headers": {"Content-Type": "application/json", "Prefer": 'IdType="ImmutableId"'},
                "body": {"destinationId": "junkemail"},
            },
            {
                "id": "category",
                "method": "POST",
                "url": "/users/bob@contoso.com/outlook/masterCategories",
                "headers": {"Content-Type": "application/json"},
                "body": {"displayName": "Phish", "color": "preset0"},
            },
        ],
    )
    assert responses["move"]["status"] == 201
    assert responses["category"]["status"] == 201
    snapshot = emulator.snapshot("bob@contoso.com")
    junk = next(f for f in snapshot["folders"] if f["wellKnownName"] == "junkemail")
    assert [m["internetMessageId"] for m in junk["messages"]] == [PHISH_ID]
    assert responses["move"]["body"]["id"] == junk["messages"][0]["immutableId"]
    assert "Phish" in {c["displayName"] for c in snapshot["masterCategories"]}


def test_depends_on_runs_in_order_and_fails_dependants_with_424(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    msg = _phish_id(graph)
    responses = _batch(
        graph,
        [
            _get("1", "/users/nobody@contoso.com/messages"),
            {
                "id": "2",
                "method": "PATCH",
                "url": f"/users/alice@contoso.com/messages/{msg}",
                "headers": {"Content-Type": "application/json"},
                "body": {"isRead": True},
                "dependsOn": ["1"],
            },
            _get("3", "/users/alice@contoso.com/mailFolders/inbox", dependsOn=["2"]),
            _get("4", "/users/alice@contoso.com/mailFolders/archive"),
            _get("5", "/users/alice@contoso.com/mailFolders/drafts", dependsOn=["4"]),
        ],
    )
    assert responses["1"]["status"] == 404
    assert responses["2"]["status"] == 424
    assert responses["2"]["body"]["error"]["code"]
    assert responses["3"]["status"] == 424  # its dependency failed in turn
    assert responses["4"]["status"] == 200
    assert responses["5"]["status"] == 200
    # The failed dependency kept the PATCH from running.
    assert graph.get(f"users/alice@contoso.com/messages/{msg}").json()["isRead"] is False


def test_sequential_dependants_see_earlier_writes(graph: httpx.Client) -> None:
    responses = _batch(
        graph,
        [
            {
                "id": "create",
                "method": "POST",
                "url": "/users/carol@contoso.com/mailFolders/inbox/childFolders",
                "headers": {"Content-Type": "application/json"},
                "body": {"displayName": "Triage"},
            },
            _get(
                "list",
                "/users/carol@contoso.com/mailFolders/inbox/childFolders",
                dependsOn=["create"],
            ),
        ],
    )
    assert responses["create"]["status"] == 201
    assert [f["displayName"] for f in responses["list"]["body"]["value"]] == ["Triage"]


def test_value_comes_back_base64(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    msg = _phish_id(graph)
    direct = graph.get(f"users/alice@contoso.com/messages/{msg}/$value").content
    attachment = graph.get(f"users/alice@contoso.com/messages/{msg}/attachments").json()["value"][0]
    responses = _batch(
        graph,
        [
            _get("mime", f"/users/alice@contoso.com/messages/{msg}/$value"),
            _get(
                "file",
                f"/users/alice@contoso.com/messages/{msg}/attachments/{attachment['id']}/$value",
            ),
        ],
    )
    assert responses["mime"]["status"] == 200
    assert base64.b64decode(responses["mime"]["body"]) == direct
    assert base64.b64decode(responses["file"]["body"]) == base64.b64decode(
        attachment["contentBytes"]
    )
    assert responses["file"]["headers"]["Content-Type"] == "application/pdf"


def test_permissions_apply_to_each_sub_request(emulator: EmulatorProcess) -> None:
    app = emulator.control(
        "POST", "/apps", {"displayName": "mail only", "permissions": {"Mail.Read": True}}
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        responses = _batch(
            client,
            [_get("mail", "/users/alice@contoso.com/messages"), _get("users", "/users")],
        )
    assert responses["mail"]["status"] == 200
    assert responses["users"]["status"] == 403
    assert responses["users"]["body"]["error"]["code"] == "Authorization_RequestDenied"


# Throttling inside a batch ----------------------------------------------------------------------


def test_inner_429_has_its_own_retry_after(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    emulator.settings(faults={"rate_429": 1.0, "retry_after": 7})
    outer = graph.post(
        "$batch",
        json={
            "requests": [
                _get("1", "/users/alice@contoso.com/mailFolders"),
                _get("2", "/users/bob@contoso.com/messages"),
            ]
        },
    )
    # The envelope is not throttled; each sub-request is.
    assert outer.status_code == 200
    for answer in outer.json()["responses"]:
        assert answer["status"] == 429
        assert answer["headers"]["Retry-After"] == "7"
        assert answer["body"]["error"]["code"] == "TooManyRequests"
    stats = emulator.stats()
    assert stats["batches"] == 1
    assert stats["batchSubrequests"] == 2
    assert stats["injectedFaults"]["429"] == 2


def test_a_batch_on_one_mailbox_stays_within_its_concurrency(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    # Outlook runs at most four sub-requests of a batch at once: a batch of twelve on one
    # mailbox is slow but never throttled by the mailbox concurrency limit.
    emulator.settings(faults={"latency_ms": 60})
    responses = _batch(
        graph, [_get(str(i), "/users/alice@contoso.com/mailFolders/inbox") for i in range(12)]
    )
    assert {r["status"] for r in responses.values()} == {200}
    stats = emulator.stats()
    assert stats["peakMailboxInFlight"] == 4
    assert stats["throttled"] == 0


def test_depends_on_matches_ids_case_insensitively(graph: httpx.Client) -> None:
    responses = _batch(
        graph,
        [
            _get("First", "/users/alice@contoso.com/mailFolders/inbox"),
            _get("second", "/users/alice@contoso.com/mailFolders/archive", dependsOn=["first"]),
        ],
    )
    assert responses["First"]["status"] == 200
    assert responses["second"]["status"] == 200
