"""A mailbox with more matches than Graph's $search answers (1,000) is listed without it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from mailtrawl.config import load_settings
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.investigations.models import InvestigationMailbox
from tests.investigations.conftest import Store, make_store


@pytest.fixture
def contoso_store(
    emulator: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    """A SQLite store with the configuration "hunt" for the fixture tenant (reset per test)."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    settings = load_settings(
        home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'mailtrawl.db'}"
    )
    app = {
        "clientId": emulator.info["client_id"],
        "secrets": [{"value": emulator.info["client_secret"]}],
    }
    store = make_store(settings, emulator, app)
    try:
        yield store
    finally:
        store.engine.dispose()


def _statement() -> bytes:
    message = EmailMessage()
    message["From"] = "Payroll <payroll@bonus-portal.example>"
    message["Subject"] = "Statement"
    message.set_content("Your quarterly bonus statement is ready.")
    return message.as_bytes()


def test_mailboxes_beyond_the_search_cap_are_found_completely(
    emulator: EmulatorProcess, contoso_store: Store
) -> None:
    emulator.control(
        "POST",
        "/deliver",
        {
            "mime": base64.b64encode(_statement()).decode(),
            "recipients": ["alice@contoso.com"],
            "copies": 1005,
        },
    )
    emulator.deliver(_statement(), ["bob@contoso.com"])
    store = contoso_store
    investigation_id = store.create({"match": {"body": "bonus statement"}})
    store.run_all()
    view = store.view(investigation_id)
    assert view.plan is not None
    assert view.plan["server"]["mode"] == "search"
    assert view.status == "completed"
    assert view.progress.hits == 1006
    hits = store.hits(investigation_id)
    assert len({h.message_id for h in hits}) == 1006
    with store.sessions() as session:
        fallback = dict(
            session.execute(
                select(InvestigationMailbox.upn, InvestigationMailbox.search_cap_fallback)
            ).all()
        )
    assert fallback["alice@contoso.com"] is True
    assert fallback["bob@contoso.com"] is False


def test_a_mailbox_the_app_cannot_read_fails_with_the_reason_and_the_rest_complete(
    emulator: EmulatorProcess, contoso_store: Store
) -> None:
    emulator.deliver(_statement(), ["alice@contoso.com", "bob@contoso.com"])
    # An application access policy keeps the app out of the Sales Team (bob).
    emulator.control(
        "PUT",
        "/access-policies",
        [{"appId": emulator.info["client_id"], "group": "Sales Team", "mode": "DenyAccess"}],
    )
    store = contoso_store
    investigation_id = store.create({"match": {"from": "payroll@bonus-portal.example"}})
    store.run_all()
    view = store.view(investigation_id)
    assert view.status == "completed"
    assert view.progress.mailboxes_failed >= 1
    assert {h.mailbox for h in store.hits(investigation_id)} == {"alice@contoso.com"}
    with store.sessions() as session:
        rows = dict(
            session.execute(
                select(InvestigationMailbox.upn, InvestigationMailbox.reason).where(
                    InvestigationMailbox.status == "failed"
                )
            ).all()
        )
    assert rows["bob@contoso.com"].startswith("mailbox unavailable:")
