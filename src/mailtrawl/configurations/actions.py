"""Adding, changing, removing and testing mail configurations, each audited here.

The API and the dashboard call these, so an operation is recorded the same way whichever
asked for it. Each runs in the caller's transaction; the caller commits.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from mailtrawl.audit import service as audit
from mailtrawl.audit.service import Actor
from mailtrawl.config import Settings
from mailtrawl.configurations import service
from mailtrawl.configurations.schemas import ConfigurationCreate, ConfigurationUpdate
from mailtrawl.errors import MailtrawlError
from mailtrawl.storage.models import MailConfiguration
from mailtrawl.storage.secrets import SecretBox

ENTITY = "mail_configuration"


def create(
    session: Session, *, box: SecretBox, data: ConfigurationCreate, actor: Actor
) -> MailConfiguration:
    """Add a configuration (`configuration.create`); the credential is sealed at once."""
    record = service.create_configuration(session, box=box, data=data)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="configuration.create",
        entity_type=ENTITY,
        entity_id=str(record.id),
        after=service.to_view(record).model_dump(mode="json"),
    )
    return record


def update(
    session: Session,
    *,
    box: SecretBox,
    ref: str | uuid.UUID,
    data: ConfigurationUpdate,
    actor: Actor,
) -> MailConfiguration:
    """Change a configuration (`configuration.update`, with the views before and after)."""
    before = service.to_view(service.get_configuration(session, ref=ref)).model_dump(mode="json")
    record = service.update_configuration(session, box=box, ref=ref, data=data)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="configuration.update",
        entity_type=ENTITY,
        entity_id=str(record.id),
        before=before,
        after=service.to_view(record).model_dump(mode="json"),
    )
    return record


def delete(session: Session, *, ref: str | uuid.UUID, actor: Actor) -> None:
    """Remove a configuration (`configuration.delete`, with what it was)."""
    before = service.to_view(service.get_configuration(session, ref=ref))
    service.delete_configuration(session, ref=before.id)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="configuration.delete",
        entity_type=ENTITY,
        entity_id=str(before.id),
        before=before.model_dump(mode="json"),
    )


async def test_connection(
    session: Session, *, box: SecretBox, ref: str | uuid.UUID, settings: Settings, actor: Actor
) -> MailConfiguration:
    """Run the connection test with the application's settings and store its result
    (`configuration.test`). A test that could not run is audited as failed and raised."""
    from mailtrawl.configurations.connection import connection_test

    try:
        record = await service.test_configuration(
            session, box=box, ref=ref, runner=connection_test(settings)
        )
    except service.ConfigurationNotFound:
        raise
    except MailtrawlError as exc:
        audit.record(
            session,
            **actor.audit_fields(),
            operation="configuration.test",
            entity_type=ENTITY,
            entity_id=str(ref),
            outcome=f"failed: {exc.message}",
        )
        raise
    audit.record(
        session,
        **actor.audit_fields(),
        operation="configuration.test",
        entity_type=ENTITY,
        entity_id=str(record.id),
        after={"status": record.status},
        outcome="ok" if record.status == "ok" else f"failed: connection test {record.status}",
    )
    return record
