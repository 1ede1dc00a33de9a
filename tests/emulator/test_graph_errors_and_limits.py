"""Graph's error shape, authentication failures, permissions and access policies, throttling,
injected faults and latency, and the request statistics, all through HTTPS."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.graph_assertions import assert_graph_error as _error

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@contextmanager
def _bearer(emulator: EmulatorProcess, token: str | None) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with emulator.client(base_url=emulator.graph + "/", headers=headers) as client:
        yield client


def _new_app(emulator: EmulatorProcess, *roles: str) -> tuple[str, str]:
    app = emulator.control(
        "POST", "/apps", {"displayName": "scoped", "permissions": dict.fromkeys(roles, True)}
    )
    return str(app["clientId"]), str(app["secret"]["value"])


def _claims(emulator: EmulatorProcess, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "aud": "https://graph.microsoft.com",
        "iss": f"https://sts.windows.net/{emulator.tenant_id}/",
        "tid": emulator.tenant_id,
        "appid": emulator.info["client_id"],
        "idtyp": "app",
        "roles": ["Mail.ReadWrite", "User.Read.All"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return claims


# The error shape --------------------------------------------------------------------------------


def test_error_shape_and_request_ids(graph: httpx.Client) -> None:
    sent = str(uuid.uuid4())
    response = graph.get("users/nobody@contoso.com", headers={"client-request-id": sent})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "innerError"}
    inner = body["error"]["innerError"]
    assert set(inner) >= {"date", "request-id", "client-request-id"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", inner["date"])
    assert GUID.match(inner["request-id"])
    assert inner["client-request-id"] == sent
    assert response.headers["request-id"] == inner["request-id"]
    assert response.headers["client-request-id"] == sent


def test_every_answer_carries_request_ids(graph: httpx.Client) -> None:
    first = graph.get("users/alice@contoso.com/mailFolders/inbox")
    second = graph.get("users/alice@contoso.com/mailFolders/inbox")
    assert first.status_code == second.status_code == 200
    assert GUID.match(first.headers["request-id"])
    assert first.headers["request-id"] != second.headers["request-id"]
    # Without a client-request-id of its own, the client gets the request-id in its place.
    assert first.headers["client-request-id"] == first.headers["request-id"]
    error = graph.get("users/nobody@contoso.com/messages").json()["error"]["innerError"]
    assert error["client-request-id"] == error["request-id"]
    echoed = graph.get(
        "users/alice@contoso.com/mailFolders/inbox", headers={"client-request-id": "my-id-1"}
    )
    assert echoed.headers["client-request-id"] == "my-id-1"


def test_routing_errors(graph: httpx.Client) -> None:
    error = _error(graph.get("users/alice@contoso.com/nonsense"), 400, "BadRequest")
    assert "nonsense" in error["message"]
    _error(graph.put("users/alice@contoso.com/messages", json={}), 405, "Request_BadRequest")
    _error(
        graph.get("users/alice@contoso.com/messages?$top=1&$top=2"),
        400,
        "BadRequest",
    )


# Authentication ---------------------------------------------------------------------------------


def _assert_401(response: httpx.Response) -> dict[str, Any]:
    error = _error(response, 401, "InvalidAuthenticationToken")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'client_id="00000003-0000-0000-c000-000000000000"' in challenge
    return error


def test_a_missing_token_is_401(emulator: EmulatorProcess) -> None:
    with _bearer(emulator, None) as client:
        _assert_401(client.get("users"))
        _assert_401(client.get("users/alice@contoso.com/messages"))
        _assert_401(client.get("users", headers={"Authorization": "Bearer"}))
        _assert_401(client.get("users", headers={"Authorization": "Basic dXNlcjpwdw=="}))


def test_a_malformed_token_is_401(emulator: EmulatorProcess) -> None:
    with _bearer(emulator, "not-a-jwt") as client:
        _assert_401(client.get("users"))


def test_a_token_signed_by_another_key_is_401(emulator: EmulatorProcess) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(emulator), stranger, algorithm="RS256")
    with _bearer(emulator, forged) as client:
        _assert_401(client.get("users"))
        _assert_401(client.get("users/alice@contoso.com/messages"))


def test_unsigned_and_symmetric_tokens_are_401(emulator: EmulatorProcess) -> None:
    unsigned = jwt.encode(_claims(emulator), None, algorithm="none")
    # The classic confusion attack: HMAC keyed with the (public) verification key.
    symmetric = jwt.encode(
        _claims(emulator), "a-shared-secret-long-enough-for-hmac-sha256", algorithm="HS256"
    )
    for token in (unsigned, symmetric):
        with _bearer(emulator, token) as client:
            _assert_401(client.get("users"))


def test_an_expired_token_is_401_and_a_fresh_one_works(emulator: EmulatorProcess) -> None:
    token = emulator.token()
    with _bearer(emulator, token) as client:
        assert client.get("users").status_code == 200
        emulator.control("POST", "/clock", {"advanceSeconds": 4000})
        error = _assert_401(client.get("users"))
        assert error["message"] == "Access token has expired or is not yet valid."
        _assert_401(client.get("users/alice@contoso.com/messages"))
    with _bearer(emulator, emulator.token()) as fresh:
        assert fresh.get("users").status_code == 200


def test_revoked_tokens_are_401(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    assert graph.get("users").status_code == 200
    emulator.control("POST", "/tokens/revoke")
    _assert_401(graph.get("users"))


# Permissions ------------------------------------------------------------------------------------


def test_revoked_permission_applies_to_the_next_token(emulator: EmulatorProcess) -> None:
    before = emulator.token()
    emulator.control(
        "POST", f"/apps/{emulator.info['client_id']}/permissions", {"revoke": ["Mail.ReadWrite"]}
    )
    after = emulator.token()
    roles = jwt.decode(after, options={"verify_signature": False})["roles"]
    assert "Mail.ReadWrite" not in roles
    with _bearer(emulator, after) as client:
        _error(client.get("users/alice@contoso.com/messages"), 403, "ErrorAccessDenied")
        assert client.get("users").status_code == 200
    # A token issued before the change keeps the roles it carries until it expires.
    with _bearer(emulator, before) as client:
        assert client.get("users/alice@contoso.com/messages").status_code == 200


def test_unconsented_and_regranted_permissions(emulator: EmulatorProcess) -> None:
    client_id = emulator.info["client_id"]
    emulator.control("POST", f"/apps/{client_id}/permissions", {"unconsent": ["User.Read.All"]})
    emulator.control(
        "POST", f"/apps/{client_id}/permissions", {"unconsent": ["Directory.Read.All"]}
    )
    with _bearer(emulator, emulator.token()) as client:
        _error(client.get("users"), 403, "Authorization_RequestDenied")
    emulator.control("POST", f"/apps/{client_id}/permissions", {"grant": ["User.Read.All"]})
    with _bearer(emulator, emulator.token()) as client:
        assert client.get("users").status_code == 200


def test_an_app_with_no_roles_gets_403_everywhere(emulator: EmulatorProcess) -> None:
    client_id, secret = _new_app(emulator)
    with _bearer(emulator, emulator.token(client_id, secret)) as client:
        _error(client.get("users"), 403, "Authorization_RequestDenied")
        _error(client.get("users/alice@contoso.com/messages"), 403, "ErrorAccessDenied")
        _error(client.get("users/alice@contoso.com/mailboxSettings"), 403, "ErrorAccessDenied")


def test_application_access_policy_restricts_the_app_to_a_group(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.control(
        "PUT",
        "/access-policies",
        [{"appId": emulator.info["client_id"], "group": "Finance Team", "mode": "RestrictAccess"}],
    )
    assert graph.get("users/alice@contoso.com/messages").status_code == 200
    for path in (
        "users/bob@contoso.com/messages",
        "users/erin@contoso.com/mailFolders/inbox",
        "users/erin@contoso.com/mailboxSettings",
    ):
        error = _error(graph.get(path), 403, "ErrorAccessDenied")
        assert "AccessPolicy" in error["message"]
    # The directory is not covered by the policy.
    assert graph.get("users/bob@contoso.com").status_code == 200
    # Another app is not restricted by this app's policy.
    client_id, secret = _new_app(emulator, "Mail.Read")
    with _bearer(emulator, emulator.token(client_id, secret)) as other:
        assert other.get("users/bob@contoso.com/messages").status_code == 200
    emulator.control("PUT", "/access-policies", [])
    assert graph.get("users/bob@contoso.com/messages").status_code == 200


def test_application_access_policy_deny_mode(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.control(
        "PUT",
        "/access-policies",
        [{"appId": emulator.info["client_id"], "group": "Sales Team", "mode": "DenyAccess"}],
    )
    _error(graph.get("users/bob@contoso.com/messages"), 403, "ErrorAccessDenied")
    _error(graph.get("users/carol@contoso.com/messages"), 403, "ErrorAccessDenied")
    assert graph.get("users/alice@contoso.com/messages").status_code == 200


# Throttling -------------------------------------------------------------------------------------


async def _fire(
    emulator: EmulatorProcess,
    token: str,
    paths: list[str],
    *,
    honour_retry_after: bool = False,
) -> list[httpx.Response]:
    """Send every path at once; a well-behaved caller retries each 429 after its Retry-After."""
    async with httpx.AsyncClient(
        verify=emulator.verify,
        trust_env=False,
        timeout=30,
        base_url=emulator.graph + "/",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:

        async def one(path: str) -> httpx.Response:
            for _ in range(30):
                response = await client.get(path)
                if response.status_code != 429 or not honour_retry_after:
                    return response
                await asyncio.sleep(float(response.headers["Retry-After"]))
            raise AssertionError("still throttled after 30 attempts")

        return list(await asyncio.gather(*(one(p) for p in paths)))


def test_more_than_four_concurrent_requests_on_one_mailbox_are_throttled(
    emulator: EmulatorProcess,
) -> None:
    emulator.settings(faults={"latency_ms": 300})
    responses = asyncio.run(
        _fire(emulator, emulator.token(), ["users/alice@contoso.com/messages?$top=1"] * 8)
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}
    assert statuses.count(200) >= 4
    for response in responses:
        if response.status_code == 429:
            error = _error(response, 429, "ApplicationThrottled")
            assert error["message"] == "Application is over its MailboxConcurrency limit."
            assert float(response.headers["Retry-After"]) > 0
    stats = emulator.stats()
    assert stats["peakMailboxInFlight"] == 4
    assert stats["throttled"] == statuses.count(429)
    assert stats["byStatus"]["429"] == statuses.count(429)


def test_a_client_that_honours_retry_after_completes(emulator: EmulatorProcess) -> None:
    emulator.settings(faults={"latency_ms": 150}, limits={"concurrency_retry_after": 0.2})
    responses = asyncio.run(
        _fire(
            emulator,
            emulator.token(),
            ["users/alice@contoso.com/mailFolders/inbox"] * 8,
            honour_retry_after=True,
        )
    )
    assert [r.status_code for r in responses] == [200] * 8
    stats = emulator.stats()
    assert stats["throttled"] >= 1
    assert stats["peakMailboxInFlight"] <= 4


def test_concurrency_is_counted_per_mailbox_and_per_app(emulator: EmulatorProcess) -> None:
    emulator.settings(faults={"latency_ms": 300})
    token = emulator.token()
    client_id, secret = _new_app(emulator, "Mail.Read")
    other_token = emulator.token(client_id, secret)

    async def scenario() -> list[httpx.Response]:
        return [
            r
            for group in await asyncio.gather(
                _fire(emulator, token, ["users/alice@contoso.com/mailFolders/inbox"] * 4),
                _fire(emulator, token, ["users/bob@contoso.com/mailFolders/inbox"] * 4),
                _fire(emulator, other_token, ["users/alice@contoso.com/mailFolders/inbox"] * 4),
            )
            for r in group
        ]

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 12
    assert emulator.stats()["throttled"] == 0


def test_the_per_window_request_limit(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    emulator.settings(limits={"mailbox_requests_per_window": 5})
    for _ in range(5):
        assert graph.get("users/alice@contoso.com/mailFolders/inbox").status_code == 200
    sixth = graph.get("users/alice@contoso.com/messages")
    _error(sixth, 429, "ApplicationThrottled")
    assert float(sixth.headers["Retry-After"]) >= 1
    # Other mailboxes, other apps and the directory have their own budgets.
    assert graph.get("users/bob@contoso.com/mailFolders/inbox").status_code == 200
    assert graph.get("users").status_code == 200
    client_id, secret = _new_app(emulator, "Mail.Read")
    with _bearer(emulator, emulator.token(client_id, secret)) as other:
        assert other.get("users/alice@contoso.com/mailFolders/inbox").status_code == 200
    assert emulator.stats()["throttled"] == 1


def test_the_app_wide_request_rate(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    emulator.settings(limits={"app_requests_per_second": 3})
    statuses = []
    for i in range(8):
        path = "users" if i % 2 else f"users/{['alice', 'bob'][i % 4 // 2]}@contoso.com/messages"
        response = graph.get(path)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert float(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"]
    assert 429 in statuses
    assert statuses[:3] == [200, 200, 200]
    client_id, secret = _new_app(emulator, "User.Read.All")
    with _bearer(emulator, emulator.token(client_id, secret)) as other:
        assert other.get("users").status_code == 200


# Faults and latency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code", "retry_after"),
    [
        ("rate_429", 429, "TooManyRequests", True),
        ("rate_503", 503, "serviceNotAvailable", True),
        ("rate_504", 504, "UnknownError", False),
    ],
)
def test_injected_failures(
    emulator: EmulatorProcess,
    graph: httpx.Client,
    fault: str,
    status: int,
    code: str,
    retry_after: bool,
) -> None:
    emulator.settings(faults={fault: 1.0, "retry_after": 3})
    for path in ("users/alice@contoso.com/messages", "users"):
        response = graph.get(path)
        _error(response, status, code)
        if retry_after:
            assert response.headers["Retry-After"] == "3"
        else:
            assert "Retry-After" not in response.headers
    # The identity platform and the control plane are not subject to Graph faults.
    assert emulator.token()
    stats = emulator.stats()
    assert stats["injectedFaults"][str(status)] == 2
    emulator.settings(faults={fault: 0.0})
    assert graph.get("users").status_code == 200


def test_injected_reset_drops_the_connection(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.settings(faults={"rate_reset": 1.0})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
        graph.get("users/alice@contoso.com/messages")
    assert emulator.stats()["injectedFaults"]["reset"] == 1
    emulator.settings(faults={"rate_reset": 0.0})
    with _bearer(emulator, emulator.token()) as fresh:
        assert fresh.get("users/alice@contoso.com/messages").status_code == 200


def test_lost_answer_fault_carries_the_request_out_then_drops_the_connection(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    inbox = graph.get("users/alice@contoso.com/mailFolders/inbox/messages").json()["value"]
    message_id = inbox[0]["id"]
    emulator.settings(faults={"rate_reset_after": 1.0})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
        graph.post(
            f"users/alice@contoso.com/messages/{message_id}/move",
            json={"destinationId": "junkemail"},
        )
    assert emulator.stats()["injectedFaults"]["reset_after"] == 1
    emulator.settings(faults={"rate_reset_after": 0.0})
    # The move happened although its answer was lost.
    folders = {
        f["wellKnownName"]: [m["subject"] for m in f["messages"]]
        for f in emulator.snapshot("alice@contoso.com")["folders"]
    }
    assert inbox[0]["subject"] in folders["junkemail"]


def test_fault_rates_are_a_fraction(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    emulator.settings(faults={"rate_503": 0.5, "seed": 7})
    statuses = [graph.get("users").status_code for _ in range(40)]
    assert set(statuses) == {200, 503}
    assert 8 <= statuses.count(503) <= 32


def test_latency_is_applied(emulator: EmulatorProcess, graph: httpx.Client) -> None:
    graph.get("users")  # the connection is open before timing
    emulator.settings(faults={"latency_ms": 250})
    for path in ("users/alice@contoso.com/mailFolders/inbox", "users"):
        started = time.perf_counter()
        assert graph.get(path).status_code == 200
        assert time.perf_counter() - started >= 0.25
    emulator.settings(faults={"latency_ms": 0})
    started = time.perf_counter()
    assert graph.get("users").status_code == 200
    assert time.perf_counter() - started < 0.25


def test_settings_are_validated(emulator: EmulatorProcess) -> None:
    with emulator.client() as client:
        response = client.patch(
            f"{emulator.info['control_url']}/settings",
            json={"faults": {"rate_9000": 1}},
            headers={"Authorization": f"Bearer {emulator.info['control_token']}"},
        )
        assert response.status_code == 400
        unauthorised = client.get(f"{emulator.info['control_url']}/stats")
        assert unauthorised.status_code == 401


# Statistics -------------------------------------------------------------------------------------


def test_statistics_by_endpoint_mailbox_status_and_app(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.control("DELETE", "/stats")
    graph.get("users/alice@contoso.com/messages")
    graph.get("users/Alice@contoso.com/messages")
    graph.get("users/bob@contoso.com/mailFolders/inbox")
    graph.get("users/nobody@contoso.com/messages")
    graph.get("users/dave@contoso.com/messages")
    graph.get("users")
    graph.get("users/alice@contoso.com/nonsense")
    stats = emulator.stats()
    assert stats["total"] == 7
    assert stats["byEndpoint"]["GET /users/{user}/messages"] == 4
    assert stats["byEndpoint"]["GET /users/{user}/mailFolders/{folder}"] == 1
    assert stats["byEndpoint"]["GET /users"] == 1
    assert stats["byMailbox"]["alice@contoso.com"] == 2
    assert stats["byMailbox"]["bob@contoso.com"] == 1
    assert stats["byStatus"] == {"200": 4, "400": 1, "404": 2}
    assert stats["byApp"][emulator.info["client_id"]] == 7 - 1  # the unrouted one has no app
    assert stats["throttled"] == 0
    emulator.control("DELETE", "/stats")
    assert emulator.stats()["total"] == 0


def test_the_window_reopens_after_retry_after(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.settings(limits={"mailbox_requests_per_window": 2, "mailbox_window_seconds": 1})
    assert graph.get("users/alice@contoso.com/mailFolders/inbox").status_code == 200
    assert graph.get("users/alice@contoso.com/mailFolders/inbox").status_code == 200
    third = graph.get("users/alice@contoso.com/mailFolders/inbox")
    _error(third, 429, "ApplicationThrottled")
    time.sleep(float(third.headers["Retry-After"]))
    assert graph.get("users/alice@contoso.com/mailFolders/inbox").status_code == 200


def test_the_app_rate_recovers_after_retry_after(
    emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    emulator.settings(limits={"app_requests_per_second": 2})
    statuses = [graph.get("users").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = graph.get("users")
    assert refused.status_code == 429
    time.sleep(float(refused.headers["Retry-After"]))
    assert graph.get("users").status_code == 200
