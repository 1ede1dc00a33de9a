"""Tokens with the real msal against the emulator: clouds, CA bundles, credentials, errors."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from mailtrawl.core import Scope, ServerQuery
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.errors import ConfigError, ProviderUnavailable
from mailtrawl.providers import registry
from mailtrawl.providers.base import Provider
from mailtrawl.providers.errors import TokenRequestFailed
from mailtrawl.providers.graph.auth import (
    CLOUDS,
    ClientCertificate,
    ClientSecret,
    auth_error,
    cloud_endpoints,
    token_claims,
)
from mailtrawl.providers.graph.provider import GraphProvider
from tests.emulator.certs import make_certificate
from tests.providers.conftest import FOUR, MakeProvider, m365_settings, new_app

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("cloud", "login", "graph"),
    [
        ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
        ("usgov-high", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
        ("usgov-dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        (
            "china",
            "https://login.partner.microsoftonline.cn",
            "https://microsoftgraph.chinacloudapi.cn",
        ),
    ],
)
def test_national_clouds(cloud: str, login: str, graph: str) -> None:
    endpoints = cloud_endpoints(cloud)
    assert endpoints.authority_host == login
    assert endpoints.graph_base == f"{graph}/v1.0"
    assert endpoints.scope == f"{graph}/.default"
    assert endpoints.well_known


def test_custom_cloud() -> None:
    custom = cloud_endpoints(
        "custom",
        authority_host="https://login.proxy.example/",
        graph_endpoint="https://graph.proxy.example/v1.0",
        ca_bundle_pem="-----BEGIN CERTIFICATE-----",
    )
    assert custom.authority_host == "https://login.proxy.example"
    assert custom.graph_base == "https://graph.proxy.example/v1.0"
    # Tokens are still for Graph's resource, whatever host serves it.
    assert custom.scope == "https://graph.microsoft.com/.default"
    assert not custom.well_known
    with pytest.raises(ConfigError, match="https"):
        cloud_endpoints("custom", authority_host="http://x", graph_endpoint="https://y")
    with pytest.raises(ConfigError, match="needs an authority host"):
        cloud_endpoints("custom", graph_endpoint="https://y")
    with pytest.raises(ConfigError, match="Unknown cloud"):
        cloud_endpoints("germany")
    assert cloud_endpoints("global") is CLOUDS["global"]
    assert cloud_endpoints("global", ca_bundle_path="/x.pem").ca_bundle_path == "/x.pem"


def test_certificate_loading_errors() -> None:
    one, other = make_certificate(), make_certificate("other")
    with pytest.raises(ConfigError, match="does not belong"):
        ClientCertificate.from_pem(one.private_key_pem, other.certificate_pem)
    with pytest.raises(ConfigError, match="not a PEM private key"):
        ClientCertificate.from_pem("nope", one.certificate_pem)
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        ClientCertificate.from_pem(one.private_key_pem, "nope")
    with pytest.raises(ConfigError, match="PFX"):
        ClientCertificate.from_pfx(b"not a pfx", "pw")


def test_msal_error_dicts_become_typed_errors() -> None:
    error = auth_error(
        {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: 1 "
            "Correlation ID: 2 Timestamp: 3",
            "error_codes": [7000215, 123],
            "correlation_id": "2",
        }
    )
    assert isinstance(error, TokenRequestFailed)
    assert error.aadsts == 7000215
    assert error.error == "invalid_client"
    assert error.description == "AADSTS7000215: Invalid client secret provided."
    assert error.correlation_id == "2"
    from_text = auth_error({"error": "x", "error_description": "AADSTS50012: bad audience"})
    assert from_text.aadsts == 50012
    assert auth_error({}).aadsts is None


def test_token_claims_are_read_without_verification() -> None:
    assert token_claims("a.eyJyb2xlcyI6WyJNYWlsLlJlYWQiXX0.c") == {"roles": ["Mail.Read"]}
    assert token_claims("garbage") == {}


def test_secrets_stay_out_of_reprs() -> None:
    secret = ClientSecret("Tst8Q~very-secret")
    cert = make_certificate()
    certificate = ClientCertificate.from_pem(cert.private_key_pem, cert.certificate_pem)
    assert "very-secret" not in repr(secret)
    assert "PRIVATE KEY" not in repr(certificate)


async def test_token_roles_and_cache(emulator: EmulatorProcess, make_m365: MakeProvider) -> None:
    # An app of this test's own: the emulator's count for it is this test's alone.
    app = new_app(emulator, dict.fromkeys(FOUR, True))
    provider = make_m365(client_id=app["clientId"], credential=ClientSecret(app["secret"]["value"]))
    first = await provider.tokens.token()
    second = await provider.tokens.token()
    assert first is second
    assert sorted(first.roles) == sorted(
        ["Directory.Read.All", "Mail.ReadWrite", "MailboxSettings.ReadWrite", "User.Read.All"]
    )
    refreshed = await provider.tokens.refresh(first.value)
    assert refreshed.value != first.value or refreshed.expires_on >= first.expires_on
    # A second refresh for the same stale token reuses the new one.
    assert await provider.tokens.refresh(first.value) is refreshed
    assert provider.tokens.requests_made == 2
    assert emulator.stats()["tokenRequestsByApp"][app["clientId"].lower()] == 2


async def test_unknown_tenant_is_aadsts_90002(make_m365: MakeProvider) -> None:
    provider = make_m365(tenant=str(uuid.uuid4()))
    with pytest.raises(TokenRequestFailed) as caught:
        await provider.tokens.token()
    assert caught.value.aadsts == 90002


@pytest.fixture
def ca_pem(emulator: EmulatorProcess) -> str:
    assert emulator.ca_bundle is not None
    return Path(emulator.ca_bundle).read_text()


async def test_a_ca_bundle_given_as_pem_text(
    emulator: EmulatorProcess, make_m365: MakeProvider, ca_pem: str
) -> None:
    cloud = cloud_endpoints(
        "custom",
        authority_host=emulator.authority_host,
        graph_endpoint=emulator.graph,
        ca_bundle_pem=ca_pem,
    )
    provider = make_m365(cloud=cloud)
    users = [u async for u in provider.list_users(Scope.all())]
    assert len(users) == 8


async def test_environment_variables_do_not_change_trust_or_routing(
    emulator: EmulatorProcess,
    make_m365: MakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("SSL_CERT_FILE", str(bogus))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    provider = make_m365()
    report = await provider.check()
    assert report.ok, [(c.name, c.message) for c in report.checks if c.status != "ok"]


async def test_an_untrusted_certificate_is_explained(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    untrusted = cloud_endpoints(
        "custom", authority_host=emulator.authority_host, graph_endpoint=emulator.graph
    )
    provider = make_m365(cloud=untrusted)
    with pytest.raises(ProviderUnavailable, match="is not trusted"):
        await provider.tokens.token()
    report = await provider.check()
    assert report.check("token").status == "failed"
    assert "is not trusted" in report.check("token").message


async def test_registry_creates_the_m365_provider(emulator: EmulatorProcess) -> None:
    assert "m365" in registry.names()
    provider = registry.create("m365", m365_settings(emulator))
    assert isinstance(provider, GraphProvider)
    assert isinstance(provider, Provider)
    async with provider:
        assert provider.capabilities.delta
        assert provider.capabilities.purge
        alice = await provider.get_mailbox("alice@contoso.com")
        assert [m async for m in provider.search(alice, ServerQuery(folders=("inbox",)))]
    with pytest.raises(ValueError, match="unknown provider"):
        registry.create("gmail", None)
    with pytest.raises(TypeError):
        registry.create("m365", object())
    with pytest.raises(ValueError, match="already registered"):
        registry.register("m365", lambda s: provider, provider.capabilities)


async def test_national_clouds_without_permanent_delete(emulator: EmulatorProcess) -> None:
    settings = m365_settings(emulator)
    from dataclasses import replace

    gov = GraphProvider(replace(settings, cloud=CLOUDS["usgov-high"]))
    assert not gov.capabilities.purge
    await gov.aclose()


async def test_no_token_or_secret_reaches_the_logs(
    emulator: EmulatorProcess, make_m365: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make_m365()
    report = await provider.check()
    token = (await provider.tokens.token()).value
    assert report.ok
    logged = caplog.text
    assert "graph GET" in logged
    assert emulator.info["client_secret"] not in logged
    assert token not in logged
    assert token[:40] not in logged
