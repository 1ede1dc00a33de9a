"""The connection test of a stored configuration, run through its provider."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mailtrawl.configurations.credentials import ClientCredential
from mailtrawl.errors import ConfigError
from mailtrawl.providers import registry
from mailtrawl.providers.base import Provider
from mailtrawl.providers.graph.auth import ClientCertificate, ClientSecret, cloud_endpoints
from mailtrawl.providers.graph.checks import run_checks
from mailtrawl.providers.graph.provider import GraphProvider, GraphSettings
from mailtrawl.providers.retry import RetryPolicy
from mailtrawl.storage.models import CredentialKind, MailConfiguration


def graph_settings(
    record: MailConfiguration, credential: ClientCredential, *, retry: RetryPolicy | None = None
) -> GraphSettings:
    """What the Microsoft 365 provider needs, from a stored configuration and its credential."""
    cred: ClientSecret | ClientCertificate
    if credential.kind is CredentialKind.SECRET:
        cred = ClientSecret(credential.client_secret or "", expires_at=record.credential_expires_at)
    else:
        cred = ClientCertificate.from_pem(
            credential.private_key_pem or "", credential.certificate_pem or ""
        )
    cloud = cloud_endpoints(
        record.cloud,
        authority_host=record.authority_host,
        graph_endpoint=record.graph_endpoint,
        ca_bundle_pem=record.ca_bundle_pem,
    )
    settings = GraphSettings(
        tenant=record.tenant,
        client_id=record.client_id,
        credential=cred,
        cloud=cloud,
        test_mailbox=record.test_mailbox,
        authorized_domains=tuple(record.authorized_domains or ()),
    )
    return settings if retry is None else replace(settings, retry=retry)


async def run_connection_test(
    record: MailConfiguration, credential: ClientCredential, new_configuration: bool
) -> dict[str, Any]:
    """Every check of the connection test, as stored in `last_test_result`."""
    if record.provider != "m365":
        raise ConfigError(f"No connection test for provider '{record.provider}'.")
    provider = GraphProvider(graph_settings(record, credential))
    try:
        report = await run_checks(
            provider, new_configuration=new_configuration, test_mailbox=record.test_mailbox
        )
    finally:
        await provider.aclose()
    return {
        "ok": report.ok,
        "duration_ms": report.duration_ms,
        "checks": [c.as_dict() for c in report.checks],
    }


def open_provider(
    record: MailConfiguration, credential: ClientCredential, *, retry: RetryPolicy | None = None
) -> Provider:
    """The provider of a stored configuration (not entered yet: use `async with`)."""
    if record.provider != "m365":
        raise ConfigError(f"No provider '{record.provider}' is installed.")
    return registry.create("m365", graph_settings(record, credential, retry=retry))
