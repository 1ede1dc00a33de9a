"""Why an account operation was refused; `str(error)` says what to do.

MailtrawlError
└── AccountError
    ├── UsernameRejected      the username is empty, too long or has odd characters
    ├── PasswordRejected      the new password breaks the password policy
    ├── UserExists            the username is taken (whatever the case)
    ├── UserNotFound          no user with that id or name
    ├── LoginRefused          wrong username or password, or the account is disabled
    ├── LoginThrottled        too many failed sign-ins; `retry_after_seconds`
    ├── WrongPassword         the current password given to change it is wrong
    ├── LastAdmin             the change would leave no active administrator
    └── RoleTooHigh           a user's token cannot have more than the user's role
"""

from __future__ import annotations

import math

from mailtrawl.errors import MailtrawlError


class AccountError(MailtrawlError):
    """An account operation was refused."""

    default_message = "The account operation was refused."


class UsernameRejected(AccountError):
    default_message = (
        "A username is 1 to 64 characters: letters, digits and . _ @ - (it is not case-sensitive)."
    )


class PasswordRejected(AccountError):
    default_message = "The password was rejected: use at least 12 characters."


class UserExists(AccountError):
    def __init__(self, message: str | None = None, *, username: str = "") -> None:
        self.username = username
        super().__init__(message or f"A user named '{username}' exists already; pick another name.")


class UserNotFound(AccountError):
    default_message = "No such user; `mailtrawl users list` shows them."


class LoginRefused(AccountError):
    # One sentence for unknown users, wrong passwords and disabled accounts alike.
    default_message = "Wrong username or password."


class LoginThrottled(AccountError):
    """Too many failed sign-ins from this address (for this username, or for any)."""

    def __init__(self, retry_after_seconds: float, message: str | None = None) -> None:
        self.retry_after_seconds = max(1, math.ceil(retry_after_seconds))
        super().__init__(
            message
            or "Too many failed sign-ins; wait "
            f"{self.retry_after_seconds} seconds before trying again."
        )


class WrongPassword(AccountError):
    default_message = "The current password is wrong; the password was not changed."


class LastAdmin(AccountError):
    default_message = (
        "This would leave no active administrator; make another user an administrator first."
    )


class RoleTooHigh(AccountError):
    default_message = "A token cannot have a higher role than the user it belongs to."


__all__ = [
    "AccountError",
    "LastAdmin",
    "LoginRefused",
    "LoginThrottled",
    "PasswordRejected",
    "RoleTooHigh",
    "UserExists",
    "UserNotFound",
    "UsernameRejected",
    "WrongPassword",
]
