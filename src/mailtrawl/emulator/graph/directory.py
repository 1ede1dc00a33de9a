"""Users and groups: list, get, members, transitive members and memberOf."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from mailtrawl.emulator.errors import GraphError
from mailtrawl.emulator.graph.core import (
    GROUPS_READ,
    MEMBER_OF_READ,
    ROUTER,
    USERS_READ,
    GraphRequest,
    GraphResponse,
    ok,
    parse_select,
    parse_top,
    refuse_unmodelled,
)
from mailtrawl.emulator.graph.paging import encode_token, skiptoken_offset
from mailtrawl.emulator.query.odata import QueryError, compile_user_filter, parse_filter
from mailtrawl.emulator.runtime import EmulatorState
from mailtrawl.emulator.state import Group, User

USER_DEFAULT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
_USER_PROPS: dict[str, Callable[[User], Any]] = {
    "id": lambda u: u.id,
    "businessPhones": lambda u: [],
    "displayName": lambda u: u.display_name,
    "givenName": lambda u: u.given_name,
    "jobTitle": lambda u: u.job_title,
    "mail": lambda u: u.mail,
    "mobilePhone": lambda u: None,
    "officeLocation": lambda u: u.office_location,
    "preferredLanguage": lambda u: "en-US",
    "surname": lambda u: u.surname,
    "userPrincipalName": lambda u: u.user_principal_name,
    "department": lambda u: u.department,
    "accountEnabled": lambda u: u.account_enabled,
    "createdDateTime": lambda u: u.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "userType": lambda u: "Member",
    "mailNickname": lambda u: u.user_principal_name.split("@")[0],
    "proxyAddresses": lambda u: [f"SMTP:{u.mail}"] if u.mail else [],
    "companyName": lambda u: None,
    "employeeId": lambda u: None,
    "onPremisesSyncEnabled": lambda u: None,
    "usageLocation": lambda u: "US",
    "assignedLicenses": lambda u: (
        [{"disabledPlans": [], "skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900"}]
        if u.has_mailbox
        else []
    ),
}
_USER_PROPS_LOWER = {k.lower(): k for k in _USER_PROPS}

GROUP_DEFAULT = (
    "id",
    "displayName",
    "description",
    "mail",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "groupTypes",
    "createdDateTime",
    "visibility",
)
_GROUP_PROPS: dict[str, Callable[[Group], Any]] = {
    "id": lambda g: g.id,
    "displayName": lambda g: g.display_name,
    "description": lambda g: g.description,
    "mail": lambda g: g.mail,
    "mailEnabled": lambda g: g.mail_enabled,
    "mailNickname": lambda g: (g.mail or g.display_name).split("@")[0].replace(" ", ""),
    "securityEnabled": lambda g: g.security_enabled,
    "groupTypes": lambda g: list(g.group_types),
    "createdDateTime": lambda g: "2024-01-01T00:00:00Z",
    "visibility": lambda g: "Private" if "Unified" in g.group_types else None,
}
_GROUP_PROPS_LOWER = {k.lower(): k for k in _GROUP_PROPS}


def _select(
    select: list[str] | None, default: Sequence[str], known: dict[str, str], kind: str
) -> list[str]:
    if select is None:
        return list(default)
    out = []
    for name in select:
        canonical = known.get(name.lower())
        if canonical is None:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.{kind}'.",
            )
        if canonical not in out:
            out.append(canonical)
    # Unlike Outlook, the directory returns only what was selected: no implicit `id`.
    return out


def user_json(user: User, props: Sequence[str], typed: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.type": "#microsoft.graph.user"} if typed else {}
    for p in props:
        body[p] = _USER_PROPS[p](user)
    return body


def group_json(group: Group, props: Sequence[str], typed: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.type": "#microsoft.graph.group"} if typed else {}
    for p in props:
        body[p] = _GROUP_PROPS[p](group)
    return body


def _advanced(request: GraphRequest) -> bool:
    return (request.header("consistencylevel") or "").lower() == "eventual"


def _advanced_filter(request: GraphRequest) -> bool:
    """Advanced `$filter`/`$orderby` need the header and `$count=true` (only `$search` does not)."""
    counted = request.query.get("$count", "").lower() == "true" or request.path.endswith("/$count")
    return _advanced(request) and counted


def _query_error(exc: QueryError) -> GraphError:
    return GraphError(exc.status, exc.code, exc.message)


_SEARCH_CLAUSE = re.compile(r'"([A-Za-z]+):([^"]*)"')


def _user_search(request: GraphRequest) -> Callable[[User], bool] | None:
    raw = request.query.get("$search")
    if raw is None:
        return None
    if not _advanced(request):
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
        )
    clauses = _SEARCH_CLAUSE.findall(raw)
    if not clauses:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Syntax error: character '\"' is not valid at position 0 in '$search'.",
        )
    ops = re.findall(r'"\s+(AND|OR)\s+"', raw)
    tests: list[Callable[[User], bool]] = []
    for prop, value in clauses:
        canonical = _USER_PROPS_LOWER.get(prop.lower())
        if canonical not in (
            "displayName",
            "mail",
            "userPrincipalName",
            "givenName",
            "surname",
            "jobTitle",
            "department",
        ):
            raise GraphError(
                400, "Request_UnsupportedQuery", f"Unsupported property '{prop}' for $search."
            )
        needle = value.lower()
        getter = _USER_PROPS[canonical]

        def test(user: User, getter: Callable[[User], Any] = getter, needle: str = needle) -> bool:
            text = str(getter(user) or "").lower()
            # Directory $search is tokenized: a term matches the start of a word.
            return any(
                tok.startswith(needle) for tok in re.split(r"[\s@._-]+", text)
            ) or text.startswith(needle)

        tests.append(test)

    def combined(user: User) -> bool:
        result = tests[0](user)
        for op, t in zip(ops, tests[1:], strict=False):
            result = (result and t(user)) if op == "AND" else (result or t(user))
        return result

    return combined


# Query options every directory collection here evaluates ($skip: to refuse it as Graph does).
_PAGED = ("$select", "$top", "$skiptoken", "$skip", "$count")


def _page(
    request: GraphRequest,
    state: EmulatorState,
    items: list[Any],
    render: Callable[[Any], dict[str, Any]],
    context: str,
) -> GraphResponse:
    if "$skip" in request.query:
        # Directory collections page only by $skiptoken.
        raise GraphError(400, "Request_BadRequest", "'$skip' is not supported by the service.")
    top = parse_top(request, default=100, maximum=999, directory=True)
    offset = skiptoken_offset(state.delta_secret, request.query.get("$skiptoken"))
    page = items[offset : offset + top]
    body: dict[str, Any] = {"@odata.context": f"{request.base_url}/v1.0/$metadata#{context}"}
    count = request.query.get("$count", "").lower()
    if count == "true":
        if not _advanced(request):
            raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")
        if offset == 0:
            body["@odata.count"] = len(items)
    if offset + top < len(items):
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = encode_token(state.delta_secret, {"o": offset + top})
        body["@odata.nextLink"] = request.url(request.path.split("/v1.0/", 1)[1], query)
    body["value"] = [render(item) for item in page]
    return ok(body)


def _filtered_users(request: GraphRequest, state: EmulatorState) -> list[User]:
    users = list(state.tenant.users.values())
    raw_filter = request.query.get("$filter")
    if raw_filter is not None:
        try:
            predicate = compile_user_filter(
                parse_filter(raw_filter), advanced=_advanced_filter(request)
            )
        except QueryError as exc:
            raise _query_error(exc) from exc
        users = [u for u in users if predicate(u)]
    search = _user_search(request)
    if search is not None:
        users = [u for u in users if search(u)]
    orderby = request.query.get("$orderby")
    if orderby:
        prop, _, direction = orderby.strip().partition(" ")
        canonical = _USER_PROPS_LOWER.get(prop.lower())
        if canonical not in ("displayName", "userPrincipalName"):
            raise GraphError(
                400, "Request_UnsupportedQuery", "Sorting not supported for current query."
            )
        if raw_filter is not None and not _advanced_filter(request):
            raise GraphError(
                400, "Request_UnsupportedQuery", "Sorting not supported for current query."
            )
        users.sort(
            key=lambda u: str(_USER_PROPS[canonical](u) or "").lower(),
            reverse=direction.strip().lower() == "desc",
        )
    return users


@ROUTER.add("GET", "users", USERS_READ, "directory")
def list_users(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, *_PAGED, "$filter", "$search", "$orderby")
    props = _select(parse_select(request), USER_DEFAULT, _USER_PROPS_LOWER, "user")
    users = _filtered_users(request, state)
    return _page(request, state, users, lambda u: user_json(u, props), "users")


@ROUTER.add("GET", "users/$count", USERS_READ, "directory")
def count_users(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, "$filter", "$search")
    if not _advanced(request):
        raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")
    users = _filtered_users(request, state)
    return GraphResponse(
        200, None, {}, raw=str(len(users)).encode(), content_type="text/plain;charset=utf-8"
    )


def _user_or_404(state: EmulatorState, ref: str) -> User:
    user = state.tenant.user(ref)
    if user is None:
        raise GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{ref}' does not exist or one of its queried reference-property objects are not present.",
        )
    return user


@ROUTER.add("GET", "users/{user}", USERS_READ, "directory")
def get_user(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, "$select")
    props = _select(parse_select(request), USER_DEFAULT, _USER_PROPS_LOWER, "user")
    user = _user_or_404(state, request.params["user"])
    body = {
        "@odata.context": f"{request.base_url}/v1.0/$metadata#users/$entity",
        **user_json(user, props),
    }
    return ok(body)


def _group_or_404(state: EmulatorState, ref: str) -> Group:
    group = state.tenant.groups.get(ref)
    if group is None:
        raise GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{ref}' does not exist or one of its queried reference-property objects are not present.",
        )
    return group


_GROUP_FILTER = re.compile(
    r"^\s*(displayName|mail|mailNickname|securityEnabled|mailEnabled|id)\s+eq\s+('((?:[^']|'')*)'|true|false)\s*$"
    r"|^\s*startswith\(\s*(displayName|mail)\s*,\s*'((?:[^']|'')*)'\s*\)\s*$",
    re.IGNORECASE,
)


def _group_filter(raw: str) -> Callable[[Group], bool]:
    """The group filters a scope resolver needs: equality and startswith on a few properties."""
    match = _GROUP_FILTER.match(raw)
    if match is None:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Unsupported or invalid query filter clause specified for property of resource 'Group'.",
        )
    if match.group(1):
        prop = _GROUP_PROPS_LOWER[match.group(1).lower()]
        literal = match.group(2)
        if literal.lower() in ("true", "false"):
            wanted: Any = literal.lower() == "true"
            return lambda g: _GROUP_PROPS[prop](g) is wanted
        value = match.group(3).replace("''", "'").lower()
        return lambda g: str(_GROUP_PROPS[prop](g) or "").lower() == value
    prop = _GROUP_PROPS_LOWER[match.group(4).lower()]
    prefix = match.group(5).replace("''", "'").lower()
    return lambda g: str(_GROUP_PROPS[prop](g) or "").lower().startswith(prefix)


@ROUTER.add("GET", "groups", GROUPS_READ, "directory")
def list_groups(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, *_PAGED, "$filter")
    props = _select(parse_select(request), GROUP_DEFAULT, _GROUP_PROPS_LOWER, "group")
    groups = list(state.tenant.groups.values())
    raw = request.query.get("$filter")
    if raw is not None:
        predicate = _group_filter(raw)
        groups = [g for g in groups if predicate(g)]
    return _page(request, state, groups, lambda g: group_json(g, props), "groups")


@ROUTER.add("GET", "groups/{group}", GROUPS_READ, "directory")
def get_group(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, "$select")
    props = _select(parse_select(request), GROUP_DEFAULT, _GROUP_PROPS_LOWER, "group")
    group = _group_or_404(state, request.params["group"])
    return ok(
        {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#groups/$entity",
            **group_json(group, props),
        }
    )


def _render_member(request: GraphRequest) -> Callable[[User | Group], dict[str, Any]]:
    """Members are mixed users and groups: `$select` applies to whichever has the property."""
    select = parse_select(request)
    if select is None:
        user_props, group_props = list(USER_DEFAULT), list(GROUP_DEFAULT)
    else:
        user_props = [
            _USER_PROPS_LOWER[s.lower()] for s in select if s.lower() in _USER_PROPS_LOWER
        ]
        group_props = [
            _GROUP_PROPS_LOWER[s.lower()] for s in select if s.lower() in _GROUP_PROPS_LOWER
        ]

    def render(obj: User | Group) -> dict[str, Any]:
        if isinstance(obj, User):
            return user_json(obj, user_props, typed=True)
        return group_json(obj, group_props, typed=True)

    return render


def _members(state: EmulatorState, group: Group) -> list[User | Group]:
    out: list[User | Group] = []
    for mid in group.member_ids:
        found: User | Group | None = state.tenant.users.get(mid) or state.tenant.groups.get(mid)
        if found is not None:
            out.append(found)
    return out


@ROUTER.add("GET", "groups/{group}/members", GROUPS_READ, "directory")
def list_members(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, *_PAGED)
    group = _group_or_404(state, request.params["group"])
    return _page(
        request, state, _members(state, group), _render_member(request), "directoryObjects"
    )


@ROUTER.add("GET", "groups/{group}/transitiveMembers", GROUPS_READ, "directory")
def list_transitive_members(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, *_PAGED)
    group = _group_or_404(state, request.params["group"])
    return _page(
        request, state, state.transitive_members(group), _render_member(request), "directoryObjects"
    )


@ROUTER.add("GET", "users/{user}/memberOf", MEMBER_OF_READ, "directory")
def list_member_of(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, *_PAGED)
    user = _user_or_404(state, request.params["user"])
    groups: list[User | Group] = list(state.member_of(user.id))
    return _page(request, state, groups, _render_member(request), "directoryObjects")


@ROUTER.add("GET", "users/{user}/transitiveMemberOf", MEMBER_OF_READ, "directory")
def list_transitive_member_of(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, *_PAGED)
    user = _user_or_404(state, request.params["user"])
    seen: dict[str, Group] = {}
    frontier = [user.id]
    while frontier:
        oid = frontier.pop()
        for group in state.member_of(oid):
            if group.id not in seen:
                seen[group.id] = group
                frontier.append(group.id)
    return _page(request, state, list(seen.values()), _render_member(request), "directoryObjects")
