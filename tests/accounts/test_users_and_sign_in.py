"""Users, passwords, sign-in and its throttling, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.accounts import service
from mailtrawl.accounts.errors import (
    AccountError,
    LastAdmin,
    LoginRefused,
    LoginThrottled,
    PasswordRejected,
    RoleTooHigh,
    UserExists,
    UsernameRejected,
    WrongPassword,
)
from mailtrawl.accounts.models import LoginAttempt, Role, User
from mailtrawl.errors import MailtrawlError
from mailtrawl.storage.base import utcnow

PASSWORD = "correct horse battery"
IP = "192.0.2.10"


def _user(db: Session, name: str = "alice", role: Role = Role.ANALYST) -> User:
    user = service.create_user(db, username=name, password=PASSWORD, role=role)
    db.commit()
    return user


def _failures(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(LoginAttempt)) or 0


def test_passwords_are_stored_as_argon2id(db: Session) -> None:
    user = _user(db)
    assert user.password_hash.startswith("$argon2id$v=19$")
    assert PASSWORD not in user.password_hash
    assert PasswordHasher().verify(user.password_hash, PASSWORD)
    assert user.password_changed_at is not None
    assert user.is_active


def test_usernames_are_unique_whatever_the_case(db: Session) -> None:
    user = service.create_user(db, username="  Alice@Example.COM ", password=PASSWORD, role="admin")
    assert user.username == "alice@example.com"
    with pytest.raises(UserExists, match="exists already"):
        service.create_user(db, username="ALICE@example.com", password=PASSWORD, role="viewer")
    for bad in ("", "  ", "a b", "-lead", "x" * 65, "<script>"):
        with pytest.raises(UsernameRejected):
            service.create_user(db, username=bad, password=PASSWORD, role="viewer")
    assert service.find_user(db, "ALICE@EXAMPLE.COM").id == user.id
    assert service.find_user(db, str(user.id)).id == user.id


def test_the_password_policy_says_what_is_wrong(db: Session) -> None:
    with pytest.raises(PasswordRejected, match="at least 12 characters"):
        service.create_user(db, username="bob", password="short pass", role="viewer")
    with pytest.raises(PasswordRejected, match="cannot be the username"):
        service.create_user(
            db, username="bob.the.builder", password="Bob.The.Builder", role="viewer"
        )
    with pytest.raises(PasswordRejected, match="only spaces"):
        service.create_user(db, username="bob", password=" " * 14, role="viewer")
    # Every refusal is a MailtrawlError: the interfaces show its sentence.
    assert issubclass(PasswordRejected, AccountError)
    assert issubclass(AccountError, MailtrawlError)
    assert service.create_user(db, username="bob", password="x" * 12, role="viewer")


def test_sign_in_succeeds_and_records_the_time(db: Session) -> None:
    user = _user(db)
    signed = service.authenticate(db, username="ALICE", password=PASSWORD, source_ip=IP)
    assert signed.id == user.id
    assert signed.last_login_at is not None


def test_unknown_user_and_wrong_password_are_refused_alike(db: Session) -> None:
    _user(db)
    disabled = _user(db, "carol")
    service.set_active(db, user_id=disabled.id, active=False)
    messages = []
    for username, password in [
        ("alice", "wrong password!!"),
        ("nobody", "wrong password!!"),
        ("carol", PASSWORD),  # right password, disabled account
        ("not a valid name", PASSWORD),
    ]:
        with pytest.raises(LoginRefused) as refused:
            service.authenticate(db, username=username, password=password, source_ip=IP)
        messages.append(str(refused.value))
    assert messages == ["Wrong username or password."] * 4


def test_an_unknown_user_takes_as_long_as_a_wrong_password(db: Session) -> None:
    _user(db)

    def elapsed(username: str) -> float:
        runs = []
        for n in range(3):
            start = time.perf_counter()
            with pytest.raises(LoginRefused):
                service.authenticate(
                    db,
                    username=username,
                    password=f"wrong password {n}",
                    source_ip=f"198.51.100.{n}",
                )
            runs.append(time.perf_counter() - start)
        return sorted(runs)[1]

    known, unknown = elapsed("alice"), elapsed("mallory")
    # Both verify one argon2id hash (tens of milliseconds); a lookup alone would take far less.
    assert 0.33 < unknown / known < 3, (known, unknown)


def test_sign_ins_are_throttled_per_username_and_address(db: Session) -> None:
    _user(db)
    start = utcnow()
    for n in range(service.MAX_FAILURES_PER_USERNAME):
        with pytest.raises(LoginRefused):
            service.authenticate(
                db,
                username="alice",
                password="wrong password!!",
                source_ip=IP,
                now=start + timedelta(seconds=n),
            )
    db.commit()
    # Even the right password is not checked now.
    with pytest.raises(LoginThrottled) as throttled:
        service.authenticate(
            db, username="alice", password=PASSWORD, source_ip=IP, now=start + timedelta(minutes=1)
        )
    # The first failure ages out 15 minutes after it happened: 14 minutes from now.
    assert throttled.value.retry_after_seconds == 14 * 60
    assert "wait 840 seconds" in str(throttled.value)
    # Another username from the same address is not affected, nor another address.
    _user(db, "bob")
    assert service.authenticate(db, username="bob", password=PASSWORD, source_ip=IP, now=start)
    assert service.authenticate(
        db, username="alice", password=PASSWORD, source_ip="192.0.2.99", now=start
    )


def test_a_success_clears_the_username_count(db: Session) -> None:
    _user(db)
    start = utcnow()
    for _n in range(service.MAX_FAILURES_PER_USERNAME - 1):
        with pytest.raises(LoginRefused):
            service.authenticate(
                db, username="alice", password="nope nope nope", source_ip=IP, now=start
            )
    assert _failures(db) == service.MAX_FAILURES_PER_USERNAME - 1
    service.authenticate(db, username="alice", password=PASSWORD, source_ip=IP, now=start)
    assert _failures(db) == 0
    # So the next mistakes start again from zero.
    for _ in range(service.MAX_FAILURES_PER_USERNAME - 1):
        with pytest.raises(LoginRefused):
            service.authenticate(
                db, username="alice", password="nope nope nope", source_ip=IP, now=start
            )
    assert service.authenticate(db, username="alice", password=PASSWORD, source_ip=IP, now=start)


def test_throttling_ends_when_failures_age_out(db: Session) -> None:
    _user(db)
    start = utcnow()
    for _ in range(service.MAX_FAILURES_PER_USERNAME):
        with pytest.raises(LoginRefused):
            service.authenticate(
                db, username="alice", password="nope nope nope", source_ip=IP, now=start
            )
    with pytest.raises(LoginThrottled):
        service.authenticate(db, username="alice", password=PASSWORD, source_ip=IP, now=start)
    later = start + service.LOGIN_WINDOW + timedelta(seconds=1)
    assert service.authenticate(db, username="alice", password=PASSWORD, source_ip=IP, now=later)
    # Old failures are deleted, not just ignored.
    assert _failures(db) == 0


def test_one_address_guessing_many_usernames_is_throttled(db: Session) -> None:
    _user(db)
    start = utcnow()
    for n in range(service.MAX_FAILURES_PER_IP):
        with pytest.raises(LoginRefused):
            service.authenticate(
                db, username=f"user{n}", password="nope nope nope", source_ip=IP, now=start
            )
    with pytest.raises(LoginThrottled):
        service.authenticate(db, username="alice", password=PASSWORD, source_ip=IP, now=start)
    assert service.authenticate(
        db, username="alice", password=PASSWORD, source_ip="192.0.2.11", now=start
    )


def test_throttling_is_shared_through_the_database(
    sessions: sessionmaker[Session], db: Session
) -> None:
    """Two workers (two sessions) count the same failures."""
    _user(db)
    start = utcnow()
    for _n in range(service.MAX_FAILURES_PER_USERNAME):
        with sessions.begin() as worker, pytest.raises(LoginRefused):
            service.authenticate(
                worker, username="alice", password="nope nope nope", source_ip=IP, now=start
            )
    with sessions.begin() as other, pytest.raises(LoginThrottled):
        service.authenticate(other, username="alice", password=PASSWORD, source_ip=IP, now=start)


def test_changing_ones_password_needs_the_current_one(db: Session) -> None:
    user = _user(db)
    with pytest.raises(WrongPassword):
        service.change_password(
            db, user_id=user.id, current="not the password", new="a brand new passphrase"
        )
    assert _failures(db) == 1  # counts as a failed sign-in
    with pytest.raises(PasswordRejected):
        service.change_password(db, user_id=user.id, current=PASSWORD, new="short")
    with pytest.raises(PasswordRejected, match="current one"):
        service.change_password(db, user_id=user.id, current=PASSWORD, new=PASSWORD)
    before = user.password_changed_at
    service.change_password(db, user_id=user.id, current=PASSWORD, new="a brand new passphrase")
    assert user.password_changed_at is not None
    assert before is not None
    assert user.password_changed_at >= before
    with pytest.raises(LoginRefused):
        service.authenticate(db, username="alice", password=PASSWORD, source_ip=IP)
    assert service.authenticate(
        db, username="alice", password="a brand new passphrase", source_ip=IP
    )


def test_the_last_active_admin_stays(db: Session) -> None:
    root = _user(db, "root", Role.ADMIN)
    with pytest.raises(LastAdmin):
        service.set_role(db, user_id=root.id, role=Role.ANALYST)
    with pytest.raises(LastAdmin):
        service.set_active(db, user_id=root.id, active=False)
    second = _user(db, "second", Role.ADMIN)
    service.set_active(db, user_id=second.id, active=False)
    # A disabled administrator does not count.
    with pytest.raises(LastAdmin):
        service.update_user(db, user_id=root.id, role=Role.VIEWER)
    service.set_active(db, user_id=second.id, active=True)
    service.set_role(db, user_id=root.id, role=Role.VIEWER)
    assert root.role == "viewer"
    assert service.active_admin_count(db) == 1
    assert [u.username for u in service.list_users(db)] == ["root", "second"]


def test_a_users_token_never_exceeds_the_user(db: Session) -> None:
    analyst = _user(db, "ana", Role.ANALYST)
    with pytest.raises(RoleTooHigh):
        service.create_token(db, name="too much", role=Role.ADMIN, owner=analyst)
    issued = service.create_token(db, name="ci", role=Role.ANALYST, owner=analyst)
    identity = service.resolve_token(db, token=issued.token)
    assert identity is not None
    assert (identity.name, identity.role, identity.owner) == ("ana", Role.ANALYST, analyst)
    # Demoting the user demotes the token.
    service.set_role(db, user_id=analyst.id, role=Role.VIEWER)
    identity = service.resolve_token(db, token=issued.token)
    assert identity is not None
    assert identity.role == Role.VIEWER
    # Disabling the user stops the token.
    service.set_active(db, user_id=analyst.id, active=False)
    assert service.resolve_token(db, token=issued.token) is None
    assert service.verify_token(db, token=issued.token) is None
    # A token of no user keeps working as before.
    plain = service.create_token(db, name="automation", role=Role.VIEWER)
    identity = service.resolve_token(db, token=plain.token)
    assert identity is not None
    assert (identity.name, identity.owner) == ("automation", None)
