"""The errors mailtrawl raises on purpose; `str(error)` is a sentence that says what to do.

    MailtrawlError
    ├── ConfigError                   a setting or the TOML file is invalid
    ├── StorageError
    │   ├── DatabaseUnreachable       cannot connect to the database
    │   └── MigrationFailed           the schema could not be brought to the head revision
    ├── SecretsError
    │   ├── KeyMissing                no encryption key (file absent, variable empty)
    │   ├── InvalidKey                a key is not 32 bytes of URL-safe base64
    │   ├── KeyFileInsecure           the key file is readable by group or others
    │   └── DecryptionFailed          wrong key, unknown key id or tampered ciphertext
    └── ProviderError                 a mail platform refused or failed a request
        ├── AuthFailed(aadsts=...)    token acquisition failed (Entra ID AADSTS code)
        ├── PermissionMissing(role=.) the app lacks an application permission
        ├── Throttled(retry_after=.)  the platform asked us to slow down
        ├── MailboxUnavailable        no mailbox, inactive, or outside an access policy
        ├── NotFound                  the message, folder or user no longer exists
        └── ProviderUnavailable       the platform kept failing after retries

Messages never contain secret values: callers pass names, ids and paths, not credentials.
Interfaces (CLI, API, dashboard) show `str(error)` and never a stack trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class MailtrawlError(Exception):
    """Base of every error mailtrawl raises on purpose."""

    default_message: ClassVar[str] = (
        "mailtrawl could not complete the operation; run `mailtrawl doctor` to find out why."
    )

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class ConfigError(MailtrawlError):
    """A setting, environment variable or configuration file is invalid."""

    default_message = (
        "The settings are invalid; fix the MAILTRAWL_* environment variables or the TOML file."
    )


# Storage -----------------------------------------------------------------------------------


class StorageError(MailtrawlError):
    """The database failed or is not in the expected state."""

    default_message = "The database failed; run `mailtrawl doctor` to check it."


class DatabaseUnreachable(StorageError):
    """Connecting to the database failed."""

    def __init__(self, message: str | None = None, *, url: str | None = None) -> None:
        self.url = url  # already masked by the caller
        target = f" at {url}" if url else ""
        super().__init__(
            message
            or f"Cannot connect to the database{target}; check MAILTRAWL_DATABASE_URL and that "
            "the server is running."
        )


class MigrationFailed(StorageError):
    """Alembic could not upgrade the schema."""

    default_message = (
        "The database schema could not be upgraded; fix the cause above and run "
        "`mailtrawl db upgrade` again (nothing was half-applied: each upgrade is one transaction)."
    )


# Secrets -----------------------------------------------------------------------------------


class SecretsError(MailtrawlError):
    """Encryption keys or encrypted values are unusable."""

    default_message = "The encryption key is unusable; run `mailtrawl doctor` to check it."


class KeyMissing(SecretsError):
    """No encryption key is available."""

    default_message = (
        "No encryption key is available; set MAILTRAWL_SECRET_KEY or restore the key file, "
        "or run `mailtrawl db upgrade` on a new installation to create one."
    )


class InvalidKey(SecretsError):
    """A configured key is malformed."""

    default_message = (
        "An encryption key is malformed: each key must be 32 random bytes in URL-safe base64 "
        "(create one with `mailtrawl keys generate`)."
    )


class KeyFileInsecure(SecretsError):
    """The key file grants access to group or others."""

    def __init__(self, message: str | None = None, *, path: Path, mode: int) -> None:
        self.path = path
        self.mode = mode
        super().__init__(
            message
            or f"The key file {path} has permissions {mode:04o}, readable by other users; "
            f"run `chmod 600 {path}` and check who may have copied it."
        )


class DecryptionFailed(SecretsError):
    """A stored value cannot be decrypted with the available keys."""

    def __init__(self, message: str | None = None, *, key_id: str | None = None) -> None:
        self.key_id = key_id
        super().__init__(
            message
            or "A stored credential cannot be decrypted: it was encrypted under another key or "
            "was altered. Restore the key used (MAILTRAWL_SECRET_KEY or the key file) or "
            "re-enter the credential."
        )


# Providers ---------------------------------------------------------------------------------


class ProviderError(MailtrawlError):
    """A mail platform refused or failed a request."""

    default_message = (
        "The mail platform refused the request; test the mail configuration to see which "
        "check fails."
    )


class AuthFailed(ProviderError):
    """Token acquisition failed; `aadsts` is Entra ID's error code when there is one."""

    def __init__(
        self,
        message: str | None = None,
        *,
        aadsts: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.aadsts = aadsts
        self.correlation_id = correlation_id
        code = f" (AADSTS{aadsts})" if aadsts is not None else ""
        super().__init__(
            message
            or f"Microsoft Entra ID refused the sign-in{code}; check the tenant, client id and "
            "credential of this mail configuration, then test it again."
        )


class PermissionMissing(ProviderError):
    """The app registration lacks an application permission (role)."""

    def __init__(self, message: str | None = None, *, role: str) -> None:
        self.role = role
        super().__init__(
            message
            or f"The app registration lacks the {role} application permission; add it under "
            "API permissions and grant admin consent (Microsoft can take a few minutes to "
            "apply it)."
        )


class Throttled(ProviderError):
    """The platform asked us to slow down; `retry_after` is in seconds when it said."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        wait = f" for {retry_after:g} s" if retry_after is not None else ""
        super().__init__(
            message
            or f"The mail platform is throttling requests{wait}; mailtrawl retries on its own, "
            "and if this persists, lower the concurrency or run fewer investigations at once."
        )


class MailboxUnavailable(ProviderError):
    """The mailbox does not exist, is inactive, or is outside the app's access policy."""

    def __init__(self, message: str | None = None, *, mailbox: str | None = None) -> None:
        self.mailbox = mailbox
        name = f" {mailbox}" if mailbox else ""
        super().__init__(
            message
            or f"The mailbox{name} cannot be reached: it may have no Exchange Online licence, be "
            "inactive, or be outside the app's application access policy; check it in the "
            "Exchange admin center."
        )


class NotFound(ProviderError):
    """The item no longer exists on the platform."""

    def __init__(self, message: str | None = None, *, what: str | None = None) -> None:
        self.what = what
        subject = what or "The item"
        super().__init__(
            message
            or f"{subject} was not found; it may have been moved or deleted. Refresh and try again."
        )


class ProviderUnavailable(ProviderError):
    """The platform kept failing (5xx, timeouts) after the retry budget was spent."""

    default_message = (
        "The mail platform is not answering after several retries; check its service health "
        "page and try again later."
    )


__all__ = [
    "AuthFailed",
    "ConfigError",
    "DatabaseUnreachable",
    "DecryptionFailed",
    "InvalidKey",
    "KeyFileInsecure",
    "KeyMissing",
    "MailboxUnavailable",
    "MailtrawlError",
    "MigrationFailed",
    "NotFound",
    "PermissionMissing",
    "ProviderError",
    "ProviderUnavailable",
    "SecretsError",
    "StorageError",
    "Throttled",
]
