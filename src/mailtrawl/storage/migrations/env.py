"""Alembic environment: runs every upgrade in one transaction, on SQLite and PostgreSQL.

`mailtrawl.storage.migrate` passes an open connection in `config.attributes["connection"]`;
without one (a developer running Alembic directly) the engine comes from `load_settings()`.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, DefaultClause, text
from sqlalchemy.sql import functions

from mailtrawl.config import load_settings
from mailtrawl.storage.base import Ciphertext, UTCDateTime
from mailtrawl.storage.engine import make_engine
from mailtrawl.storage.models import load_all_models

# Serialises upgrades from processes starting at once on PostgreSQL ("mailtraw" in ASCII).
ADVISORY_LOCK_ID = 0x6D61696C74726177


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write our column types as the plain types they store, so revisions stay self-contained."""
    if kind == "type" and isinstance(obj, Ciphertext):
        return "sa.LargeBinary()"
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    # now() rather than the SQL the database in hand would compile it to.
    if (
        kind == "server_default"
        and isinstance(obj, DefaultClause)
        and isinstance(obj.arg, functions.now)
    ):
        return "sa.func.now()"
    return False


def run_migrations(connection: Connection) -> None:
    """Configure Alembic on `connection` and apply pending revisions in one transaction."""
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=load_all_models().metadata,
        # SQLite alters tables by copying them; batch mode does that for later revisions.
        render_as_batch=sqlite,
        # Our engine lets SQLAlchemy issue BEGIN on SQLite, so DDL is transactional there too.
        transactional_ddl=True,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        context.run_migrations()


def main() -> None:
    """Entry point Alembic calls when it loads this file."""
    if context.is_offline_mode():
        raise SystemExit("mailtrawl migrations run against a database, not as SQL scripts.")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_engine(load_settings())
    try:
        with engine.connect() as own_connection:
            run_migrations(own_connection)
    finally:
        engine.dispose()


main()
