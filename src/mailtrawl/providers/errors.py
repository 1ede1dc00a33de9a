"""Provider errors that `mailtrawl.errors` does not define, each a subclass of one that it does.

ProviderError
├── AuthFailed
│   └── TokenRequestFailed        the identity platform answered an error (code + text)
├── MailboxUnavailable
│   └── AccessPolicyBlocked       an application access policy keeps the app out
├── ProviderUnavailable
│   └── OutcomeUnknown            the connection broke after a change was sent
├── RequestRejected               the platform refused the request itself (400, 409 ...)
└── CursorExpired                 a change cursor is no longer valid: resynchronise
"""

from __future__ import annotations

from mailtrawl.errors import AuthFailed, MailboxUnavailable, ProviderError, ProviderUnavailable


class TokenRequestFailed(AuthFailed):
    """The token endpoint refused; `error` is the OAuth error, `description` Entra's text."""

    def __init__(
        self,
        message: str | None = None,
        *,
        aadsts: int | None = None,
        error: str | None = None,
        description: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.error = error
        self.description = description
        super().__init__(message, aadsts=aadsts, correlation_id=correlation_id)


class AccessPolicyBlocked(MailboxUnavailable):
    """An Exchange application access policy (or RBAC scope) excludes this mailbox."""

    def __init__(self, message: str | None = None, *, mailbox: str | None = None) -> None:
        name = f" {mailbox}" if mailbox else ""
        super().__init__(
            message
            or f"The mailbox{name} is outside the app's application access policy in Exchange "
            "Online; add it to the policy's group, or leave it out of the scope.",
            mailbox=mailbox,
        )


class MailboxNotAuthorized(MailboxUnavailable):
    """The mailbox is outside the configuration's authorized domains: never touched."""

    def __init__(self, message: str | None = None, *, mailbox: str | None = None) -> None:
        super().__init__(
            message
            or f"{mailbox or 'The mailbox'} is outside this configuration's authorized domains, "
            "so mailtrawl does not touch it; add its domain to the configuration if it belongs.",
            mailbox=mailbox,
        )


class OutcomeUnknown(ProviderUnavailable):
    """The connection broke after a non-repeatable change was sent: it may have happened."""

    default_message = (
        "The connection to the mail platform broke after a change was sent, so it is not known "
        "whether it was applied; check the item before repeating the change."
    )


class RequestRejected(ProviderError):
    """The platform refused the request as invalid or unsupported (not a transient failure)."""

    def __init__(
        self, message: str | None = None, *, status: int | None = None, code: str | None = None
    ) -> None:
        self.status = status
        self.code = code
        super().__init__(
            message
            or f"The mail platform refused the request ({status} {code}); this is a bug in "
            "mailtrawl or an unsupported query, please report it."
        )


class CursorExpired(ProviderError):
    """A stored change cursor (Graph delta link) expired; a full synchronisation is needed."""

    default_message = (
        "The saved position in the mailbox's change feed expired; mailtrawl starts a full "
        "synchronisation of the folder."
    )


__all__ = [
    "AccessPolicyBlocked",
    "CursorExpired",
    "MailboxNotAuthorized",
    "OutcomeUnknown",
    "RequestRejected",
    "TokenRequestFailed",
]
