"""The connection test of a stored configuration, run through its provider.

The test creates the warning category in the test mailbox, so it uses the category the
warn action will use: the runtime settings' override when an administrator set one
(`settings_store.effective_settings`), else the environment's default.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy.orm import object_session

from mailtrawl.config import Settings, load_settings
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
    record: MailConfiguration,
    credential: ClientCredential,
    *,
    retry: RetryPolicy | None = None,
    warning_category: str | None = None,
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
    if warning_category:
        settings = replace(settings, warning_category=warning_category)
    return settings if retry is None else replace(settings, retry=retry)


def effective_warning_category(record: MailConfiguration, settings: Settings | None) -> str:
    """The warning category in force: the runtime override (read through the session that
    holds `record`) over `settings` (the environment's; read now when not given)."""
    from mailtrawl.settings_store.service import effective_settings

    base = settings if settings is not None else load_settings()
    session = object_session(record)
    if session is None:
        return base.warning_category
    return effective_settings(session, base).warning_category


async def run_connection_test(
    record: MailConfiguration,
    credential: ClientCredential,
    new_configuration: bool,
    *,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Every check of the connection test, as stored in `last_test_result`.

    `settings` are the application's (environment and TOML); the warning category the
    test creates is the effective one (see `effective_warning_category`).
    """
    if record.provider != "m365":
        raise ConfigError(f"No connection test for provider '{record.provider}'.")
    category = effective_warning_category(record, settings)
    provider = GraphProvider(graph_settings(record, credential, warning_category=category))
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


def connection_test(
    settings: Settings,
) -> Callable[[MailConfiguration, ClientCredential, bool], Awaitable[dict[str, Any]]]:
    """`run_connection_test` bound to the application's settings, as `test_configuration`
    takes it (`runner=connection_test(ctx.settings)`)."""
    return partial(run_connection_test, settings=settings)


def open_provider(
    record: MailConfiguration, credential: ClientCredential, *, retry: RetryPolicy | None = None
) -> Provider:
    """The provider of a stored configuration (not entered yet: use `async with`)."""
    if record.provider != "m365":
        raise ConfigError(f"No provider '{record.provider}' is installed.")
    return registry.create("m365", graph_settings(record, credential, retry=retry))
