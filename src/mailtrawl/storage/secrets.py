"""Encryption at rest for credentials: AES-256-GCM under a key ring with key ids.

A key is 32 random bytes written as URL-safe base64. The key ring comes from
`MAILTRAWL_SECRET_KEY` (one key, or several separated by commas, newest first) or else from
the key file (`$MAILTRAWL_HOME/secret.key`, one key per line, newest first), which is created
with mode 0600 on first run and refused when group or others can read it. The first key
encrypts; the others only decrypt, and exist while `mailtrawl keys rotate` re-encrypts.

A ciphertext is `version (1 byte) | key id (4 bytes) | nonce (12 bytes) | AES-GCM output`.
The key id says which key sealed it, so rotation and `doctor` can tell values apart without
trying every key. The header and the value's purpose (for example
"mail_configurations.credential") are authenticated, so a value cannot be moved to a column
with another purpose, and any change to it is detected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from mailtrawl.config import Settings
from mailtrawl.errors import DecryptionFailed, InvalidKey, KeyFileInsecure, KeyMissing

KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
FORMAT_VERSION = 1
HEADER_BYTES = 1 + KEY_ID_BYTES
MASK = "••••"

KEY_FILE_HEADER = (
    "# mailtrawl encryption keys, newest first: the first key encrypts, the others only\n"
    "# decrypt while `mailtrawl keys rotate` runs. Keep this file private (mode 0600) and\n"
    "# back it up with the database: without it, stored credentials cannot be read.\n"
)

KeySource = Literal["environment", "file"]


@dataclass(frozen=True)
class SecretKey:
    """One 256-bit key; its repr never shows the key material."""

    material: bytes = field(repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise InvalidKey()
        # The id is a hash of the key, so it is stable and needs no table of its own.
        digest = hashlib.sha256(b"mailtrawl key id\x00" + self.material).digest()
        object.__setattr__(self, "key_id", digest[:KEY_ID_BYTES].hex())

    @classmethod
    def generate(cls) -> SecretKey:
        """A new key from the operating system's random source."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def decode(cls, text: str, *, origin: str) -> SecretKey:
        """Parse URL-safe base64 (padding optional); `origin` names where it came from."""
        cleaned = text.strip()
        try:
            material = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            material = b""
        if len(material) != KEY_BYTES:
            raise InvalidKey(
                f"A key in {origin} is malformed: each key must be 32 random bytes in URL-safe "
                "base64 (create one with `mailtrawl keys generate`)."
            )
        return cls(material)

    def encode(self) -> str:
        """The key as URL-safe base64, as written in the key file and MAILTRAWL_SECRET_KEY."""
        return base64.urlsafe_b64encode(self.material).decode("ascii")


@dataclass(frozen=True)
class KeyRing:
    """The keys in use, newest (encrypting) first, and where they came from."""

    keys: tuple[SecretKey, ...]
    source: KeySource
    path: Path | None = None
    created: bool = False

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyMissing()

    @property
    def primary(self) -> SecretKey:
        """The key that encrypts new values."""
        return self.keys[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key, newest first."""
        return tuple(key.key_id for key in self.keys)

    def describe(self) -> str:
        """Where the keys come from, for messages (never the keys themselves)."""
        return (
            "MAILTRAWL_SECRET_KEY" if self.source == "environment" else f"the key file {self.path}"
        )


def key_id_of(ciphertext: bytes) -> str:
    """The id of the key that sealed `ciphertext`; raises `DecryptionFailed` if malformed."""
    if len(ciphertext) < HEADER_BYTES + NONCE_BYTES + 16 or ciphertext[0] != FORMAT_VERSION:
        raise DecryptionFailed(
            "A stored credential is not a mailtrawl ciphertext (truncated or written by "
            "something else); re-enter the credential."
        )
    return ciphertext[1:HEADER_BYTES].hex()


class SecretBox:
    """Encrypts and decrypts values with a key ring; the only place keys are used."""

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    @property
    def keyring(self) -> KeyRing:
        """The key ring this box uses."""
        return self._keyring

    def encrypt(self, plaintext: str | bytes, *, purpose: str) -> bytes:
        """Seal `plaintext` under the primary key, bound to `purpose`."""
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        key = self._keyring.primary
        header = bytes([FORMAT_VERSION]) + bytes.fromhex(key.key_id)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key.material).encrypt(nonce, data, header + purpose.encode("utf-8"))
        return header + nonce + sealed

    def decrypt(self, ciphertext: bytes, *, purpose: str) -> bytes:
        """Open a value sealed by `encrypt` for the same `purpose`.

        Raises `DecryptionFailed` when no key in the ring has the value's key id, or when the
        value, its header or its purpose do not match (tampering or a wrong key).
        """
        key_id = key_id_of(ciphertext)
        candidates = [key for key in self._keyring.keys if key.key_id == key_id]
        if not candidates:
            raise DecryptionFailed(
                f"A stored credential was encrypted under key {key_id}, which is not among the "
                f"keys in {self._keyring.describe()} ({', '.join(self._keyring.key_ids)}); "
                "restore the key that was in use, or re-enter the credential.",
                key_id=key_id,
            )
        header = ciphertext[:HEADER_BYTES]
        nonce = ciphertext[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        sealed = ciphertext[HEADER_BYTES + NONCE_BYTES :]
        for key in candidates:
            try:
                return AESGCM(key.material).decrypt(nonce, sealed, header + purpose.encode())
            except InvalidTag:
                continue
        raise DecryptionFailed(
            f"A stored credential under key {key_id} failed its integrity check: it was "
            "altered or belongs to another field; re-enter the credential.",
            key_id=key_id,
        )

    def decrypt_text(self, ciphertext: bytes, *, purpose: str) -> str:
        """`decrypt`, for values that were encrypted from a `str`."""
        return self.decrypt(ciphertext, purpose=purpose).decode("utf-8")

    def reencrypt(self, ciphertext: bytes, *, purpose: str) -> bytes:
        """The same plaintext sealed again under the primary key."""
        return self.encrypt(self.decrypt(ciphertext, purpose=purpose), purpose=purpose)


# Keys from text -----------------------------------------------------------------------------


def generate_key() -> str:
    """A new key, encoded for MAILTRAWL_SECRET_KEY or the key file."""
    return SecretKey.generate().encode()


def parse_keys(text: str, *, origin: str) -> tuple[SecretKey, ...]:
    """Keys separated by newlines or commas; blank lines and `#` comments are ignored."""
    keys: list[SecretKey] = []
    for line in text.splitlines():
        content = line.split("#", 1)[0]
        keys.extend(
            SecretKey.decode(part, origin=origin) for part in content.split(",") if part.strip()
        )
    # A key listed twice (say, during a hand-made rotation) counts once, at its first place.
    unique: dict[str, SecretKey] = {}
    for key in keys:
        unique.setdefault(key.key_id, key)
    return tuple(unique.values())


# The key file -------------------------------------------------------------------------------


def check_key_file_permissions(path: Path) -> None:
    """Raise `KeyFileInsecure` unless only the owner can read and write `path`."""
    if os.name != "posix":  # pragma: no cover - POSIX modes do not apply
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileInsecure(path=path, mode=mode)


def read_key_file(path: Path) -> tuple[SecretKey, ...]:
    """The keys in `path`, after checking its permissions.

    Raises `KeyMissing` if the file is absent or empty, `KeyFileInsecure` if it is readable
    by others, and `InvalidKey` if a line is not a key.
    """
    try:
        check_key_file_permissions(path)
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyMissing(
            f"The key file {path} does not exist; restore it from backup, set "
            "MAILTRAWL_SECRET_KEY, or run `mailtrawl db upgrade` on a new installation to "
            "create one."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyMissing(
            f"The key file {path} cannot be read ({type(exc).__name__}); check that it "
            "belongs to the user running mailtrawl."
        ) from None
    keys = parse_keys(text, origin=f"the key file {path}")
    if not keys:
        raise KeyMissing(
            f"The key file {path} holds no key; restore it from backup or set MAILTRAWL_SECRET_KEY."
        )
    return keys


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private_temp(path: Path, keys: tuple[SecretKey, ...]) -> Path:
    """Write `keys` to a fresh 0600 file beside `path` and return its name."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    content = KEY_FILE_HEADER + "".join(f"{key.encode()}\n" for key in keys)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, content.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return temp


def write_key_file(path: Path, keys: tuple[SecretKey, ...]) -> None:
    """Replace the key file with `keys` atomically: readers see the old or the new file whole."""
    temp = _write_private_temp(path, keys)
    try:
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def create_key_file(path: Path) -> bool:
    """Create `path` holding one new key, unless it exists; True if this call created it.

    The file appears complete or not at all, so two processes starting at once agree on
    one key.
    """
    temp = _write_private_temp(path, (SecretKey.generate(),))
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


# Factories ----------------------------------------------------------------------------------


def load_keyring(settings: Settings, *, create: bool = False) -> KeyRing:
    """The key ring from MAILTRAWL_SECRET_KEY, else from the key file.

    With `create`, a missing key file is created (0600, in a 0700 folder) with a new key; the
    returned ring then has `created=True`.
    """
    if settings.secret_key is not None:
        keys = parse_keys(settings.secret_key.get_secret_value(), origin="MAILTRAWL_SECRET_KEY")
        if not keys:
            raise KeyMissing(
                "MAILTRAWL_SECRET_KEY is set but empty; put a key in it (`mailtrawl keys "
                "generate`) or unset it to use the key file."
            )
        return KeyRing(keys=keys, source="environment")
    path = settings.secret_key_file
    created = create and not path.exists() and create_key_file(path)
    return KeyRing(keys=read_key_file(path), source="file", path=path, created=created)


def open_secret_box(settings: Settings, *, create_key: bool = True) -> SecretBox:
    """A `SecretBox` over `load_keyring(settings, create=create_key)`."""
    return SecretBox(load_keyring(settings, create=create_key))


# Display ------------------------------------------------------------------------------------


def mask(secret: str | SecretStr, *, visible: int = 4) -> str:
    """`••••` plus the last `visible` characters, shown only when they are a small part of it.

    Secrets shorter than four times `visible` show no characters at all.
    """
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if visible <= 0 or len(value) < 4 * visible:
        return MASK
    return MASK + value[-visible:]


def credential_hint(secret: str, *, visible: int = 4) -> str | None:
    """The characters `mask` would show (stored beside a credential), or None if too short."""
    shown = mask(secret, visible=visible)
    return shown[len(MASK) :] or None


__all__ = [
    "MASK",
    "KeyRing",
    "SecretBox",
    "SecretKey",
    "check_key_file_permissions",
    "create_key_file",
    "credential_hint",
    "generate_key",
    "key_id_of",
    "load_keyring",
    "mask",
    "open_secret_box",
    "parse_keys",
    "read_key_file",
    "write_key_file",
]
