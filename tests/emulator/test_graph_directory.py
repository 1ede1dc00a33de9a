"""Graph v1.0 directory endpoints over HTTPS: users, groups, paging, query rules, permissions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.graph_assertions import assert_graph_error as _error

EVENTUAL = {"ConsistencyLevel": "eventual"}
TENANT_UPNS = {
    "alice@contoso.com",
    "bob@contoso.com",
    "carol@contoso.com",
    "dave@contoso.com",
    "erin@contoso.com",
    "frank@contoso.com",
    "grace@contoso.com",
    "phishing@contoso.com",
}
ALL_STAFF = "9a000000-0000-4000-8000-0000000000f4"
FINANCE = "9a000000-0000-4000-8000-0000000000f1"
SALES = "9a000000-0000-4000-8000-0000000000f2"
LEADERSHIP = "9a000000-0000-4000-8000-0000000000f3"
ALICE_ID = "a1a1a1a1-0000-4000-8000-000000000001"


@contextmanager
def _control(emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    """One keep-alive connection to the control plane (for bulk set-up)."""
    with emulator.client(
        base_url=emulator.info["control_url"] + "/",
        headers={"Authorization": f"Bearer {emulator.info['control_token']}"},
    ) as client:
        yield client


@contextmanager
def _app(emulator: EmulatorProcess, *roles: str) -> Iterator[httpx.Client]:
    """A Graph client for a new app holding exactly `roles` (granted and consented)."""
    app = emulator.control(
        "POST", "/apps", {"displayName": "scoped", "permissions": dict.fromkeys(roles, True)}
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


def _add_users(emulator: EmulatorProcess, count: int, department: str = "Temp") -> set[str]:
    upns = {f"temp{i:04}@contoso.com" for i in range(count)}
    with _control(emulator) as control:
        for upn in sorted(upns):
            response = control.post(
                "users", json={"userPrincipalName": upn, "department": department}
            )
            assert response.status_code == 201, response.text
    return upns


def _walk(
    graph: httpx.Client, url: str, params: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every item of a paged collection, following @odata.nextLink opaquely."""
    items: list[dict[str, Any]] = []
    next_url: str | None = url
    pages = 0
    while next_url:
        response = graph.get(next_url, params=params if pages == 0 else None)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        next_url = body.get("@odata.nextLink")
        pages += 1
        assert pages < 100
    return items


def _upns(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {u["userPrincipalName"] for u in response.json()["value"]}


# Users: paging ---------------------------------------------------------------------------------


def test_users_default_page_is_100_and_the_skiptoken_walk_sees_everyone_once(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    added = _add_users(emulator, 150)
    first = graph.get("users")
    assert first.status_code == 200
    body = first.json()
    assert len(body["value"]) == 100
    assert body["@odata.context"].endswith("/v1.0/$metadata#users")
    next_link = body["@odata.nextLink"]
    assert next_link.startswith(emulator.graph + "/users?")
    assert "$skiptoken=" in next_link
    everyone = _walk(graph, "users")
    upns = [u["userPrincipalName"] for u in everyone]
    assert len(upns) == len(set(upns)) == 158
    assert set(upns) == TENANT_UPNS | added
    # The last page has no nextLink.
    last = graph.get(next_link).json()
    assert len(last["value"]) == 58
    assert "@odata.nextLink" not in last


def test_users_top_keeps_its_page_size_across_next_links(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    _add_users(emulator, 12)
    sizes = []
    seen: list[str] = []
    url: str | None = "users?$top=6&$select=userPrincipalName"
    while url:
        body = graph.get(url).json()
        sizes.append(len(body["value"]))
        seen += [u["userPrincipalName"] for u in body["value"]]
        assert all(set(u) == {"userPrincipalName"} for u in body["value"])
        url = body.get("@odata.nextLink")
        assert url is None or "$top=6" in url
    assert sizes == [6, 6, 6, 2]
    assert len(seen) == len(set(seen)) == 20
    everyone = graph.get("users", params={"$top": "999"}).json()
    assert len(everyone["value"]) == 20
    assert "@odata.nextLink" not in everyone


@pytest.mark.parametrize("top", ["1", "999"])
def test_users_top_bounds_accept_1_and_999(graph: httpx.Client, top: str) -> None:
    response = graph.get("users", params={"$top": top})
    assert response.status_code == 200
    assert len(response.json()["value"]) == min(int(top), 8)


@pytest.mark.parametrize("top", ["1000", "0", "-1"])
def test_users_top_out_of_bounds_is_400(graph: httpx.Client, top: str) -> None:
    error = _error(graph.get("users", params={"$top": top}), 400, "Request_BadRequest")
    assert (
        error["message"]
        == f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive."
    )


def test_users_top_that_is_not_a_number_is_400(graph: httpx.Client) -> None:
    assert graph.get("users", params={"$top": "ten"}).status_code == 400


def test_forged_or_altered_skiptoken_is_400(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    _error(graph.get("users", params={"$skiptoken": "forged"}), 400, "Directory_ExpiredPageToken")
    link = graph.get("users", params={"$top": "2"}).json()["@odata.nextLink"]
    token = httpx.URL(link).params["$skiptoken"]
    altered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    _error(
        graph.get("users", params={"$top": "2", "$skiptoken": altered}),
        400,
        "Directory_ExpiredPageToken",
    )


# Users: get, select, filter ---------------------------------------------------------------------


def test_get_user_by_id_and_by_upn_is_the_same_object(graph: httpx.Client) -> None:
    by_id = graph.get(f"users/{ALICE_ID}")
    by_upn = graph.get("users/alice@contoso.com")
    by_upper = graph.get("users/ALICE@Contoso.com")
    assert by_id.status_code == by_upn.status_code == by_upper.status_code == 200
    assert by_id.json() == by_upn.json() == by_upper.json()
    alice = by_id.json()
    assert alice["@odata.context"].endswith("/v1.0/$metadata#users/$entity")
    assert alice["id"] == ALICE_ID
    assert alice["displayName"] == "Alice Archer"
    assert alice["userPrincipalName"] == "alice@contoso.com"
    assert alice["mail"] == "alice@contoso.com"
    assert alice["jobTitle"] == "Accountant"
    # The default property set does not include department or accountEnabled.
    assert "department" not in alice
    assert "accountEnabled" not in alice


def test_get_unknown_user_is_404(graph: httpx.Client) -> None:
    _error(graph.get("users/nobody@contoso.com"), 404, "Request_ResourceNotFound")
    _error(graph.get("users/00000000-0000-4000-8000-000000000000"), 404, "Request_ResourceNotFound")


def test_select_returns_exactly_the_selected_properties(graph: httpx.Client) -> None:
    alice = graph.get("users/alice@contoso.com", params={"$select": "department,accountEnabled"})
    assert alice.status_code == 200
    assert {k: v for k, v in alice.json().items() if not k.startswith("@")} == {
        "department": "Finance",
        "accountEnabled": True,
    }
    carol = graph.get(
        "users/carol@contoso.com", params={"$select": "id,accountEnabled,department"}
    ).json()
    assert (carol["id"], carol["accountEnabled"], carol["department"]) == (
        "c3c3c3c3-0000-4000-8000-000000000003",
        False,
        "Sales",
    )
    listed = graph.get("users", params={"$select": "userPrincipalName,department"}).json()["value"]
    assert {u["userPrincipalName"]: u["department"] for u in listed}["erin@contoso.com"] == (
        "Executive"
    )
    assert all(set(u) == {"userPrincipalName", "department"} for u in listed)


def test_select_of_an_unknown_property_is_400(graph: httpx.Client) -> None:
    error = _error(graph.get("users", params={"$select": "shoeSize"}), 400, "Request_BadRequest")
    assert "shoeSize" in error["message"]
    _error(
        graph.get("users/alice@contoso.com", params={"$select": "displayName,shoeSize"}),
        400,
        "Request_BadRequest",
    )


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("department eq 'Sales'", {"bob@contoso.com", "carol@contoso.com"}),
        ("department eq 'sales'", {"bob@contoso.com", "carol@contoso.com"}),
        ("accountEnabled eq false", {"carol@contoso.com"}),
        ("startswith(displayName,'Gr')", {"grace@contoso.com"}),
        ("startswith(userPrincipalName,'e')", {"erin@contoso.com"}),
        ("mail eq 'erin@contoso.com'", {"erin@contoso.com"}),
        ("userPrincipalName eq 'FRANK@contoso.com'", {"frank@contoso.com"}),
        ("department in ('Finance','HR')", {"alice@contoso.com", "grace@contoso.com"}),
        (
            "userPrincipalName in ('alice@contoso.com','erin@contoso.com','x@contoso.com')",
            {"alice@contoso.com", "erin@contoso.com"},
        ),
        (
            "department eq 'IT' and accountEnabled eq true",
            {"dave@contoso.com", "phishing@contoso.com"},
        ),
        (
            "department eq 'HR' or department eq 'Executive'",
            {"grace@contoso.com", "erin@contoso.com"},
        ),
        ("department eq 'Nowhere'", set()),
    ],
)
def test_user_filters(graph: httpx.Client, flt: str, expected: set[str]) -> None:
    assert _upns(graph.get("users", params={"$filter": flt})) == expected


def test_filtered_listing_pages_like_any_other(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    _add_users(emulator, 7, department="Temp")
    found = _walk(graph, "users", params={"$filter": "department eq 'Temp'", "$top": "3"})
    assert len(found) == len({u["id"] for u in found}) == 7


@pytest.mark.parametrize(
    "params",
    [
        {"$filter": "department ne 'Sales'"},
        {"$filter": "endswith(mail,'@contoso.com')"},
        {"$filter": "not(department eq 'Sales')"},
        {"$search": '"displayName:ali"'},
    ],
)
def test_advanced_queries_need_consistency_level_eventual(
    graph: httpx.Client, params: dict[str, str]
) -> None:
    _error(graph.get("users", params=params), 400, "Request_UnsupportedQuery")


def test_count_needs_consistency_level_eventual(graph: httpx.Client) -> None:
    _error(graph.get("users", params={"$count": "true"}), 400, "Request_BadRequest")
    _error(graph.get("users/$count"), 400, "Request_BadRequest")


def test_advanced_filters_need_count_as_well_as_the_header(graph: httpx.Client) -> None:
    # The header alone is not enough for ne/endswith: Graph asks for $count=true too.
    error = _error(
        graph.get("users", params={"$filter": "department ne 'Sales'"}, headers=EVENTUAL),
        400,
        "Request_UnsupportedQuery",
    )
    assert "$count=true" in error["message"]
    _error(
        graph.get("users", params={"$filter": "endswith(mail,'@contoso.com')"}, headers=EVENTUAL),
        400,
        "Request_UnsupportedQuery",
    )


def test_advanced_queries_work_with_consistency_level_eventual(graph: httpx.Client) -> None:
    not_sales = graph.get(
        "users",
        params={
            "$filter": "department ne 'Sales'",
            "$count": "true",
            "$select": "userPrincipalName",
        },
        headers=EVENTUAL,
    )
    assert not_sales.status_code == 200
    assert not_sales.json()["@odata.count"] == 6
    assert _upns(not_sales) == TENANT_UPNS - {"bob@contoso.com", "carol@contoso.com"}
    ends = graph.get(
        "users",
        params={"$filter": "endswith(mail,'@contoso.com')", "$count": "true"},
        headers=EVENTUAL,
    )
    # Dave has no mailbox and no mail address: endswith cannot match him.
    assert _upns(ends) == TENANT_UPNS - {"dave@contoso.com"}
    assert ends.json()["@odata.count"] == 7
    counted = graph.get("users", params={"$count": "true", "$top": "3"}, headers=EVENTUAL).json()
    assert counted["@odata.count"] == 8
    assert len(counted["value"]) == 3
    searched = graph.get("users", params={"$search": '"displayName:ali"'}, headers=EVENTUAL)
    assert _upns(searched) == {"alice@contoso.com"}
    # A search term matches the start of any word of the property, not its middle.
    assert _upns(
        graph.get("users", params={"$search": '"displayName:archer"'}, headers=EVENTUAL)
    ) == {"alice@contoso.com"}
    assert (
        _upns(graph.get("users", params={"$search": '"displayName:rcher"'}, headers=EVENTUAL))
        == set()
    )
    count_only = graph.get("users/$count", headers=EVENTUAL)
    assert count_only.status_code == 200
    assert count_only.headers["content-type"].startswith("text/plain")
    assert count_only.text == "8"
    sales_count = graph.get(
        "users/$count", params={"$filter": "department eq 'Sales'"}, headers=EVENTUAL
    )
    assert sales_count.text == "2"


def test_users_without_a_mailbox_are_in_the_directory(graph: httpx.Client) -> None:
    dave = graph.get(
        "users/dave@contoso.com", params={"$select": "id,userPrincipalName,department,mail"}
    )
    assert dave.status_code == 200
    assert dave.json()["department"] == "IT"
    assert "dave@contoso.com" in _upns(graph.get("users", params={"$filter": "department eq 'IT'"}))
    assert "dave@contoso.com" in _upns(graph.get("users"))


# Groups -----------------------------------------------------------------------------------------


def test_groups_list_and_get(graph: httpx.Client) -> None:
    listed = graph.get("groups")
    assert listed.status_code == 200
    groups = {g["displayName"]: g for g in listed.json()["value"]}
    assert set(groups) == {"Finance Team", "Sales Team", "Leadership", "All Staff"}
    assert groups["All Staff"]["id"] == ALL_STAFF
    assert groups["Finance Team"]["mail"] == "finance@contoso.com"
    one = graph.get(f"groups/{FINANCE}")
    assert one.status_code == 200
    assert one.json()["displayName"] == "Finance Team"
    assert one.json()["@odata.context"].endswith("/v1.0/$metadata#groups/$entity")
    _error(
        graph.get("groups/00000000-0000-4000-8000-000000000000"), 404, "Request_ResourceNotFound"
    )
    selected = graph.get(f"groups/{FINANCE}", params={"$select": "displayName"}).json()
    assert {k for k in selected if not k.startswith("@")} == {"displayName"}
    by_name = graph.get("groups", params={"$filter": "displayName eq 'Leadership'"}).json()
    assert [g["id"] for g in by_name["value"]] == [LEADERSHIP]


def test_group_members_are_direct_members_of_both_kinds(graph: httpx.Client) -> None:
    response = graph.get(f"groups/{ALL_STAFF}/members")
    assert response.status_code == 200
    members = response.json()["value"]
    groups = {m["displayName"] for m in members if m["@odata.type"] == "#microsoft.graph.group"}
    users = {m["userPrincipalName"] for m in members if m["@odata.type"] == "#microsoft.graph.user"}
    assert groups == {"Finance Team", "Sales Team", "Leadership"}
    assert users == {"frank@contoso.com", "grace@contoso.com", "dave@contoso.com"}
    finance = graph.get(f"groups/{FINANCE}/members").json()["value"]
    assert [m["id"] for m in finance] == [ALICE_ID]
    _error(
        graph.get("groups/00000000-0000-4000-8000-000000000000/members"),
        404,
        "Request_ResourceNotFound",
    )


def test_transitive_members_expand_nested_groups(graph: httpx.Client) -> None:
    members = _walk(graph, f"groups/{ALL_STAFF}/transitiveMembers")
    users = [m["userPrincipalName"] for m in members if m["@odata.type"] == "#microsoft.graph.user"]
    groups = [m["displayName"] for m in members if m["@odata.type"] == "#microsoft.graph.group"]
    assert sorted(users) == sorted(TENANT_UPNS - {"phishing@contoso.com"})
    assert sorted(groups) == ["Finance Team", "Leadership", "Sales Team"]
    sales = graph.get(f"groups/{SALES}/transitiveMembers").json()["value"]
    assert {m["userPrincipalName"] for m in sales} == {"bob@contoso.com", "carol@contoso.com"}


def test_transitive_members_list_each_member_once_even_with_cycles(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    # Alice directly in All Staff as well as through Finance Team, and a membership cycle.
    emulator.control("POST", f"/groups/{ALL_STAFF}/members", {"add": ["alice@contoso.com"]})
    emulator.control("POST", f"/groups/{FINANCE}/members", {"add": ["All Staff"]})
    members = _walk(graph, f"groups/{ALL_STAFF}/transitiveMembers", params={"$top": "3"})
    ids = [m["id"] for m in members]
    assert len(ids) == len(set(ids))
    assert ALL_STAFF not in ids
    assert ids.count(ALICE_ID) == 1
    assert len(ids) == 10  # 7 users with mailboxes or not, and 3 groups
    finance = _walk(graph, f"groups/{FINANCE}/transitiveMembers")
    assert ALL_STAFF in {m["id"] for m in finance}


def test_member_select_applies_to_users_and_groups(graph: httpx.Client) -> None:
    members = graph.get(f"groups/{ALL_STAFF}/members", params={"$select": "id,displayName"}).json()[
        "value"
    ]
    for member in members:
        assert set(member) == {"@odata.type", "id", "displayName"}


def test_member_of_lists_direct_groups_and_transitive_member_of_all(graph: httpx.Client) -> None:
    direct = graph.get("users/alice@contoso.com/memberOf")
    assert direct.status_code == 200
    assert [(g["@odata.type"], g["displayName"]) for g in direct.json()["value"]] == [
        ("#microsoft.graph.group", "Finance Team")
    ]
    frank = graph.get("users/frank@contoso.com/memberOf").json()["value"]
    assert [g["displayName"] for g in frank] == ["All Staff"]
    phishing = graph.get("users/phishing@contoso.com/memberOf").json()["value"]
    assert phishing == []
    transitive = graph.get("users/alice@contoso.com/transitiveMemberOf").json()["value"]
    assert {g["displayName"] for g in transitive} == {"Finance Team", "All Staff"}
    _error(graph.get("users/nobody@contoso.com/memberOf"), 404, "Request_ResourceNotFound")


def test_control_plane_changes_to_membership_show_in_graph(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.control("POST", f"/groups/{LEADERSHIP}/members", {"add": ["frank@contoso.com"]})
    leaders = graph.get(f"groups/{LEADERSHIP}/members").json()["value"]
    assert {m["userPrincipalName"] for m in leaders} == {"erin@contoso.com", "frank@contoso.com"}
    emulator.control("POST", f"/groups/{LEADERSHIP}/members", {"remove": ["erin@contoso.com"]})
    leaders = graph.get(f"groups/{LEADERSHIP}/members").json()["value"]
    assert {m["userPrincipalName"] for m in leaders} == {"frank@contoso.com"}


# Permissions ------------------------------------------------------------------------------------


def test_mail_only_app_cannot_read_the_directory(emulator: EmulatorProcess) -> None:
    with _app(emulator, "Mail.ReadWrite") as client:
        for path in ("users", "users/alice@contoso.com", "groups", f"groups/{ALL_STAFF}/members"):
            error = _error(client.get(path), 403, "Authorization_RequestDenied")
            assert error["message"] == "Insufficient privileges to complete the operation."
        # Its mail permission still works.
        assert client.get("users/alice@contoso.com/messages").status_code == 200


def test_user_read_all_without_directory_read_all_cannot_read_member_of(
    emulator: EmulatorProcess,
) -> None:
    with _app(emulator, "User.Read.All") as client:
        assert client.get("users").status_code == 200
        assert client.get("users/alice@contoso.com").status_code == 200
        _error(client.get("users/alice@contoso.com/memberOf"), 403, "Authorization_RequestDenied")
        _error(
            client.get("users/alice@contoso.com/transitiveMemberOf"),
            403,
            "Authorization_RequestDenied",
        )
        _error(client.get("groups"), 403, "Authorization_RequestDenied")


def test_group_member_read_all_reads_groups_but_not_users(emulator: EmulatorProcess) -> None:
    with _app(emulator, "GroupMember.Read.All") as client:
        assert client.get("groups").status_code == 200
        assert client.get(f"groups/{ALL_STAFF}/transitiveMembers").status_code == 200
        _error(client.get("users"), 403, "Authorization_RequestDenied")


def test_directory_read_all_reads_everything_in_the_directory(emulator: EmulatorProcess) -> None:
    with _app(emulator, "Directory.Read.All") as client:
        for path in (
            "users",
            "groups",
            f"groups/{ALL_STAFF}/members",
            "users/bob@contoso.com/memberOf",
        ):
            assert client.get(path).status_code == 200, path


def test_skip_is_not_supported_on_directory_collections(graph: httpx.Client) -> None:
    for path in ("users", "groups", f"groups/{ALL_STAFF}/members"):
        error = _error(graph.get(path, params={"$skip": "2"}), 400, "Request_BadRequest")
        assert error["message"] == "'$skip' is not supported by the service."


def test_users_orderby(graph: httpx.Client) -> None:
    names = [
        u["displayName"]
        for u in graph.get("users", params={"$orderby": "displayName"}).json()["value"]
    ]
    assert names == sorted(names, key=str.casefold)
    assert names[0] == "Alice Archer"
    desc = graph.get("users", params={"$orderby": "userPrincipalName desc"}).json()["value"]
    assert desc[0]["userPrincipalName"] == "phishing@contoso.com"
    _error(graph.get("users", params={"$orderby": "department"}), 400, "Request_UnsupportedQuery")
    # Sorting a filtered list is an advanced query.
    sorted_filter = {"$filter": "department eq 'Sales'", "$orderby": "displayName desc"}
    _error(graph.get("users", params=sorted_filter), 400, "Request_UnsupportedQuery")
    advanced = graph.get(
        "users", params={**sorted_filter, "$count": "true"}, headers=EVENTUAL
    ).json()
    assert [u["userPrincipalName"] for u in advanced["value"]] == [
        "carol@contoso.com",
        "bob@contoso.com",
    ]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("users", {"$expand": "manager"}),
        ("users/alice@contoso.com", {"$expand": "memberOf"}),
        (f"groups/{ALL_STAFF}/members", {"$filter": "startswith(displayName,'F')"}),
        (f"groups/{ALL_STAFF}/transitiveMembers", {"$search": '"displayName:f"'}),
        ("groups", {"$orderby": "displayName"}),
    ],
)
def test_query_options_the_emulator_does_not_evaluate_are_refused(
    graph: httpx.Client, path: str, params: dict[str, str]
) -> None:
    # Never silently ignored: a member list that ignored its $filter would look right.
    _error(graph.get(path, params=params), 501, "NotImplemented")
