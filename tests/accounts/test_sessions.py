"""Sign-in sessions: stored hashed, idle and absolute expiry, revocation, the cookie's flags."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from mailtrawl.accounts import service, sessions
from mailtrawl.accounts.models import Role, User, WebSession
from mailtrawl.config import Settings
from mailtrawl.storage.base import utcnow

PASSWORD = "correct horse battery"


@pytest.fixture
def user(db: Session) -> User:
    created = service.create_user(db, username="alice", password=PASSWORD, role=Role.ANALYST)
    db.commit()
    return created


def _start(db: Session, user: User, settings: Settings, **kw: object) -> tuple[str, WebSession]:
    value, record = sessions.start_session(
        db, user, source_ip="192.0.2.1", user_agent="pytest", settings=settings, **kw
    )
    db.commit()
    return value, record


def test_only_the_cookies_hash_is_stored(db: Session, user: User, settings: Settings) -> None:
    value, record = _start(db, user, settings)
    assert len(value) >= 43  # 256 random bits
    assert record.token_hash == hashlib.sha256(value.encode()).hexdigest()
    stored = db.execute(select(WebSession.token_hash, WebSession.csrf_token)).all()
    assert value not in {v for row in stored for v in row}
    assert len(record.csrf_token) >= 43
    assert record.expires_at - record.created_at == timedelta(hours=settings.session_max_hours)
    assert sessions.resolve_session(db, value, settings=settings) == record
    assert sessions.resolve_session(db, value + "x", settings=settings) is None
    assert sessions.resolve_session(db, None, settings=settings) is None
    # Each session has its own CSRF token.
    _, other = _start(db, user, settings)
    assert other.csrf_token != record.csrf_token


def test_an_idle_session_ends(db: Session, user: User, settings: Settings) -> None:
    start = utcnow()
    value, _ = _start(db, user, settings, now=start)
    idle = timedelta(minutes=settings.session_idle_minutes)
    assert idle == timedelta(hours=8)
    almost = start + idle - timedelta(seconds=1)
    assert sessions.resolve_session(db, value, settings=settings, now=almost, touch=False)
    assert sessions.resolve_session(db, value, settings=settings, now=start + idle) is None


def test_use_keeps_a_session_alive_until_its_absolute_end(
    db: Session, user: User, settings: Settings
) -> None:
    start = utcnow()
    value, record = _start(db, user, settings, now=start)
    # Used every 7 hours it never idles out, but still ends 24 hours after sign-in.
    for hours in (7, 14, 21):
        moment = start + timedelta(hours=hours)
        assert sessions.resolve_session(db, value, settings=settings, now=moment) is not None
        db.commit()
        db.refresh(record)
        assert record.last_seen_at == moment
    end = start + timedelta(hours=settings.session_max_hours)
    assert sessions.session_expires_at(record, settings) == end
    assert sessions.resolve_session(db, value, settings=settings, now=end) is None


def test_use_is_recorded_at_most_once_a_minute(db: Session, user: User, settings: Settings) -> None:
    start = utcnow()
    value, record = _start(db, user, settings, now=start)
    sessions.resolve_session(db, value, settings=settings, now=start + timedelta(seconds=30))
    db.commit()
    db.refresh(record)
    assert record.last_seen_at == start
    later = start + timedelta(seconds=61)
    sessions.resolve_session(db, value, settings=settings, now=later)
    db.commit()
    db.refresh(record)
    assert record.last_seen_at == later


def test_sign_out_ends_the_session(db: Session, user: User, settings: Settings) -> None:
    value, record = _start(db, user, settings)
    other, _ = _start(db, user, settings)
    assert sessions.end_session(db, value) == record
    db.commit()
    assert record.revoked_at is not None
    assert sessions.resolve_session(db, value, settings=settings) is None
    assert sessions.resolve_session(db, other, settings=settings) is not None
    assert sessions.end_session(db, "unknown") is None


def test_a_password_change_ends_the_other_sessions(
    db: Session, user: User, settings: Settings
) -> None:
    mine, current = _start(db, user, settings)
    elsewhere, _ = _start(db, user, settings)
    service.change_password(
        db,
        user_id=user.id,
        current=PASSWORD,
        new="another long passphrase",
        keep_session_id=current.id,
    )
    db.commit()
    assert sessions.resolve_session(db, mine, settings=settings) is not None
    assert sessions.resolve_session(db, elsewhere, settings=settings) is None
    # An administrator's reset ends them all.
    service.set_password(db, user_id=user.id, new="reset by the admin!")
    db.commit()
    assert sessions.resolve_session(db, mine, settings=settings) is None


def test_disabling_a_user_ends_their_sessions(db: Session, user: User, settings: Settings) -> None:
    value, _ = _start(db, user, settings)
    service.set_active(db, user_id=user.id, active=False)
    db.commit()
    assert sessions.resolve_session(db, value, settings=settings) is None
    service.set_active(db, user_id=user.id, active=True)
    db.commit()
    # Enabling again does not bring old sessions back.
    assert sessions.resolve_session(db, value, settings=settings) is None
    user.is_active = False
    with pytest.raises(service.LoginRefused):
        sessions.start_session(db, user, source_ip=None, user_agent=None, settings=settings)


def test_the_csrf_token_is_compared_exactly(db: Session, user: User, settings: Settings) -> None:
    _, record = _start(db, user, settings)
    assert sessions.csrf_matches(record, record.csrf_token)
    assert sessions.csrf_matches(record.csrf_token, record.csrf_token)
    assert not sessions.csrf_matches(record, record.csrf_token[:-1])
    assert not sessions.csrf_matches(record, "")
    assert not sessions.csrf_matches(record, None)


def _request(url: str) -> Request:
    scheme, _, rest = url.partition("://")
    host = rest.split("/")[0]
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": scheme,
            "path": "/",
            "query_string": b"",
            "headers": [(b"host", host.encode())],
            "server": None,
        }
    )


def _cookie(settings: Settings, url: str | None) -> tuple[SimpleCookie, str]:
    response = Response()
    sessions.set_session_cookie(
        response, "value", settings, _request(url) if url is not None else None
    )
    header = response.headers["set-cookie"]
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar, header


@pytest.mark.parametrize(
    ("url", "secure"),
    [
        ("http://127.0.0.1:8080", False),
        ("http://localhost:8443", False),
        ("http://[::1]:8080", False),
        ("https://127.0.0.1:8443", True),
        ("http://mailtrawl.example.com", True),
        ("https://mailtrawl.example.com", True),
        (None, True),  # without the request, the safe choice
    ],
)
def test_the_cookie_is_httponly_strict_and_secure_unless_plain_loopback(
    settings: Settings, url: str | None, secure: bool
) -> None:
    jar, header = _cookie(settings, url)
    morsel = jar[sessions.SESSION_COOKIE]
    assert morsel.value == "value"
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/"
    assert morsel["max-age"] == str(24 * 3600)
    assert bool(morsel["secure"]) is secure, header


def test_the_secure_setting_overrides_the_guess(settings: Settings) -> None:
    forced = settings.model_copy(update={"cookie_secure": True})
    assert _cookie(forced, "http://127.0.0.1:8080")[0][sessions.SESSION_COOKIE]["secure"]
    off = settings.model_copy(update={"cookie_secure": False})
    assert not _cookie(off, "https://mailtrawl.example.com")[0][sessions.SESSION_COOKIE]["secure"]


def test_clearing_the_cookie_expires_it(settings: Settings) -> None:
    response = Response()
    sessions.clear_session_cookie(response, settings, _request("http://127.0.0.1:8080"))
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    morsel = jar[sessions.SESSION_COOKIE]
    assert morsel.value == ""
    assert morsel["max-age"] == "0"
    assert morsel["path"] == "/"
