"""Key rotation: every value re-encrypted in one transaction, old keys retired only after."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from mailtrawl.audit import service as audit
from mailtrawl.config import Settings, load_settings
from mailtrawl.errors import DecryptionFailed, SecretsError
from mailtrawl.remediation.models import VAULT_PURPOSE
from mailtrawl.storage.migrate import upgrade_to_head
from mailtrawl.storage.models import CREDENTIAL_PURPOSE, MailConfiguration
from mailtrawl.storage.rotation import count_ciphertexts, encrypted_columns, rotate_keys
from mailtrawl.storage.secrets import (
    KeyRing,
    SecretBox,
    SecretKey,
    key_id_of,
    load_keyring,
    open_secret_box,
    read_key_file,
)
from tests.storage.databases import store_configuration, stored_credentials

SECRETS = {
    "contoso": "Q3s8Q~contoso-secret-0000000000000000000",
    "fabrikam": "Q3s8Q~fabrikam-secret-111111111111111111",
    "tailspin": "Q3s8Q~tailspin-secret-222222222222222222",
}


def _store_all(engine: Engine, box: SecretBox) -> None:
    for name, secret in SECRETS.items():
        store_configuration(engine, box, name=name, secret=secret)


def _only(key: SecretKey) -> SecretBox:
    return SecretBox(KeyRing(keys=(key,), source="environment"))


def test_every_encrypted_column_is_found() -> None:
    found = {(c.table.name, c.column.name, c.purpose) for c in encrypted_columns()}
    assert found == {
        ("mail_configurations", "credential_encrypted", CREDENTIAL_PURPOSE),
        ("vault_entries", "mime", VAULT_PURPOSE),
        # Reported emails: the raw message and the online engines' keys.
        ("report_cases", "raw", "report-raw"),
        ("report_settings", "secrets_encrypted", "report-settings-secrets"),
    }


def test_rotation_is_audited_in_its_own_transaction(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    _store_all(engine, open_secret_box(settings))
    result = rotate_keys(settings=settings, engine=engine, actor="cli:ops")
    with Session(engine) as session:
        [entry] = audit.list_entries(session, operation="keys.rotate").items
        assert entry.actor == "cli:ops"
        assert entry.after == {
            "new_key_id": result.new_key_id,
            "retired_key_ids": list(result.retired_key_ids),
            "reencrypted": len(SECRETS),
        }
        assert audit.verify(session).ok
    # A rotation that fails leaves no entry behind.
    foreign = _only(SecretKey.generate()).encrypt("lost", purpose=CREDENTIAL_PURPOSE)
    with engine.begin() as connection:
        connection.execute(
            update(MailConfiguration)
            .where(MailConfiguration.name == "tailspin")
            .values(credential_encrypted=foreign)
        )
    with pytest.raises(DecryptionFailed):
        rotate_keys(settings=settings, engine=engine, actor="cli:ops")
    with Session(engine) as session:
        assert len(audit.list_entries(session, operation="keys.rotate").items) == 1


def test_rotate_reencrypts_everything_and_retires_the_old_key(
    settings: Settings, engine: Engine
) -> None:
    upgrade_to_head(settings, engine=engine)
    box = open_secret_box(settings)
    old_key = box.keyring.primary
    _store_all(engine, box)
    before = stored_credentials(engine)

    result = rotate_keys(settings=settings, engine=engine)

    assert result.reencrypted == len(SECRETS)
    assert result.retired_key_ids == (old_key.key_id,)
    assert result.new_key_id != old_key.key_id
    # The key file now holds the new key alone, still private.
    keys = read_key_file(settings.secret_key_file)
    assert [key.key_id for key in keys] == [result.new_key_id]
    assert stat.S_IMODE(settings.secret_key_file.stat().st_mode) == 0o600
    new_alone = _only(keys[0])
    after = stored_credentials(engine)
    for name, secret in SECRETS.items():
        assert after[name] != before[name]
        assert key_id_of(after[name]) == result.new_key_id
        assert new_alone.decrypt_text(after[name], purpose=CREDENTIAL_PURPOSE) == secret
        # Old ciphertexts (a backup taken before rotating) need the old key.
        with pytest.raises(DecryptionFailed, match=old_key.key_id):
            new_alone.decrypt(before[name], purpose=CREDENTIAL_PURPOSE)
        assert _only(old_key).decrypt_text(before[name], purpose=CREDENTIAL_PURPOSE) == secret
    with engine.connect() as connection:
        assert count_ciphertexts(connection) == {result.new_key_id: len(SECRETS)}


def test_rotate_twice_and_with_nothing_stored(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    load_keyring(settings, create=True)
    first = rotate_keys(settings=settings, engine=engine)
    assert first.reencrypted == 0
    _store_all(engine, open_secret_box(settings))
    second = rotate_keys(settings=settings, engine=engine)
    assert second.reencrypted == len(SECRETS)
    assert second.retired_key_ids == (first.new_key_id,)
    box = open_secret_box(settings)
    creds = stored_credentials(engine)
    assert {n: box.decrypt_text(v, purpose=CREDENTIAL_PURPOSE) for n, v in creds.items()} == SECRETS


def test_failed_rotation_changes_nothing(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    box = open_secret_box(settings)
    _store_all(engine, box)
    # One value sealed under a key nobody has: rotation cannot decrypt it and must stop.
    foreign = _only(SecretKey.generate()).encrypt("lost", purpose=CREDENTIAL_PURPOSE)
    with engine.begin() as connection:
        connection.execute(
            update(MailConfiguration)
            .where(MailConfiguration.name == "tailspin")
            .values(credential_encrypted=foreign)
        )
    key_file_before = settings.secret_key_file.read_bytes()
    stored_before = stored_credentials(engine)

    with pytest.raises(DecryptionFailed, match="not among the keys"):
        rotate_keys(settings=settings, engine=engine)

    assert settings.secret_key_file.read_bytes() == key_file_before
    assert stored_credentials(engine) == stored_before
    assert sorted(p.name for p in settings.secret_key_file.parent.iterdir()) == ["secret.key"]


def test_rotation_with_environment_keys(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade_to_head(settings, engine=engine)
    old, new = SecretKey.generate(), SecretKey.generate()
    monkeypatch.setenv("MAILTRAWL_SECRET_KEY", old.encode())
    env_settings = load_settings(database_url=settings.database_url)
    _store_all(engine, open_secret_box(env_settings))

    with pytest.raises(SecretsError, match="'NEW,OLD'"):
        rotate_keys(settings=env_settings, engine=engine)

    monkeypatch.setenv("MAILTRAWL_SECRET_KEY", f"{new.encode()},{old.encode()}")
    both = load_settings(database_url=settings.database_url)
    result = rotate_keys(settings=both, engine=engine)
    assert result.reencrypted == len(SECRETS)
    assert result.source == "environment"
    assert (result.new_key_id, result.retired_key_ids) == (new.key_id, (old.key_id,))
    # Running it again finds nothing left under the old key.
    assert rotate_keys(settings=both, engine=engine).reencrypted == 0
    creds = stored_credentials(engine)
    assert {
        n: _only(new).decrypt_text(v, purpose=CREDENTIAL_PURPOSE) for n, v in creds.items()
    } == (SECRETS)
    assert not env_settings.secret_key_file.exists()


def test_interrupted_rotation_leaves_every_value_readable(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """A crash after step 1 (key file = [new, old]) still decrypts, and rotating again finishes."""
    from mailtrawl.storage.secrets import write_key_file

    upgrade_to_head(settings, engine=engine)
    box = open_secret_box(settings)
    _store_all(engine, box)
    old = box.keyring.primary
    write_key_file(settings.secret_key_file, (SecretKey.generate(), old))
    reader = open_secret_box(settings)
    for name, value in stored_credentials(engine).items():
        assert reader.decrypt_text(value, purpose=CREDENTIAL_PURPOSE) == SECRETS[name]
    result = rotate_keys(settings=settings, engine=engine)
    assert result.reencrypted == len(SECRETS)
    assert len(read_key_file(settings.secret_key_file)) == 1
