"""Which mailboxes an investigation covers, and which ones were left out and why."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from mailtrawl.core.mail import MailboxRef


class ScopeKind(enum.StrEnum):
    ALL = "all"
    GROUPS = "groups"  # nested membership included
    DEPARTMENTS = "departments"
    USERS = "users"


@dataclass(frozen=True, slots=True)
class Scope:
    """All users, or the members of groups, or departments, or listed users."""

    kind: ScopeKind = ScopeKind.ALL
    values: tuple[str, ...] = ()

    @classmethod
    def all(cls) -> Scope:
        return cls(ScopeKind.ALL)

    @classmethod
    def groups(cls, *names: str) -> Scope:
        """Groups by id, display name or mail address."""
        return cls(ScopeKind.GROUPS, tuple(names))

    @classmethod
    def departments(cls, *names: str) -> Scope:
        return cls(ScopeKind.DEPARTMENTS, tuple(names))

    @classmethod
    def users(cls, *names: str) -> Scope:
        """Users by id, user principal name or mail address."""
        return cls(ScopeKind.USERS, tuple(names))

    def __post_init__(self) -> None:
        if self.kind is not ScopeKind.ALL and not self.values:
            raise ValueError(f"a '{self.kind}' scope needs at least one value")


class SkipReason(enum.StrEnum):
    DISABLED = "disabled"
    NO_MAILBOX = "no-mailbox"
    OUTSIDE_AUTHORIZED_DOMAINS = "outside-authorized-domains"
    NOT_FOUND = "not-found"
    ACCESS_POLICY = "access-policy"


SKIP_EXPLANATIONS: dict[SkipReason, str] = {
    SkipReason.DISABLED: "the account is disabled",
    SkipReason.NO_MAILBOX: "the user has no mailbox",
    SkipReason.OUTSIDE_AUTHORIZED_DOMAINS: (
        "the mailbox is outside the configuration's authorized domains"
    ),
    SkipReason.NOT_FOUND: "no such user or group in the directory",
    SkipReason.ACCESS_POLICY: "an application access policy keeps the app out of this mailbox",
}


@dataclass(frozen=True, slots=True)
class SkippedMailbox:
    """A user (or a name that matched nothing) left out of the scope."""

    name: str
    reason: SkipReason
    mailbox: MailboxRef | None = None

    @property
    def explanation(self) -> str:
        return SKIP_EXPLANATIONS[self.reason]


@dataclass(frozen=True, slots=True)
class ScopeResolution:
    mailboxes: tuple[MailboxRef, ...]
    skipped: tuple[SkippedMailbox, ...] = ()


def _normalise_domain(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def domain_authorized(address: str, authorized: Iterable[str] | None) -> bool:
    """Whether an address's domain is one of the authorized domains (exact, case-insensitive).

    None means no restriction; an empty collection authorizes nothing.
    """
    if authorized is None:
        return True
    domain = _normalise_domain(address.rpartition("@")[2]) if "@" in address else ""
    return bool(domain) and domain in {_normalise_domain(d) for d in authorized}
