"""Encryption at rest: round trips, keys and key files, failures, and no plaintext on disk."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from mailtrawl.config import Settings, load_settings
from mailtrawl.errors import DecryptionFailed, InvalidKey, KeyFileInsecure, KeyMissing
from mailtrawl.storage.migrate import upgrade_to_head
from mailtrawl.storage.models import CREDENTIAL_PURPOSE
from mailtrawl.storage.secrets import (
    KeyRing,
    SecretBox,
    SecretKey,
    create_key_file,
    credential_hint,
    generate_key,
    key_id_of,
    load_keyring,
    mask,
    open_secret_box,
    read_key_file,
)
from tests.storage.databases import store_configuration, stored_credentials

PLANTED = "Q3s8Q~planted-client-secret-7f2a9d1e0b6c4f3a"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _box(*keys: SecretKey) -> SecretBox:
    return SecretBox(KeyRing(keys=keys, source="environment"))


def test_round_trip_text_and_bytes() -> None:
    box = _box(SecretKey.generate())
    sealed = box.encrypt(PLANTED, purpose="p")
    assert box.decrypt_text(sealed, purpose="p") == PLANTED
    pfx = bytes(range(256)) * 8
    assert box.decrypt(box.encrypt(pfx, purpose="p"), purpose="p") == pfx
    # A fresh nonce each time: equal plaintexts do not give equal ciphertexts.
    assert box.encrypt(PLANTED, purpose="p") != sealed
    assert key_id_of(sealed) == box.keyring.primary.key_id


def test_round_trip_through_the_database(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    box = open_secret_box(settings)
    store_configuration(engine, box, name="contoso", secret=PLANTED)
    sealed = stored_credentials(engine)["contoso"]
    assert box.decrypt_text(sealed, purpose=CREDENTIAL_PURPOSE) == PLANTED
    # A new process (a new box from the same settings) reads it back too.
    assert open_secret_box(settings).decrypt_text(sealed, purpose=CREDENTIAL_PURPOSE) == PLANTED


def test_planted_secret_never_reaches_the_database_in_plaintext(
    settings: Settings, engine: Engine
) -> None:
    upgrade_to_head(settings, engine=engine)
    box = open_secret_box(settings)
    store_configuration(engine, box, name="contoso", secret=PLANTED)
    sealed = stored_credentials(engine)["contoso"]
    assert box.decrypt_text(sealed, purpose=CREDENTIAL_PURPOSE) == PLANTED
    needles = [PLANTED.encode(), PLANTED.encode().hex().encode(), PLANTED[:20].encode()]
    if engine.dialect.name == "sqlite":
        database = Path(str(engine.url.database))
        # Read the WAL too, before and after the checkpoint that closing the engine performs.
        before = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
        engine.dispose()
        after = database.read_bytes()
        for haystack in (before, after):
            assert len(haystack) > 0
            assert not any(needle in haystack for needle in needles)
    else:
        with psycopg.connect(
            f"host=127.0.0.1 port=5432 user=postgres dbname={engine.url.database}"
        ) as connection:
            rows = connection.execute(
                "SELECT t::text, encode(t.credential_encrypted, 'escape') "
                "FROM mail_configurations t"
            ).fetchall()
        assert len(rows) == 1
        haystack = " ".join(" ".join(row) for row in rows).encode()
        assert b"contoso" in haystack  # the search does see the row
        assert not any(needle in haystack for needle in needles)
    # The hint is the last four characters and no more.
    assert credential_hint(PLANTED) == PLANTED[-4:]


def test_key_file_is_created_private_on_first_run(settings: Settings) -> None:
    path = settings.secret_key_file
    assert not path.exists()
    first = load_keyring(settings, create=True)
    assert first.created
    assert first.source == "file"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    again = load_keyring(settings, create=True)
    assert not again.created
    assert again.key_ids == first.key_ids
    assert [key.encode() for key in read_key_file(path)] == [first.primary.encode()]


def test_key_file_is_created_private_whatever_the_umask(settings: Settings) -> None:
    previous = os.umask(0o000)
    try:
        load_keyring(settings, create=True)
    finally:
        os.umask(previous)
    assert _mode(settings.secret_key_file) == 0o600


def test_loose_key_file_is_refused_with_the_fix(settings: Settings) -> None:
    load_keyring(settings, create=True)
    path = settings.secret_key_file
    original = path.read_bytes()
    path.chmod(0o644)
    for create in (False, True):
        with pytest.raises(KeyFileInsecure) as caught:
            load_keyring(settings, create=create)
        assert f"chmod 600 {path}" in str(caught.value)
        assert "0644" in str(caught.value)
    # Refusing never rewrites the file.
    assert path.read_bytes() == original
    path.chmod(0o640)
    with pytest.raises(KeyFileInsecure):
        open_secret_box(settings)


def test_missing_key_file_is_not_created_unless_asked(settings: Settings) -> None:
    with pytest.raises(KeyMissing, match="does not exist"):
        load_keyring(settings, create=False)
    assert not settings.secret_key_file.exists()


def test_empty_or_malformed_key_file(settings: Settings) -> None:
    path = settings.secret_key_file
    path.parent.mkdir(parents=True)
    path.write_text("# only a comment\n")
    path.chmod(0o600)
    with pytest.raises(KeyMissing, match="holds no key"):
        load_keyring(settings)
    path.write_text("not-a-key\n")
    with pytest.raises(InvalidKey, match="key file"):
        load_keyring(settings)


def test_environment_key_wins_and_no_file_is_created(
    mailtrawl_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    monkeypatch.setenv("MAILTRAWL_SECRET_KEY", key)
    settings = load_settings()
    ring = load_keyring(settings, create=True)
    assert ring.source == "environment"
    assert ring.primary.encode() == key
    assert not settings.secret_key_file.exists()


def test_malformed_environment_key_is_not_echoed(
    mailtrawl_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = "planted-but-too-short-key"
    monkeypatch.setenv("MAILTRAWL_SECRET_KEY", planted)
    with pytest.raises(InvalidKey) as caught:
        load_keyring(load_settings())
    assert "MAILTRAWL_SECRET_KEY" in str(caught.value)
    assert planted not in str(caught.value)


def test_unpadded_keys_and_several_keys_parse(
    mailtrawl_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, old = SecretKey.generate(), SecretKey.generate()
    monkeypatch.setenv("MAILTRAWL_SECRET_KEY", f"{new.encode().rstrip('=')}, {old.encode()}")
    ring = load_keyring(load_settings())
    assert ring.key_ids == (new.key_id, old.key_id)


def test_wrong_key_fails_with_a_clear_message() -> None:
    right, wrong = SecretKey.generate(), SecretKey.generate()
    sealed = _box(right).encrypt(PLANTED, purpose=CREDENTIAL_PURPOSE)
    with pytest.raises(DecryptionFailed) as caught:
        _box(wrong).decrypt(sealed, purpose=CREDENTIAL_PURPOSE)
    message = str(caught.value)
    assert right.key_id in message
    assert "restore the key" in message
    assert caught.value.key_id == right.key_id
    assert PLANTED not in message


def test_tampering_or_another_purpose_fails_the_integrity_check() -> None:
    box = _box(SecretKey.generate())
    sealed = box.encrypt(PLANTED, purpose=CREDENTIAL_PURPOSE)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for value, purpose in ((flipped, CREDENTIAL_PURPOSE), (sealed, "another.column")):
        with pytest.raises(DecryptionFailed, match="integrity check"):
            box.decrypt(value, purpose=purpose)
    with pytest.raises(DecryptionFailed, match="not a mailtrawl ciphertext"):
        box.decrypt(PLANTED.encode(), purpose=CREDENTIAL_PURPOSE)


def test_two_processes_creating_the_key_file_agree(tmp_path: Path) -> None:
    path = tmp_path / "home" / "secret.key"
    assert create_key_file(path) is True
    first = read_key_file(path)
    assert create_key_file(path) is False
    assert read_key_file(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]


def test_key_material_stays_out_of_reprs() -> None:
    key = SecretKey.generate()
    ring = KeyRing(keys=(key,), source="environment")
    assert key.encode() not in repr(key)
    assert key.encode() not in repr(ring)
    assert base64.urlsafe_b64decode(key.encode()) == key.material


def test_mask() -> None:
    assert mask("abcdefghijklmnopwxyz") == "••••wxyz"
    assert mask(SecretStr("abcdefghijklmnopwxyz")) == "••••wxyz"
    assert mask("short-secret") == "••••"
    assert mask("abcdefghijklmnopwxyz", visible=0) == "••••"
    assert credential_hint("short") is None
