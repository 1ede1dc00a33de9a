"""Mail configurations: create, read, update, delete, and the connection test.

Keyword-only functions over a SQLAlchemy session; the API, the CLI and (later) the dashboard
call these and nothing else. Credentials are sealed on the way in and never returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailtrawl.configurations.credentials import ClientCredential, open_credential, seal
from mailtrawl.configurations.schemas import (
    ConfigurationCreate,
    ConfigurationUpdate,
    ConfigurationView,
    CredentialView,
    TestReportView,
)
from mailtrawl.errors import MailtrawlError
from mailtrawl.storage.models import ConfigurationStatus, MailConfiguration
from mailtrawl.storage.secrets import MASK, SecretBox


class ConfigurationNotFound(MailtrawlError):
    default_message = (
        "No such mail configuration; `mailtrawl config list` shows the ones that exist."
    )


class ConfigurationExists(MailtrawlError):
    default_message = "A mail configuration with that name already exists; choose another name."


def _apply_endpoints(record: MailConfiguration, cloud: str, custom: Any) -> None:
    record.cloud = cloud
    if cloud == "custom" and custom is not None:
        record.authority_host = custom.authority_host
        record.graph_endpoint = custom.graph_endpoint
        record.ca_bundle_pem = custom.ca_bundle_pem
    elif cloud != "custom":
        record.authority_host = record.graph_endpoint = record.ca_bundle_pem = None


def create_configuration(
    session: Session, *, box: SecretBox, data: ConfigurationCreate
) -> MailConfiguration:
    if (
        session.scalar(select(MailConfiguration.id).where(MailConfiguration.name == data.name))
        is not None
    ):
        raise ConfigurationExists(
            f"A mail configuration named '{data.name}' already exists; choose another name."
        )
    sealed = seal(box, data.credential)
    record = MailConfiguration(
        name=data.name,
        provider=data.provider,
        tenant=data.tenant,
        client_id=data.client_id,
        credential_kind=sealed.kind.value,
        credential_encrypted=sealed.ciphertext,
        credential_hint=sealed.hint,
        credential_expires_at=sealed.expires_at,
        test_mailbox=data.test_mailbox,
        authorized_domains=list(data.authorized_domains),
        default_scope=data.default_scope.model_dump(),
        enabled=data.enabled,
        status=ConfigurationStatus.UNKNOWN.value,
    )
    _apply_endpoints(record, data.cloud, data.custom)
    session.add(record)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ConfigurationExists(
            f"A mail configuration named '{data.name}' already exists; choose another name."
        ) from None
    return record


def get_configuration(session: Session, *, ref: str | uuid.UUID) -> MailConfiguration:
    """A configuration by id or by name."""
    record: MailConfiguration | None = None
    if isinstance(ref, uuid.UUID):
        record = session.get(MailConfiguration, ref)
    else:
        try:
            record = session.get(MailConfiguration, uuid.UUID(ref))
        except ValueError:
            record = None
        if record is None:
            record = session.scalar(select(MailConfiguration).where(MailConfiguration.name == ref))
    if record is None:
        raise ConfigurationNotFound(
            f"No mail configuration '{ref}'; `mailtrawl config list` shows the ones that exist."
        )
    return record


def list_configurations(session: Session) -> list[MailConfiguration]:
    return list(
        session.scalars(
            select(MailConfiguration).order_by(MailConfiguration.created_at, MailConfiguration.name)
        )
    )


def update_configuration(
    session: Session, *, box: SecretBox, ref: str | uuid.UUID, data: ConfigurationUpdate
) -> MailConfiguration:
    record = get_configuration(session, ref=ref)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] != record.name:
        clash = session.scalar(
            select(MailConfiguration.id).where(MailConfiguration.name == changes["name"])
        )
        if clash is not None:
            raise ConfigurationExists(
                f"A mail configuration named '{changes['name']}' already exists; choose another name."
            )
        record.name = changes["name"]
    for field in ("tenant", "client_id", "test_mailbox", "enabled"):
        if field in changes and changes[field] is not None:
            setattr(record, field, changes[field])
    if data.authorized_domains is not None:
        record.authorized_domains = list(data.authorized_domains)
    if data.default_scope is not None:
        record.default_scope = data.default_scope.model_dump()
    if data.cloud is not None or data.custom is not None:
        cloud = data.cloud or record.cloud
        if cloud == "custom" and data.custom is None and record.authority_host is None:
            raise MailtrawlError(
                "A custom cloud needs its endpoints (authority host and Graph endpoint)."
            )
        _apply_endpoints(record, cloud, data.custom)
    if data.credential is not None:
        sealed = seal(box, data.credential)
        record.credential_kind = sealed.kind.value
        record.credential_encrypted = sealed.ciphertext
        record.credential_hint = sealed.hint
        record.credential_expires_at = sealed.expires_at
    # Anything that changes how we connect makes the last test result stale.
    if changes.keys() & {"tenant", "client_id", "credential", "cloud", "custom", "test_mailbox"}:
        record.status = ConfigurationStatus.UNKNOWN.value
    session.flush()
    return record


def delete_configuration(session: Session, *, ref: str | uuid.UUID) -> None:
    session.delete(get_configuration(session, ref=ref))
    session.flush()


def credential_of(box: SecretBox, record: MailConfiguration) -> ClientCredential:
    return open_credential(box, record.credential_encrypted)


# The connection test runs through the provider; the runner is passed in so this module stays
# free of provider imports (and tests pass the real one).
TestRunner = Callable[[MailConfiguration, ClientCredential, bool], Awaitable[dict[str, Any]]]


async def test_configuration(
    session: Session, *, box: SecretBox, ref: str | uuid.UUID, runner: TestRunner
) -> MailConfiguration:
    """Run the connection test, store its result and the ✓/✗ status, and return the record."""
    record = get_configuration(session, ref=ref)
    never_tested = record.last_test_at is None
    report = await runner(record, credential_of(box, record), never_tested)
    record.last_test_at = datetime.now(UTC)
    record.last_test_result = {**report, "tested_at": record.last_test_at.isoformat()}
    record.status = (
        ConfigurationStatus.OK.value if report["ok"] else ConfigurationStatus.FAILED.value
    )
    session.flush()
    return record


def to_view(record: MailConfiguration) -> ConfigurationView:
    """The public shape of a configuration: the credential appears only as its hint."""
    custom = None
    if record.cloud == "custom":
        custom = {
            "authority_host": record.authority_host,
            "graph_endpoint": record.graph_endpoint,
            "ca_bundle_pem": record.ca_bundle_pem,
        }
    last = record.last_test_result
    return ConfigurationView(
        id=record.id,
        name=record.name,
        provider=record.provider,
        tenant=record.tenant,
        client_id=record.client_id,
        credential=CredentialView(
            kind=record.credential_kind,
            hint=f"{MASK}{record.credential_hint}" if record.credential_hint else MASK,
            expires_at=record.credential_expires_at,
        ),
        cloud=record.cloud,
        custom=custom,
        test_mailbox=record.test_mailbox,
        authorized_domains=list(record.authorized_domains or []),
        default_scope=record.default_scope,
        enabled=record.enabled,
        status=record.status,
        last_test_at=record.last_test_at,
        last_test=TestReportView.model_validate(last) if last else None,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
