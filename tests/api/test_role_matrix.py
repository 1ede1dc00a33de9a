"""The role matrix, walked: every /api/v1 route, every role, by API token and by session.

The expected table below names every route. A route added without a line here fails
`test_the_table_names_every_route`, so nobody ships an endpoint whose protection was not
decided; the other test then checks each route really enforces what its line says.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mailtrawl.accounts.models import Role
from tests.accounts.helpers import SignedIn, bearer, make_token, make_user, open_session

PUBLIC = "public"  # no credentials needed
SIGNED_IN = "signed-in"  # any role, writes included: one's own session and password
V, A, ADM = Role.VIEWER, Role.ANALYST, Role.ADMIN

EXPECTED: dict[tuple[str, str], str | Role] = {
    ("GET", "/api/v1/health"): PUBLIC,
    # Accounts.
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): SIGNED_IN,
    ("GET", "/api/v1/auth/me"): SIGNED_IN,
    ("POST", "/api/v1/auth/password"): SIGNED_IN,
    ("GET", "/api/v1/users"): ADM,
    ("POST", "/api/v1/users"): ADM,
    ("PATCH", "/api/v1/users/{user_id}"): ADM,
    ("GET", "/api/v1/tokens"): ADM,
    ("POST", "/api/v1/tokens"): ADM,
    ("DELETE", "/api/v1/tokens/{token_id}"): ADM,
    # Mail configurations: everyone reads (never the credential), administrators change.
    ("GET", "/api/v1/mail-configurations"): V,
    ("GET", "/api/v1/mail-configurations/{ref}"): V,
    ("POST", "/api/v1/mail-configurations"): ADM,
    ("PATCH", "/api/v1/mail-configurations/{ref}"): ADM,
    ("DELETE", "/api/v1/mail-configurations/{ref}"): ADM,
    ("POST", "/api/v1/mail-configurations/{ref}/test"): ADM,
    # Investigations.
    ("GET", "/api/v1/investigations"): V,
    ("GET", "/api/v1/investigations/query-schema"): V,
    # A POST that changes nothing: it explains how a query would run.
    ("POST", "/api/v1/investigations/explain"): V,
    ("POST", "/api/v1/investigations"): A,
    ("GET", "/api/v1/investigations/{investigation_id}"): V,
    ("GET", "/api/v1/investigations/{investigation_id}/results"): V,
    ("GET", "/api/v1/investigations/{investigation_id}/campaigns"): V,
    ("GET", "/api/v1/investigations/{investigation_id}/mailboxes"): V,
    ("GET", "/api/v1/investigations/{investigation_id}/export"): V,
    ("POST", "/api/v1/investigations/{investigation_id}/stop"): A,
    ("POST", "/api/v1/investigations/{investigation_id}/duplicate"): A,
    # Remediation: analysts act within the approval rules; administrators approve.
    ("POST", "/api/v1/investigations/{investigation_id}/actions"): A,
    ("GET", "/api/v1/investigations/{investigation_id}/actions"): V,
    ("GET", "/api/v1/actions"): V,
    ("GET", "/api/v1/actions/{action_id}"): V,
    ("GET", "/api/v1/actions/{action_id}/items"): V,
    ("GET", "/api/v1/actions/{action_id}/export"): V,
    ("POST", "/api/v1/actions/{action_id}/restore"): A,
    ("POST", "/api/v1/actions/{action_id}/approve"): ADM,
    # Administrators reject; an analyst may withdraw their own request (the service checks).
    ("POST", "/api/v1/actions/{action_id}/reject"): A,
    ("GET", "/api/v1/approvals"): V,
    ("GET", "/api/v1/vault"): ADM,
    # The audit log.
    ("GET", "/api/v1/audit"): ADM,
    ("GET", "/api/v1/audit/verify"): ADM,
    ("GET", "/api/v1/audit/export"): ADM,
    # Runtime settings: analysts read the rules they act within; administrators change them.
    ("GET", "/api/v1/settings"): A,
    ("PATCH", "/api/v1/settings"): ADM,
    # Reported emails. Submitting also admits reporter tokens (tests/reports/test_api.py).
    ("POST", "/api/v1/reports"): A,
    ("GET", "/api/v1/reports"): V,
    ("GET", "/api/v1/reports/{case_id}"): V,
    ("PATCH", "/api/v1/reports/{case_id}"): A,
    ("POST", "/api/v1/reports/{case_id}/verdict"): A,
    ("POST", "/api/v1/reports/{case_id}/notes"): A,
    ("POST", "/api/v1/reports/{case_id}/reanalyse"): A,
    ("POST", "/api/v1/reports/{case_id}/notify"): A,
    # A malware sample, even zipped with a password: not for viewers.
    ("GET", "/api/v1/reports/{case_id}/attachments/{sha256}"): A,
    ("GET", "/api/v1/reports/clusters"): V,
    ("GET", "/api/v1/reports/clusters/{cluster_id}"): V,
    ("POST", "/api/v1/reports/clusters/{cluster_id}/actions"): A,
    # What the analysis trusts and who may submit: administrators.
    ("GET", "/api/v1/reports/settings"): ADM,
    ("PATCH", "/api/v1/reports/settings"): ADM,
    ("GET", "/api/v1/reports/templates"): ADM,
    ("PUT", "/api/v1/reports/templates/{verdict}"): ADM,
    ("DELETE", "/api/v1/reports/templates/{verdict}"): ADM,
    ("GET", "/api/v1/reports/intel-lists"): ADM,
    ("POST", "/api/v1/reports/intel-lists"): ADM,
    ("DELETE", "/api/v1/reports/intel-lists/{list_id}"): ADM,
    ("GET", "/api/v1/reports/yara-rules"): ADM,
    ("POST", "/api/v1/reports/yara-rules"): ADM,
    ("DELETE", "/api/v1/reports/yara-rules/{rule_id}"): ADM,
    ("GET", "/api/v1/reports/reporter-tokens"): ADM,
    ("POST", "/api/v1/reports/reporter-tokens"): ADM,
    ("DELETE", "/api/v1/reports/reporter-tokens/{token_id}"): ADM,
}

SAFE = {"GET", "HEAD", "OPTIONS"}
SOME_ID = "00000000-0000-7000-8000-00000000a11d"


def api_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) of the application's API routes under /api/v1."""
    try:  # FastAPI >= 0.160 keeps included routers unflattened in `app.routes`
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI
        found = [(r, r.path, r.methods) for r in app.routes]
    else:
        found = [(c.original_route, c.path, c.methods) for c in iter_route_contexts(app.routes)]
    return {
        (method, path)
        for route, path, methods in found
        if isinstance(route, APIRoute) and path.startswith("/api/v1/")
        for method in methods or ()
    }


def test_the_table_names_every_route(api: TestClient) -> None:
    routes = api_routes(api.app)
    unlisted = sorted(routes - EXPECTED.keys())
    gone = sorted(EXPECTED.keys() - routes)
    assert not unlisted, (
        f"routes missing from the role matrix (decide who may call them): {unlisted}"
    )
    assert not gone, f"the role matrix lists routes that no longer exist: {gone}"
    # What the OpenAPI document shows is what the matrix covers.
    documented = {
        (method.upper(), path)
        for path, item in api.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        if path.startswith("/api/v1/")
        for method in item
    }
    assert documented == routes


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", SOME_ID, path)


def _call(api: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    api.cookies.clear()  # only the credentials given here
    return api.request(method, _url(path), headers=headers)


def _admitted(rule: str | Role, role: Role) -> bool:
    if rule in (PUBLIC, SIGNED_IN):
        return True
    assert isinstance(rule, Role)
    return role.at_least(rule)


def test_every_route_enforces_its_line(api: TestClient) -> None:
    tokens = {role: make_token(api, role) for role in Role}
    users = {role: make_user(api, f"{role.value}-user", role) for role in Role}
    signed: dict[Role, SignedIn] = {role: open_session(api, users[role]) for role in Role}
    problems: list[str] = []

    def expect(ok: bool, what: str, response: Any) -> None:
        if not ok:
            problems.append(f"{what}: {response.status_code} {response.text[:160]}")

    for (method, path), rule in sorted(EXPECTED.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        where = f"{method} {path}"
        if rule == PUBLIC:
            continue
        # No credentials, or dead ones: 401.
        for label, headers in [
            ("no credentials", {}),
            ("unknown token", bearer("mtk_not-a-token")),
            ("unknown session", {"Cookie": "mailtrawl_session=not-a-session"}),
        ]:
            response = _call(api, method, path, headers)
            expect(response.status_code == 401, f"{where} with {label} should be 401", response)
        for role in Role:
            admitted = _admitted(rule, role)
            # Logging out ends the session: give it one of its own.
            session = open_session(api, users[role]) if path.endswith("/logout") else signed[role]
            if method not in SAFE:
                # A session without its CSRF token is refused whatever the role (first:
                # the admitted logout below ends the session).
                response = _call(api, method, path, session.headers(csrf=False))
                expect(
                    response.status_code == 403
                    and response.json()["detail"] == "CSRF token missing or wrong",
                    f"{where} from a {role.value} session without CSRF should be 403",
                    response,
                )
            for via, headers in [("token", bearer(tokens[role])), ("session", session.headers())]:
                response = _call(api, method, path, headers)
                if admitted:
                    expect(
                        response.status_code not in (401, 403),
                        f"{where} should admit a {role.value} {via}",
                        response,
                    )
                else:
                    expect(
                        response.status_code == 403
                        and f"needs the {rule} role" in response.json()["detail"],
                        f"{where} should refuse a {role.value} {via} with 403",
                        response,
                    )
    assert not problems, "\n".join(problems)


def test_public_routes_need_nothing(api: TestClient) -> None:
    assert api.get("/api/v1/health").status_code == 200
    # The sign-in answers (refuses) without credentials, and needs no CSRF token.
    refused = api.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
    assert refused.status_code == 401


def test_the_viewer_writes_nothing_but_its_own_session() -> None:
    """The table itself: a viewer's only writes are signing out and changing its password."""
    viewer_writes = {
        key
        for key, rule in EXPECTED.items()
        if key[0] not in SAFE and rule in (SIGNED_IN, V, PUBLIC)
    }
    assert viewer_writes == {
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/password"),
        ("POST", "/api/v1/investigations/explain"),
    }
    admin_only = {key for key, rule in EXPECTED.items() if rule == ADM}
    for prefix in ("/api/v1/users", "/api/v1/tokens", "/api/v1/audit", "/api/v1/vault"):
        assert all(key in admin_only for key in EXPECTED if key[1].startswith(prefix))
    assert all(
        key in admin_only
        for key in EXPECTED
        if key[1].startswith("/api/v1/mail-configurations") and key[0] not in SAFE
    )
    assert ("POST", "/api/v1/actions/{action_id}/approve") in admin_only
