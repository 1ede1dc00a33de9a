"""Engine and session factories built from `Settings`; nothing connects at import.

SQLite runs in WAL mode (readers do not block the writer) with foreign keys enforced and a
busy timeout; SQLAlchemy, not the sqlite3 module, decides where transactions begin, so
savepoints and transactional DDL behave as on PostgreSQL. PostgreSQL goes through psycopg 3
whatever driver the URL names.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.config import Settings
from mailtrawl.errors import ConfigError, DatabaseUnreachable

SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT_S = 10


def database_url(raw: str) -> URL:
    """Parse a database URL and pin PostgreSQL to the psycopg 3 driver we ship.

    Raises `ConfigError` for a URL SQLAlchemy cannot parse or a backend we do not support.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            "MAILTRAWL_DATABASE_URL is not a valid database URL; use sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DATABASE."
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise ConfigError(
        f"The database backend {backend!r} is not supported; use sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DATABASE."
    )


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***, safe to print and log."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory databases."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy (see _on_sqlite_begin) instead of the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL is durable across application crashes, and much faster than FULL.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


# Execution option: take SQLite's write lock at BEGIN, for read-then-write transactions that
# must not fail half-way on a concurrent writer (key rotation).
BEGIN_IMMEDIATE = "mailtrawl_begin_immediate"


def _on_sqlite_begin(connection: Any) -> None:
    immediate = connection.get_execution_options().get(BEGIN_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(settings: Settings, **options: Any) -> Engine:
    """Create the engine for `settings.database_url`; creates the SQLite file's folder (0700).

    `options` are passed to `sqlalchemy.create_engine` (for example `poolclass`).
    """
    url = database_url(settings.database_url)
    # Parameters can hold ciphertexts and user input; keep them out of error messages.
    options.setdefault("hide_parameters", True)
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = create_engine(url, **options)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    options.setdefault("pool_pre_ping", True)
    connect_args = options.setdefault("connect_args", {})
    connect_args.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_S)
    connect_args.setdefault("application_name", "mailtrawl")
    return create_engine(url, **options)


@contextmanager
def write_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction takes SQLite's write lock at BEGIN, committed at the end.

    A read-then-write transaction that begins as a reader cannot wait for the lock when it
    starts writing (SQLite answers "database is locked" at once); taking the lock first
    makes it wait its turn (busy timeout) instead. PostgreSQL ignores the option.
    """
    bind = sessions.kw.get("bind")
    # Writers of one process queue on a Python lock: SQLite's own busy handler sleeps in
    # growing steps (up to 100 ms) and would leave the database idle between writers.
    gate = _writer_lock(bind) if bind is not None and bind.dialect.name == "sqlite" else None
    with gate or nullcontext(), sessions() as session:
        session.connection(execution_options={BEGIN_IMMEDIATE: True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


_WRITER_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(engine: Engine) -> threading.Lock:
    with _WRITER_LOCKS_GUARD:
        lock = _WRITER_LOCKS.get(engine)
        if lock is None:
            lock = _WRITER_LOCKS[engine] = threading.Lock()
        return lock


# Tables whose query plans depend on how their values are spread (the dashboard's hits table).
STATISTICS_TABLES = ("investigation_hits", "investigation_campaigns")


def refresh_statistics(sessions: sessionmaker[Session]) -> None:
    """Let SQLite's planner know how values are spread, as PostgreSQL's autovacuum does.

    Without statistics SQLite picks an index by its shape alone and can walk 100,000 hits in
    sort order to find the fifty of one mailbox. Run after an investigation completes and
    every hour; a full ANALYZE of 100,000 hits takes about 0.3 s. A table is analysed only
    when it has grown or shrunk by a fifth since its statistics (or has none and holds
    STATISTICS_MIN_ROWS rows), so an idle database is never written. PostgreSQL: nothing to do.
    """
    with sessions() as session:
        if session.get_bind().dialect.name != "sqlite":
            return
        stale = [table for table in STATISTICS_TABLES if _statistics_stale(session, table)]
    if not stale:
        return
    with write_session(sessions) as session:
        for table in stale:
            session.execute(text(f"ANALYZE {table}"))


STATISTICS_MIN_ROWS = 1_000


def _statistics_stale(session: Session, table: str) -> bool:
    assert table in STATISTICS_TABLES  # a name of ours, never input
    rows = session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
    try:
        stat = session.execute(
            text("SELECT stat FROM sqlite_stat1 WHERE tbl = :table LIMIT 1"), {"table": table}
        ).scalar()
    except SQLAlchemyError:  # no statistics table yet
        stat = None
    if stat is None:
        return int(rows) >= STATISTICS_MIN_ROWS
    known = int(str(stat).split()[0] or 0)
    return abs(int(rows) - known) > max(STATISTICS_MIN_ROWS, known // 5)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to `engine`; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def error_reason(exc: SQLAlchemyError) -> str:
    """The first line of the driver's message (SQLAlchemy's own adds SQL and parameters)."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_connection(engine: Engine) -> None:
    """Open a connection and run a trivial query; raises `DatabaseUnreachable` on failure."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = error_reason(exc)
        raise DatabaseUnreachable(
            f"Cannot connect to the database at {mask_url(engine.url)} ({reason}); check "
            "MAILTRAWL_DATABASE_URL and that the server is running.",
            url=mask_url(engine.url),
        ) from None


__all__ = [
    "BEGIN_IMMEDIATE",
    "check_connection",
    "database_url",
    "error_reason",
    "make_engine",
    "make_session_factory",
    "mask_url",
    "sqlite_path",
    "write_session",
]
