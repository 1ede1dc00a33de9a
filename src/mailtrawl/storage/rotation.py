"""Key rotation: re-encrypt every `Ciphertext` column under a new key, in one transaction.

With the key file, `rotate_keys` never leaves a state where a stored value has no key:

1. write the key file as [new, old...] (atomic replace, 0600): both keys can decrypt;
2. in one database transaction, re-encrypt every value under the new key and commit;
3. write the key file as [new]: the old key is gone.

If step 2 fails, the original key file is put back and nothing changed. A crash between the
steps leaves a key file that still decrypts everything, and running `keys rotate` again
finishes the job.

With MAILTRAWL_SECRET_KEY, mailtrawl cannot change the variable: the operator sets it to
"NEW,OLD", runs `keys rotate` (which re-encrypts every value not under NEW), then sets it
to "NEW".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Connection, Engine, MetaData, Table, and_, select, update
from sqlalchemy.orm import Session

from mailtrawl.config import Settings
from mailtrawl.errors import SecretsError
from mailtrawl.storage import models
from mailtrawl.storage.base import Ciphertext
from mailtrawl.storage.engine import BEGIN_IMMEDIATE
from mailtrawl.storage.secrets import (
    KeyRing,
    SecretBox,
    SecretKey,
    key_id_of,
    load_keyring,
    write_key_file,
)

# Values written by a process that still held the old key while we rotated are caught by
# a second pass; more than this many passes means something keeps writing with an old key.
MAX_PASSES = 3


@dataclass(frozen=True)
class EncryptedColumn:
    """A column of `Ciphertext` and the purpose its values are bound to."""

    table: Table
    column: Column[bytes]
    purpose: str


@dataclass(frozen=True)
class RotationResult:
    """What `rotate_keys` did."""

    reencrypted: int
    new_key_id: str
    retired_key_ids: tuple[str, ...]
    source: str


def encrypted_columns(metadata: MetaData | None = None) -> list[EncryptedColumn]:
    """Every `Ciphertext` column in `metadata` (default: all mailtrawl tables)."""
    metadata = metadata if metadata is not None else models.load_all_models().metadata
    found: list[EncryptedColumn] = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, Ciphertext):
                found.append(EncryptedColumn(table, column, column.type.purpose))
    return found


def count_ciphertexts(connection: Connection) -> Counter[str]:
    """How many stored values each key id sealed, across every encrypted column."""
    counts: Counter[str] = Counter()
    for target in encrypted_columns():
        query = select(target.column).where(target.column.is_not(None))
        for value in connection.execute(query).scalars():
            counts[key_id_of(value)] += 1
    return counts


def reencrypt_stale(connection: Connection, *, box: SecretBox) -> int:
    """Re-encrypt, under `box`'s primary key, every value sealed by another key.

    Runs in the caller's transaction; rows are locked (`FOR UPDATE` on PostgreSQL) so a
    concurrent writer waits rather than being overwritten. Returns how many values changed.
    """
    primary = box.keyring.primary.key_id
    changed = 0
    for target in encrypted_columns():
        key_columns = list(target.table.primary_key.columns)
        rows = connection.execute(
            select(*key_columns, target.column).where(target.column.is_not(None)).with_for_update()
        ).all()
        for row in rows:
            *key_values, value = row
            if key_id_of(value) == primary:
                continue
            fresh = box.reencrypt(value, purpose=target.purpose)
            condition = and_(
                *(col == val for col, val in zip(key_columns, key_values, strict=True))
            )
            connection.execute(
                update(target.table).where(condition).values({target.column.name: fresh})
            )
            changed += 1
    return changed


def _reencrypt_pass(engine: Engine, box: SecretBox, *, actor: str | None = None) -> int:
    """One transaction that re-encrypts every stale value; all or nothing.

    With `actor`, the rotation's audit entry is written in the same transaction.
    """
    with engine.connect() as connection:
        connection = connection.execution_options(**{BEGIN_IMMEDIATE: True})
        with connection.begin():
            changed = reencrypt_stale(connection, box=box)
            if actor is not None:
                _audit_rotation(connection, box, actor=actor, reencrypted=changed)
            return changed


def _audit_rotation(
    connection: Connection, box: SecretBox, *, actor: str, reencrypted: int
) -> None:
    from mailtrawl.audit import service as audit

    # The session joins the connection's transaction: the entry commits with the new keys.
    with Session(bind=connection) as session:
        audit.record(
            session,
            actor=actor,
            operation="keys.rotate",
            entity_type="secret_key",
            entity_id=box.keyring.primary.key_id,
            after={
                "new_key_id": box.keyring.primary.key_id,
                "retired_key_ids": list(box.keyring.key_ids[1:]),
                "reencrypted": reencrypted,
            },
        )
        session.flush()


def _stale_count(engine: Engine, box: SecretBox) -> int:
    with engine.connect() as connection:
        counts = count_ciphertexts(connection)
    return sum(n for key_id, n in counts.items() if key_id != box.keyring.primary.key_id)


def _until_none_stale(engine: Engine, box: SecretBox) -> int:
    """Further passes for values written under an old key while the first pass ran."""
    changed = 0
    for _ in range(MAX_PASSES):
        if _stale_count(engine, box) == 0:
            return changed
        changed += _reencrypt_pass(engine, box)
    raise SecretsError(
        "Values are still being written under an old key while rotating; stop the mailtrawl "
        "server and workers, then run `mailtrawl keys rotate` again (every key was kept, so "
        "nothing is unreadable)."
    )


def rotate_keys(*, settings: Settings, engine: Engine, actor: str | None = None) -> RotationResult:
    """Re-encrypt every stored secret under a new key and retire the old ones.

    With the key file, the new key is generated and the file rewritten as described in the
    module docstring. With MAILTRAWL_SECRET_KEY, its first key is the new one and at least
    two keys must be listed. Raises `SecretsError` subclasses with the fix when it cannot.
    """
    ring = load_keyring(settings, create=False)
    if ring.source == "environment":
        return _rotate_environment(ring, engine, actor)
    assert ring.path is not None  # a file ring always has its path
    return _rotate_file(ring, ring.path, engine, actor)


def _rotate_environment(ring: KeyRing, engine: Engine, actor: str | None) -> RotationResult:
    if len(ring.keys) < 2:
        raise SecretsError(
            "MAILTRAWL_SECRET_KEY holds one key, so there is nothing to rotate to: create a key "
            "with `mailtrawl keys generate`, set MAILTRAWL_SECRET_KEY to 'NEW,OLD', run "
            "`mailtrawl keys rotate`, then set it to 'NEW'."
        )
    box = SecretBox(ring)
    changed = _reencrypt_pass(engine, box, actor=actor)
    changed += _until_none_stale(engine, box)
    return RotationResult(
        reencrypted=changed,
        new_key_id=ring.primary.key_id,
        retired_key_ids=ring.key_ids[1:],
        source="environment",
    )


def _rotate_file(ring: KeyRing, path: Path, engine: Engine, actor: str | None) -> RotationResult:
    original = ring.keys
    new_key = SecretKey.generate()
    box = SecretBox(KeyRing(keys=(new_key, *original), source="file", path=path))
    write_key_file(path, box.keyring.keys)
    try:
        changed = _reencrypt_pass(engine, box, actor=actor)
    except BaseException:
        # The transaction rolled back, so nothing is sealed under the new key yet.
        write_key_file(path, original)
        raise
    changed += _until_none_stale(engine, box)
    write_key_file(path, (new_key,))
    return RotationResult(
        reencrypted=changed,
        new_key_id=new_key.key_id,
        retired_key_ids=tuple(key.key_id for key in original),
        source="file",
    )


__all__ = [
    "EncryptedColumn",
    "RotationResult",
    "count_ciphertexts",
    "encrypted_columns",
    "reencrypt_stale",
    "rotate_keys",
]
