"""Per-folder message delta over HTTPS: paging, rounds, removals, updates, change types, the
received-time filter, expiry (410 syncStateNotFound) and a full resync."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.graph_assertions import assert_graph_error as _error

INBOX_DELTA = "users/bob@contoso.com/mailFolders/inbox/messages/delta"
JUNK_DELTA = "users/bob@contoso.com/mailFolders/junkemail/messages/delta"


def _mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "news@fabrikam.example"
    msg["To"] = "bob@contoso.com"
    msg["Subject"] = subject
    msg.set_content(f"Body of {subject}")
    return msg.as_bytes()


def _deliver(
    emulator: EmulatorProcess,
    subject: str,
    mailbox: str = "bob@contoso.com",
    received: str | None = None,
    copies: int = 1,
) -> list[str]:
    body: dict[str, Any] = {
        "mime": base64.b64encode(_mail(subject)).decode(),
        "recipients": [mailbox],
        "copies": copies,
    }
    if received:
        body["receivedDateTime"] = received
    return [d["id"] for d in emulator.control("POST", "/deliver", body)["delivered"]]


class Round:
    """One delta round: every page's items, the page sizes and the final deltaLink."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.page_sizes: list[int] = []
        self.delta_link = ""
        self.responses: list[httpx.Response] = []

    @property
    def ids(self) -> list[str]:
        return [i["id"] for i in self.items]

    @property
    def removed(self) -> list[str]:
        return [i["id"] for i in self.items if "@removed" in i]

    @property
    def present(self) -> list[dict[str, Any]]:
        return [i for i in self.items if "@removed" not in i]


def _round(graph: httpx.Client, url: str, *, page_size: int | None = None, **params: str) -> Round:
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    result = Round()
    response = graph.get(url, params=params or None, headers=headers)
    for _ in range(500):
        assert response.status_code == 200, response.text
        result.responses.append(response)
        body = response.json()
        result.items += body["value"]
        result.page_sizes.append(len(body["value"]))
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            result.delta_link = body["@odata.deltaLink"]
            return result
        response = graph.get(body["@odata.nextLink"], headers=headers)
    raise AssertionError("no deltaLink after 500 pages")


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


# Initial sync and rounds ------------------------------------------------------------------------


def test_initial_sync_pages_with_next_links_then_a_delta_link(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    _deliver(emulator, "Weekly digest", copies=4)  # with the fixture's phish: 5 in the inbox
    first = graph.get(INBOX_DELTA, headers={"Prefer": "odata.maxpagesize=2"})
    assert first.status_code == 200
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=2"
    body = first.json()
    assert len(body["value"]) == 2
    assert "$skiptoken=" in body["@odata.nextLink"]
    assert "@odata.deltaLink" not in body
    synced = _round(graph, INBOX_DELTA, page_size=2)
    assert synced.page_sizes == [2, 2, 1]
    assert "$deltatoken=" in synced.delta_link
    assert synced.delta_link.startswith(emulator.graph + "/" + INBOX_DELTA)
    listed = graph.get("users/bob@contoso.com/mailFolders/inbox/messages").json()["value"]
    assert sorted(synced.ids) == sorted(m["id"] for m in listed)
    assert len(set(synced.ids)) == 5
    assert synced.removed == []
    assert {i["subject"] for i in synced.items} == {
        "Weekly digest",
        "Overdue invoice – action required",
    }


def test_default_delta_page_is_10(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    _deliver(emulator, "Digest", copies=11)
    synced = _round(graph, INBOX_DELTA)
    assert synced.page_sizes == [10, 2]
    assert len(set(synced.ids)) == 12


def test_a_quiet_round_is_empty_and_a_delivery_shows_up_in_the_next(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    first = _round(graph, INBOX_DELTA)
    quiet = _round(graph, first.delta_link)
    assert quiet.items == []
    assert quiet.delta_link
    new_ids = _deliver(emulator, "Fresh news")
    fresh = _round(graph, quiet.delta_link)
    assert fresh.ids == new_ids
    assert fresh.items[0]["subject"] == "Fresh news"
    # The old deltaLink still answers from where it was: it sees the same delivery.
    replay = _round(graph, first.delta_link)
    assert replay.ids == new_ids
    assert _round(graph, fresh.delta_link).items == []


def test_delivery_during_paging_is_reported_exactly_once(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    _deliver(emulator, "Old", copies=3)
    headers = {"Prefer": "odata.maxpagesize=1"}
    page = graph.get(INBOX_DELTA, headers=headers).json()
    seen = [i["id"] for i in page["value"]]
    late = _deliver(emulator, "Late arrival")[0]
    while "@odata.nextLink" in page:
        page = graph.get(page["@odata.nextLink"], headers=headers).json()
        seen += [i["id"] for i in page["value"]]
    seen += _round(graph, page["@odata.deltaLink"]).ids
    assert seen.count(late) == 1
    assert len(seen) == len(set(seen)) == 5


def test_moving_out_is_removed_from_the_source_and_new_in_the_destination(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    inbox = _round(graph, INBOX_DELTA)
    junk = _round(graph, JUNK_DELTA)
    assert junk.items == []
    msg_id = inbox.ids[0]
    moved = graph.post(
        f"users/bob@contoso.com/messages/{msg_id}/move", json={"destinationId": "junkemail"}
    )
    assert moved.status_code == 201
    new_id = moved.json()["id"]
    source = _round(graph, inbox.delta_link)
    assert source.items == [
        {"@odata.type": "#microsoft.graph.message", "id": msg_id, "@removed": {"reason": "deleted"}}
    ]
    destination = _round(graph, junk.delta_link)
    assert destination.ids == [new_id]
    junk_id = graph.get("users/bob@contoso.com/mailFolders/junkemail").json()["id"]
    assert destination.items[0]["parentFolderId"] == junk_id
    assert "@removed" not in destination.items[0]


def test_deletes_and_purges_are_removals(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    ids = _deliver(emulator, "Doomed", copies=2)
    start = _round(graph, INBOX_DELTA)
    assert graph.delete(f"users/bob@contoso.com/messages/{ids[0]}").status_code == 204
    assert graph.post(f"users/bob@contoso.com/messages/{ids[1]}/permanentDelete").status_code == 204
    after = _round(graph, start.delta_link)
    assert sorted(after.removed) == sorted(ids)
    assert after.present == []


def test_an_update_is_reported_once_as_the_current_item(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    start = _round(graph, INBOX_DELTA)
    msg_id = start.ids[0]
    for flag in (True, False, True):
        patched = graph.patch(f"users/bob@contoso.com/messages/{msg_id}", json={"isRead": flag})
        assert patched.status_code == 200
    changes = _round(graph, start.delta_link)
    assert changes.ids == [msg_id]
    assert changes.items[0]["isRead"] is True
    assert "@removed" not in changes.items[0]


def test_change_type_filters(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    doomed = _deliver(emulator, "Doomed")[0]
    created = _round(graph, INBOX_DELTA, changeType="created")
    updated = _round(graph, INBOX_DELTA, changeType="updated")
    deleted = _round(graph, INBOX_DELTA, changeType="deleted")
    assert len(created.ids) == 2
    assert updated.items == deleted.items == []
    existing = next(i for i in created.ids if i != doomed)
    graph.patch(f"users/bob@contoso.com/messages/{existing}", json={"categories": ["Seen"]})
    graph.delete(f"users/bob@contoso.com/messages/{doomed}")
    fresh = _deliver(emulator, "Fresh")[0]
    assert _round(graph, created.delta_link).ids == [fresh]
    assert _round(graph, updated.delta_link).ids == [existing]
    assert _round(graph, deleted.delta_link).removed == [doomed]
    assert _round(graph, deleted.delta_link).present == []
    _error(graph.get(INBOX_DELTA, params={"changeType": "moved"}), 400, "BadRequest")


def test_select_is_kept_across_next_and_delta_links(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    _deliver(emulator, "Selected", copies=2)
    synced = _round(graph, INBOX_DELTA, page_size=1, **{"$select": "subject,isRead"})
    assert synced.page_sizes == [1, 1, 1]
    assert all(set(i) == {"@odata.etag", "id", "subject", "isRead"} for i in synced.items)
    _deliver(emulator, "Later")
    later = _round(graph, synced.delta_link)
    assert [set(i) for i in later.items] == [{"@odata.etag", "id", "subject", "isRead"}]


# The received-time filter -----------------------------------------------------------------------


def test_received_date_time_filter(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    _deliver(emulator, "Old news", received="2026-01-01T00:00:00Z")
    recent = _deliver(emulator, "Recent news", received="2026-12-01T00:00:00Z")
    bounded = _round(graph, INBOX_DELTA, **{"$filter": "receivedDateTime ge 2026-11-15T00:00:00Z"})
    assert bounded.ids == recent
    exclusive = _round(
        graph, INBOX_DELTA, **{"$filter": "receivedDateTime gt 2026-12-01T00:00:00Z"}
    )
    assert exclusive.ids == []
    # The bound travels in the deltaLink: old mail stays out of later rounds too.
    _deliver(emulator, "Backfilled", received="2026-02-01T00:00:00Z")
    newer = _deliver(emulator, "Newer", received="2026-12-02T00:00:00Z")
    assert _round(graph, bounded.delta_link).ids == newer


@pytest.mark.parametrize(
    "flt",
    [
        "subject eq 'x'",
        "receivedDateTime lt 2026-01-01T00:00:00Z",
        "isRead eq false",
        "receivedDateTime ge 2026-01-01T00:00:00Z and isRead eq false",
    ],
)
def test_any_other_delta_filter_is_400(graph: httpx.Client, flt: str) -> None:
    _error(graph.get(INBOX_DELTA, params={"$filter": flt}), 400, "ErrorInvalidUrlQueryFilter")


def test_delta_refuses_search_and_other_orderings(graph: httpx.Client) -> None:
    assert graph.get(INBOX_DELTA, params={"$search": '"x"'}).status_code == 400
    assert graph.get(INBOX_DELTA, params={"$orderby": "subject"}).status_code == 400
    ordered = graph.get(INBOX_DELTA, params={"$orderby": "receivedDateTime desc"})
    assert ordered.status_code == 200


# Expiry and resync ------------------------------------------------------------------------------


def test_expiring_all_tokens_answers_410(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    _deliver(emulator, "Second")
    bob = _round(graph, INBOX_DELTA)
    alice = _round(graph, "users/alice@contoso.com/mailFolders/inbox/messages/delta")
    paging = graph.get(INBOX_DELTA, headers={"Prefer": "odata.maxpagesize=1"}).json()
    emulator.control("POST", "/delta/expire", {})
    for link in (bob.delta_link, alice.delta_link, paging["@odata.nextLink"]):
        response = graph.get(link)
        error = _error(response, 410, "syncStateNotFound")
        assert error["message"]
    gone = graph.get(bob.delta_link)
    assert gone.headers["Location"] == emulator.graph + "/" + INBOX_DELTA


def test_expiring_one_mailbox_leaves_the_others(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    bob = _round(graph, INBOX_DELTA)
    alice = _round(graph, "users/alice@contoso.com/mailFolders/inbox/messages/delta")
    emulator.control("POST", "/delta/expire", {"mailboxes": ["bob@contoso.com"]})
    _error(graph.get(bob.delta_link), 410, "syncStateNotFound")
    assert graph.get(alice.delta_link).status_code == 200


@pytest.mark.parametrize("param", ["$deltatoken", "$skiptoken"])
def test_a_garbage_token_answers_410(graph: httpx.Client, param: str) -> None:
    _error(graph.get(INBOX_DELTA, params={param: "garbage"}), 410, "syncStateNotFound")


def test_a_token_is_bound_to_its_folder_and_mailbox(graph: httpx.Client) -> None:
    inbox = _round(graph, INBOX_DELTA)
    token = httpx.URL(inbox.delta_link).params["$deltatoken"]
    _error(graph.get(JUNK_DELTA, params={"$deltatoken": token}), 410, "syncStateNotFound")
    _error(
        graph.get(
            "users/alice@contoso.com/mailFolders/inbox/messages/delta",
            params={"$deltatoken": token},
        ),
        410,
        "syncStateNotFound",
    )


def test_full_resync_after_410_gets_everything_once(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    _deliver(emulator, "Batch", copies=6)
    start = _round(graph, INBOX_DELTA, page_size=3)
    moved = graph.post(
        f"users/bob@contoso.com/messages/{start.ids[0]}/move", json={"destinationId": "archive"}
    )
    assert moved.status_code == 201
    graph.patch(f"users/bob@contoso.com/messages/{start.ids[1]}", json={"isRead": True})
    emulator.control("POST", "/delta/expire", {"mailboxes": ["bob@contoso.com"]})
    _error(graph.get(start.delta_link), 410, "syncStateNotFound")
    resync = _round(graph, INBOX_DELTA, page_size=2)
    assert len(resync.ids) == len(set(resync.ids)) == 6
    assert resync.removed == []
    listed = graph.get("users/bob@contoso.com/mailFolders/inbox/messages").json()["value"]
    assert sorted(resync.ids) == sorted(m["id"] for m in listed)
    assert start.ids[0] not in resync.ids
    assert _round(graph, resync.delta_link).items == []


# Scope ------------------------------------------------------------------------------------------


def test_delta_errors_and_permissions(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    _error(
        graph.get("users/bob@contoso.com/mailFolders/AAMkAGFRnope=/messages/delta"),
        404,
        "ErrorItemNotFound",
    )
    _error(
        graph.get("users/dave@contoso.com/mailFolders/inbox/messages/delta"),
        404,
        "MailboxNotEnabledForRESTAPI",
    )
    with _app(emulator, "Mail.ReadBasic.All") as basic:
        synced = _round(basic, INBOX_DELTA)
        assert len(synced.items) == 1
        assert "body" not in synced.items[0]
        assert synced.items[0]["subject"]
    with _app(emulator, "User.Read.All") as no_mail:
        _error(no_mail.get(INBOX_DELTA), 403, "ErrorAccessDenied")


@pytest.mark.parametrize("change_type", [None, "created"])
def test_an_item_changed_while_the_client_pages_is_not_lost(
    emulator: EmulatorProcess, graph: httpx.Client, change_type: str | None
) -> None:
    ids = _deliver(emulator, "Paged", copies=3)
    params = {"changeType": change_type} if change_type else {}
    headers = {"Prefer": "odata.maxpagesize=1"}
    page = graph.get(INBOX_DELTA, params=params, headers=headers).json()
    seen = [i["id"] for i in page["value"]]
    # Change every item the client has not been served yet.
    for msg_id in set(ids) - set(seen):
        graph.patch(f"users/bob@contoso.com/messages/{msg_id}", json={"isRead": True})
    while "@odata.nextLink" in page:
        page = graph.get(page["@odata.nextLink"], headers=headers).json()
        seen += [i["id"] for i in page["value"]]
    seen += _round(graph, page["@odata.deltaLink"]).ids
    # Every message reaches the client (a replay as an update is allowed, a loss is not).
    assert set(ids) <= set(seen)
    assert len(set(seen)) == 4
