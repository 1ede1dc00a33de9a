"""Search-as-you-type for the investigation's target users: the provider, the fragment, the
cache and the roles, against the Microsoft 365 emulator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailtrawl.accounts.models import Role
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.providers.graph.auth import ClientSecret, cloud_endpoints
from mailtrawl.providers.graph.provider import GraphProvider, GraphSettings
from mailtrawl.web.ui import investigations as ui_investigations
from mailtrawl.web.ui.investigations import DirectoryCache, DirectoryEntry
from tests.web.conftest import add_user, sign_in
from tests.web.emulated import emulated_configuration

HOSTILE_NAME = '<img src=x onerror="window.__pwned=1"> Mallory'
DIRECTORY = "/investigations/new/directory"


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> DirectoryCache:
    cache = DirectoryCache()
    monkeypatch.setattr(ui_investigations, "DIRECTORY_CACHE", cache)
    return cache


def _analyst(client: TestClient) -> str:
    return sign_in(client, add_user(client, "al", Role.ANALYST))


def _search(client: TestClient, q: str, kind: str = "users", configuration: str = "contoso") -> str:
    answer = client.get(
        DIRECTORY,
        params={"configuration": configuration, "scope_kind": kind, "q": q},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200, answer.text
    return answer.text


def _values(html: str) -> list[str]:
    return re.findall(r'data-add-scope="([^"]*)"', html)


def test_users_are_found_by_name_upn_or_address_case_insensitively(
    client: TestClient, emulator: EmulatorProcess
) -> None:
    emulated_configuration(client, emulator)
    _analyst(client)
    assert _values(_search(client, "ali")) == ["alice@contoso.com"]
    assert _values(_search(client, "ALICE A")) == ["alice@contoso.com"]  # display name
    assert _values(_search(client, "bob@")) == ["bob@contoso.com"]  # principal name
    assert "Carol Chen" in _search(client, "c")
    assert "No users start with" in _search(client, "zzz")
    # An empty box shows nothing and asks nothing.
    assert _values(_search(client, "  ")) == []


def test_at_most_twenty_sorted_and_outside_domains_left_out(
    client: TestClient, emulator: EmulatorProcess
) -> None:
    for n in range(25):
        emulator.control(
            "POST",
            "/users",
            {"userPrincipalName": f"zed{n:02d}@contoso.com", "displayName": f"Zed {n:02d}"},
        )
    emulator.control(
        "POST", "/users", {"userPrincipalName": "zeta@fabrikam.com", "displayName": "Zeta"}
    )
    emulated_configuration(client, emulator)
    _analyst(client)
    found = _values(_search(client, "ze"))
    assert len(found) == 20
    assert found == sorted(found)
    assert "zeta@fabrikam.com" not in found
    assert "the first 20" in _search(client, "zed")


def test_groups_and_departments_use_the_same_box(
    client: TestClient, emulator: EmulatorProcess
) -> None:
    emulated_configuration(client, emulator)
    _analyst(client)
    assert "Finance Team" in _search(client, "fin", kind="groups")
    assert _values(_search(client, "sa", kind="departments")) == ["Sales"]
    html = _search(client, "s", kind="departments")
    assert 'data-directory-kind="departments"' in html


def test_names_from_the_directory_are_escaped(
    client: TestClient, emulator: EmulatorProcess
) -> None:
    emulator.control(
        "POST", "/users", {"userPrincipalName": "mallory@contoso.com", "displayName": HOSTILE_NAME}
    )
    emulated_configuration(client, emulator)
    _analyst(client)
    html = _search(client, "<img")
    assert "mallory@contoso.com" in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=" in html


def test_answers_are_cached_per_configuration_and_prefix(
    client: TestClient, emulator: EmulatorProcess
) -> None:
    emulated_configuration(client, emulator)
    _analyst(client)
    before = emulator.stats()
    _search(client, "a")
    after_first = emulator.stats()
    _search(client, "a")
    _search(client, "al")  # narrowed from the complete answer for "a"
    _search(client, "ali")
    assert _requests(after_first) > _requests(before)
    assert _requests(emulator.stats()) == _requests(after_first)
    assert _values(_search(client, "ali")) == ["alice@contoso.com"]


def _requests(stats: dict[str, object]) -> int:
    """Directory requests the emulator answered (`GET /users`)."""
    by_endpoint = stats["byEndpoint"]
    assert isinstance(by_endpoint, dict)
    return int(by_endpoint.get("GET /users", 0))


def test_the_cache_expires_and_only_narrows_complete_answers() -> None:
    now = [0.0]
    cache = DirectoryCache(ttl=60.0, clock=lambda: now[0])
    alice = DirectoryEntry("Alice", "alice@x", "alice@x", ("Alice", "alice@x"))
    bob = DirectoryEntry("Bob", "bob@x", "bob@x", ("Bob", "bob@x"))
    cache.put("c1", "users", "A", [alice])
    assert cache.get("c1", "users", "al") == [alice]
    assert cache.get("c1", "users", "ab") == []
    assert cache.get("c2", "users", "al") is None  # another configuration
    assert cache.get("c1", "groups", "al") is None  # another kind
    full = [bob] * 20  # a full page: longer prefixes must ask again
    cache.put("c1", "users", "b", full)
    assert cache.get("c1", "users", "bo") is None
    now[0] = 61.0
    assert cache.get("c1", "users", "a") is None


def test_viewers_cannot_search_and_unknown_configurations_say_so(
    client: TestClient, emulator: EmulatorProcess, viewer: str
) -> None:
    emulated_configuration(client, emulator)
    refused = client.get(DIRECTORY, params={"configuration": "contoso", "q": "a"})
    assert refused.status_code == 403
    client.cookies.clear()
    _analyst(client)
    assert "Choose an enabled mail configuration first." in _search(
        client, "a", configuration="nope"
    )


def test_the_form_offers_the_search_box_with_a_debounce(
    client: TestClient, emulator: EmulatorProcess
) -> None:
    emulated_configuration(client, emulator)
    _analyst(client)
    html = client.get("/investigations/new").text
    assert 'hx-get="/investigations/new/directory"' in html
    assert 'hx-trigger="input changed delay:250ms, search"' in html
    assert 'id="directory-results"' in html
    assert " on" + "input=" not in html
    assert "<script>" not in html


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def graph_settings(emulator: EmulatorProcess) -> GraphSettings:
    """The emulator's tenant as the provider reaches it (read before the event loop runs)."""
    return GraphSettings(
        tenant=emulator.tenant_id,
        client_id=emulator.info["client_id"],
        credential=ClientSecret(emulator.info["client_secret"]),
        cloud=cloud_endpoints(
            "custom",
            authority_host=emulator.authority_host,
            graph_endpoint=emulator.authority_host,
            ca_bundle_pem=Path(str(emulator.ca_bundle)).read_text(),
        ),
        authorized_domains=("contoso.com",),
    )


@pytest.mark.anyio
async def test_the_provider_searches_users_groups_and_departments(
    graph_settings: GraphSettings,
) -> None:
    async with GraphProvider(graph_settings) as provider:
        users = await provider.search_users("o'", 20)  # a quote is escaped, not an error
        assert users == []
        users = await provider.search_users("E", 3)
        assert [u.upn for u in users] == ["erin@contoso.com"]
        assert [g.display_name for g in await provider.search_groups("s", 20)] == ["Sales Team"]
        assert await provider.search_departments("e", 20) == ["Engineering", "Executive"]
