"""What most commands need: settings, a migrated database, the key ring, clean error output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.config import Settings, load_settings
from mailtrawl.errors import MailtrawlError


@dataclass
class Store:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def box(self) -> Any:
        from mailtrawl.storage.secrets import open_secret_box

        return open_secret_box(self.settings)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def open_store() -> Iterator[Store]:
    """Settings, an up-to-date database and its sessions; errors become one clear line."""
    from mailtrawl.storage.engine import make_engine, make_session_factory
    from mailtrawl.storage.migrate import upgrade_to_head

    try:
        settings = load_settings()
        engine = make_engine(settings)
        upgrade_to_head(settings, engine=engine)
    except MailtrawlError as exc:
        fail(exc.message)
    try:
        yield Store(settings, engine, make_session_factory(engine))
    except MailtrawlError as exc:
        fail(exc.message)
    finally:
        engine.dispose()


def cli_actor() -> str:
    """The audit log's actor for commands: "cli" and the operating-system user."""
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (containers without a passwd entry)
        user = "unknown"
    return f"cli:{user}"


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
