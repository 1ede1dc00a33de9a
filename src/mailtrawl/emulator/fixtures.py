"""Tenant fixtures: a directory holding `tenant.json` (and the files it refers to).

Format
======

One JSON object. Paths inside are relative to the directory holding `tenant.json` and may not
leave it. Unknown keys are errors, so typos fail loudly; every error names its JSON path,
for example ``users[3].userPrincipalName: missing``.

```
{
  "tenant": {
    "id": GUID,                                  # optional; derived from the name and domain
    "displayName": str,
    "domains": [str, ...]                        # verified domains, the first is the default
  },
  "apps": [{
    "clientId": GUID,                            # optional; derived from displayName
    "displayName": str,
    "secrets": [{"id"?: GUID, "value": str, "expires"?: ISO 8601 (default 2099-12-31),
                 "displayName"?: str}],
    "certificates": [{"id"?: GUID, "pem": str | "pemFile": path,   # public certificate, PEM
                      "expires"?: ISO 8601}],    # default: the certificate's notAfter
    "permissions": {"Mail.ReadWrite": true, "User.Read.All": false}   # true = admin consent
  }],
  "users": [{
    "id"?: GUID,                                 # default: derived from the UPN
    "userPrincipalName": str,                    # its domain must be a verified domain
    "displayName": str,
    "mail"?: str,                                # default: the UPN when the user has a mailbox
    "givenName"?, "surname"?, "department"?, "jobTitle"?, "officeLocation"?: str,
    "accountEnabled"?: bool (true), "hasMailbox"?: bool (true),
    "createdDateTime"?: ISO 8601                 # default: derived from the UPN
  }],
  "groups": [{
    "id"?: GUID,                                 # default: derived from displayName
    "displayName": str,                          # unique: members refer to groups by it
    "mail"?: str, "description"?: str, "securityEnabled"?: bool, "mailEnabled"?: bool,
    "groupTypes"?: [str],
    "members": [UPN | mail | group displayName | user or group id]   # nested groups allowed,
  }],                                                                # cycles are not
  "accessPolicies": [{"appId": GUID, "group": displayName | id,
                      "mode"?: "RestrictAccess" | "DenyAccess"}],
  "messages": [{
    "mailbox": UPN,                              # a user with a mailbox
    "folder"?: str,                              # well-known name ("inbox", "junkemail", …),
                                                 # display name, or a path "Inbox/Reported";
                                                 # missing folders are created; default inbox
    "received"?: ISO 8601, "isRead"?: bool, "categories"?: [str],
    "flagStatus"?: "notFlagged" | "flagged" | "complete",
    "inferenceClassification"?: "focused" | "other",
    # either a raw message
    "eml": path,
    # or a structured one (built into a MIME document and parsed, like raw mail)
    "subject"?: str, "from": "Name <address>", "sender"?: str, "to"?: [str], "cc"?: [str],
    "bcc"?: [str], "replyTo"?: [str], "body"?: str, "bodyType"?: "text" | "html",
    "headers"?: {name: value} | [[name, value], ...], "importance"?: "low"|"normal"|"high",
    "sent"?: ISO 8601, "internetMessageId"?: str,
    "attachments"?: [{"name": str, "contentType"?: str, "contentBase64": str | "text": str |
                      "file": path, "inline"?: bool, "contentId"?: str} | {"eml": path}]
  }],
  "generator": {                                 # optional: lazily generated mailbox content
    "version"?: 1, "seed": int, "messagesPerMailbox": int, "campaigns"?: int (0),
    "epoch"?: ISO 8601, "windowDays"?: int (30), "mailboxes"?: "all" | [UPN, ...]
  }
}
```

Received times: `received`, else (raw messages) the newest Received header, else the Date
header, else 2025-01-01T00:00:00Z: never "now", so a mailbox always rebuilds identically.
A structured message without `internetMessageId` gets one derived from its content, so the
same message listed for several mailboxes has one id, as a real delivery would.

`load_tenant()` returns the tenant (users, groups, apps, policies; ids derived
deterministically where omitted) and `build_mailbox(user)`, a pure function: generated
content first (when there is a `generator` section), then the user's fixture messages, with
the same ids every time. Fixture messages are parsed once at load and kept as parsed data,
so rebuilding a mailbox the server dropped from memory is cheap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal

from mailtrawl.emulator.generator import (
    DEFAULT_EPOCH,
    DEFAULT_WINDOW_DAYS,
    MAX_CAMPAIGNS,
    MAX_MESSAGES_PER_MAILBOX,
    GeneratedContent,
    GeneratorSpec,
)
from mailtrawl.emulator.mime import (
    MAX_MIME_BYTES,
    MimeError,
    ParsedMail,
    message_from_parsed,
    parse_rfc822,
    rfc822_from_message,
)
from mailtrawl.emulator.state import (
    WELL_KNOWN_FOLDERS,
    AccessPolicy,
    App,
    Attachment,
    BodyType,
    Certificate,
    EmailAddress,
    Folder,
    Group,
    Mailbox,
    Message,
    Secret,
    Tenant,
    User,
    deterministic_uuid,
    graph_id,
    new_mailbox,
)

__all__ = ["FIXTURE_EPOCH", "FixtureError", "LoadedTenant", "load_tenant"]

# The received time of fixture messages that give none and carry no dates.
FIXTURE_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_DEFAULT_EXPIRY = datetime(2099, 12, 31, tzinfo=UTC)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,200}$")
_WELL_KNOWN = {name for name, _display, _visible in WELL_KNOWN_FOLDERS}
_MAX_FIXTURE_FILE = MAX_MIME_BYTES


class FixtureError(ValueError):
    """A tenant fixture is invalid; `path` is the JSON path (or file) at fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.detail = message


@dataclass(frozen=True, slots=True)
class _FixtureMessage:
    folder: str
    parsed: ParsedMail
    received: datetime
    is_read: bool
    categories: tuple[str, ...]
    flag_status: str
    inference: str | None


@dataclass
class LoadedTenant:
    """A loaded fixture: the tenant and the deterministic builder of its mailboxes."""

    tenant: Tenant
    build_mailbox: Callable[[User], Mailbox]
    source: Path
    generated: GeneratedContent | None = None
    # Users whose mailboxes hold fixture-defined messages.
    fixture_mailboxes: frozenset[str] = field(default_factory=frozenset)


# --------------------------------------------------------------------------- JSON readers


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FixtureError(path, "must be an object")
    return value


def _keys(obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise FixtureError(f"{path}.{key}" if path else key, "unknown field")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _string(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise FixtureError(_join(path, key), "missing")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise FixtureError(_join(path, key), "must be a string")
    if required and not value.strip():
        raise FixtureError(_join(path, key), "must not be empty")
    return value


def _required(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = _string(obj, key, path, required=True)
    assert value is not None
    return value


def _bool(obj: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise FixtureError(_join(path, key), "must be true or false")
    return value


def _int_field(
    obj: Mapping[str, Any], key: str, path: str, default: int | None, low: int, high: int
) -> int:
    if key not in obj:
        if default is None:
            raise FixtureError(_join(path, key), "missing")
        return default
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise FixtureError(_join(path, key), "must be an integer")
    if not low <= value <= high:
        raise FixtureError(_join(path, key), f"must be between {low} and {high}")
    return value


def _list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise FixtureError(_join(path, key), "must be a list")
    return value


def _strings(obj: Mapping[str, Any], key: str, path: str) -> list[str]:
    values = _list(obj, key, path)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise FixtureError(f"{_join(path, key)}[{i}]", "must be a string")
    return values


def _guid(value: str, path: str) -> str:
    if not _GUID.match(value):
        raise FixtureError(path, f"'{value}' is not a GUID")
    return value.lower()


def _when(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise FixtureError(path, "must be an ISO 8601 date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise FixtureError(path, f"'{value}' is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _file(root: Path, value: Any, path: str) -> bytes:
    """Bytes of a file named relative to the fixture directory, which it may not leave."""
    if not isinstance(value, str) or not value.strip():
        raise FixtureError(path, "must be a relative file path")
    relative = Path(value)
    if relative.is_absolute():
        raise FixtureError(path, "must be relative to the fixture directory")
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise FixtureError(path, "must stay inside the fixture directory")
    if not target.is_file():
        raise FixtureError(path, f"file not found: {value}")
    if target.stat().st_size > _MAX_FIXTURE_FILE:
        raise FixtureError(path, f"file is larger than {_MAX_FIXTURE_FILE} bytes")
    return target.read_bytes()


# --------------------------------------------------------------------------- sections


def _tenant(doc: Mapping[str, Any]) -> Tenant:
    if "tenant" not in doc:
        raise FixtureError("tenant", "missing")
    obj = _object(doc["tenant"], "tenant")
    _keys(obj, {"id", "displayName", "domains"}, "tenant")
    name = _required(obj, "displayName", "tenant")
    domains = _strings(obj, "domains", "tenant")
    if not domains:
        raise FixtureError("tenant.domains", "at least one verified domain is required")
    clean: list[str] = []
    for i, domain in enumerate(domains):
        low = domain.strip().lower()
        if not _DOMAIN.match(low):
            raise FixtureError(f"tenant.domains[{i}]", f"'{domain}' is not a domain name")
        if low in clean:
            raise FixtureError(f"tenant.domains[{i}]", f"duplicate domain '{domain}'")
        clean.append(low)
    raw_id = _string(obj, "id", "tenant")
    tenant_id = (
        _guid(raw_id, "tenant.id")
        if raw_id is not None
        else deterministic_uuid("fixture-tenant", name, clean[0])
    )
    return Tenant(id=tenant_id, display_name=name, domains=clean)


def _certificate(
    root: Path, obj: Mapping[str, Any], path: str, client_id: str, index: int
) -> Certificate:
    from mailtrawl.emulator.certificates import certificate_from_pem

    _keys(obj, {"id", "pem", "pemFile", "expires"}, path)
    if ("pem" in obj) == ("pemFile" in obj):
        raise FixtureError(path, "give exactly one of pem or pemFile")
    if "pem" in obj:
        pem = _required(obj, "pem", path).encode()
    else:
        pem = _file(root, obj["pemFile"], _join(path, "pemFile"))
    raw_id = _string(obj, "id", path)
    try:
        return certificate_from_pem(
            pem,
            cert_id=_guid(raw_id, _join(path, "id"))
            if raw_id
            else deterministic_uuid("fixture-cert", client_id, index),
            expires=_when(obj["expires"], _join(path, "expires")) if "expires" in obj else None,
        )
    except ValueError as exc:
        raise FixtureError(path, f"not a PEM certificate ({exc})") from None


def _apps(root: Path, doc: Mapping[str, Any], tenant: Tenant) -> None:
    for i, entry in enumerate(_list(doc, "apps", "")):
        path = f"apps[{i}]"
        obj = _object(entry, path)
        _keys(
            obj,
            {"clientId", "displayName", "secrets", "certificates", "permissions", "objectId"},
            path,
        )
        name = _required(obj, "displayName", path)
        raw_id = _string(obj, "clientId", path)
        client_id = (
            _guid(raw_id, f"{path}.clientId")
            if raw_id is not None
            else deterministic_uuid("fixture-app", tenant.id, name)
        )
        if client_id in tenant.apps:
            raise FixtureError(f"{path}.clientId", f"duplicate clientId '{client_id}'")
        app = App(client_id=client_id, display_name=name)
        raw_object = _string(obj, "objectId", path)
        app.object_id = (
            _guid(raw_object, f"{path}.objectId")
            if raw_object
            else deterministic_uuid("fixture-sp", tenant.id, client_id)
        )
        for j, secret_entry in enumerate(_list(obj, "secrets", path)):
            spath = f"{path}.secrets[{j}]"
            secret = _object(secret_entry, spath)
            _keys(secret, {"id", "value", "expires", "displayName"}, spath)
            value = _required(secret, "value", spath)
            raw_secret_id = _string(secret, "id", spath)
            app.secrets.append(
                Secret(
                    id=_guid(raw_secret_id, f"{spath}.id")
                    if raw_secret_id
                    else deterministic_uuid("fixture-secret", client_id, j),
                    value=value,
                    hint=value[:3],
                    expires=_when(secret["expires"], f"{spath}.expires")
                    if "expires" in secret
                    else _DEFAULT_EXPIRY,
                    display_name=_string(secret, "displayName", spath) or "",
                )
            )
        for j, cert_entry in enumerate(_list(obj, "certificates", path)):
            cpath = f"{path}.certificates[{j}]"
            app.certificates.append(
                _certificate(root, _object(cert_entry, cpath), cpath, client_id, j)
            )
        permissions = _object(obj.get("permissions", {}), f"{path}.permissions")
        for permission, consented in permissions.items():
            if not isinstance(consented, bool):
                raise FixtureError(f"{path}.permissions.{permission}", "must be true or false")
            app.permissions[permission] = consented
        tenant.apps[client_id] = app


def _created(upn: str) -> datetime:
    days = int.from_bytes(hashlib.sha256(upn.lower().encode()).digest()[:4], "big") % 1500
    return datetime(2021, 1, 1, tzinfo=UTC) + timedelta(days=days)


def _users(doc: Mapping[str, Any], tenant: Tenant) -> None:
    fields = {
        "id",
        "userPrincipalName",
        "displayName",
        "mail",
        "givenName",
        "surname",
        "department",
        "jobTitle",
        "officeLocation",
        "accountEnabled",
        "hasMailbox",
        "createdDateTime",
    }
    verified = set(tenant.domains)
    for i, entry in enumerate(_list(doc, "users", "")):
        path = f"users[{i}]"
        obj = _object(entry, path)
        _keys(obj, fields, path)
        upn = _required(obj, "userPrincipalName", path).strip()
        local, at, domain = upn.rpartition("@")
        if not at or not local or not domain:
            raise FixtureError(f"{path}.userPrincipalName", f"'{upn}' is not user@domain")
        if domain.lower() not in verified:
            raise FixtureError(
                f"{path}.userPrincipalName", f"domain '{domain}' is not a verified tenant domain"
            )
        if tenant.user(upn) is not None:
            raise FixtureError(f"{path}.userPrincipalName", f"duplicate user '{upn}'")
        raw_id = _string(obj, "id", path)
        user_id = (
            _guid(raw_id, f"{path}.id")
            if raw_id is not None
            else deterministic_uuid("fixture-user", tenant.id, upn.lower())
        )
        if user_id in tenant.users:
            raise FixtureError(f"{path}.id", f"duplicate id '{user_id}'")
        has_mailbox = _bool(obj, "hasMailbox", path, True)
        mail = _string(obj, "mail", path)
        user = User(
            id=user_id,
            user_principal_name=upn,
            display_name=_required(obj, "displayName", path),
            mail=mail if mail is not None else (upn if has_mailbox else None),
            given_name=_string(obj, "givenName", path),
            surname=_string(obj, "surname", path),
            department=_string(obj, "department", path),
            job_title=_string(obj, "jobTitle", path),
            office_location=_string(obj, "officeLocation", path),
            account_enabled=_bool(obj, "accountEnabled", path, True),
            has_mailbox=has_mailbox,
            created=_when(obj["createdDateTime"], f"{path}.createdDateTime")
            if "createdDateTime" in obj
            else _created(upn),
        )
        tenant.add_user(user)


def _groups(doc: Mapping[str, Any], tenant: Tenant) -> None:
    entries = _list(doc, "groups", "")
    by_name: dict[str, str] = {}
    by_mail: dict[str, str] = {}
    pending: list[tuple[Group, list[str], str]] = []
    for i, entry in enumerate(entries):
        path = f"groups[{i}]"
        obj = _object(entry, path)
        _keys(
            obj,
            {
                "id",
                "displayName",
                "mail",
                "description",
                "securityEnabled",
                "mailEnabled",
                "groupTypes",
                "members",
            },
            path,
        )
        name = _required(obj, "displayName", path)
        if name.lower() in by_name:
            raise FixtureError(f"{path}.displayName", f"duplicate group name '{name}'")
        raw_id = _string(obj, "id", path)
        group_id = (
            _guid(raw_id, f"{path}.id")
            if raw_id is not None
            else deterministic_uuid("fixture-group", tenant.id, name.lower())
        )
        if group_id in tenant.groups or group_id in tenant.users:
            raise FixtureError(f"{path}.id", f"duplicate id '{group_id}'")
        mail = _string(obj, "mail", path)
        group = Group(
            id=group_id,
            display_name=name,
            mail=mail,
            description=_string(obj, "description", path),
            security_enabled=_bool(obj, "securityEnabled", path, True),
            mail_enabled=_bool(obj, "mailEnabled", path, mail is not None),
            group_types=_strings(obj, "groupTypes", path),
        )
        tenant.groups[group_id] = group
        by_name[name.lower()] = group_id
        if mail:
            by_mail[mail.lower()] = group_id
        pending.append((group, _strings(obj, "members", path), path))
    for group, members, path in pending:
        for j, reference in enumerate(members):
            mpath = f"{path}.members[{j}]"
            member_id = _member(tenant, reference, by_name, by_mail)
            if member_id is None:
                raise FixtureError(mpath, f"no user or group '{reference}'")
            if member_id == group.id:
                raise FixtureError(mpath, "a group cannot be a member of itself")
            if member_id in group.member_ids:
                raise FixtureError(mpath, f"duplicate member '{reference}'")
            group.member_ids.append(member_id)
    _reject_cycles(tenant, pending)


def _member(
    tenant: Tenant, reference: str, by_name: Mapping[str, str], by_mail: Mapping[str, str]
) -> str | None:
    ref = reference.strip()
    if "@" in ref:
        user = tenant.user(ref)
        return user.id if user is not None else by_mail.get(ref.lower())
    if ref in tenant.users or ref.lower() in tenant.users:
        return ref.lower() if ref.lower() in tenant.users else ref
    if ref.lower() in tenant.groups:
        return ref.lower()
    return by_name.get(ref.lower())


def _reject_cycles(tenant: Tenant, pending: Sequence[tuple[Group, list[str], str]]) -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    for group, _members, path in pending:
        if state.get(group.id) == 2:
            continue
        stack: list[tuple[str, int]] = [(group.id, 0)]
        state[group.id] = 1
        while stack:
            current, position = stack[-1]
            members = [m for m in tenant.groups[current].member_ids if m in tenant.groups]
            if position >= len(members):
                state[current] = 2
                stack.pop()
                continue
            stack[-1] = (current, position + 1)
            child = members[position]
            if state.get(child) == 1:
                raise FixtureError(
                    f"{path}.members",
                    f"nested groups form a cycle through '{tenant.groups[child].display_name}'",
                )
            if state.get(child) is None:
                state[child] = 1
                stack.append((child, 0))


def _policies(doc: Mapping[str, Any], tenant: Tenant) -> None:
    for i, entry in enumerate(_list(doc, "accessPolicies", "")):
        path = f"accessPolicies[{i}]"
        obj = _object(entry, path)
        _keys(obj, {"appId", "group", "mode"}, path)
        app_id = _guid(_required(obj, "appId", path), f"{path}.appId")
        if app_id not in tenant.apps:
            raise FixtureError(f"{path}.appId", f"no app with clientId '{app_id}'")
        reference = _required(obj, "group", path)
        group_id = next(
            (
                g.id
                for g in tenant.groups.values()
                if g.id == reference.lower() or g.display_name.lower() == reference.lower()
            ),
            None,
        )
        if group_id is None:
            raise FixtureError(f"{path}.group", f"no group '{reference}'")
        mode = obj.get("mode", "RestrictAccess")
        if mode not in ("RestrictAccess", "DenyAccess"):
            raise FixtureError(f"{path}.mode", "must be RestrictAccess or DenyAccess")
        policy_mode: Literal["RestrictAccess", "DenyAccess"] = (
            "RestrictAccess" if mode == "RestrictAccess" else "DenyAccess"
        )
        tenant.access_policies.append(
            AccessPolicy(app_id=app_id, group_id=group_id, mode=policy_mode)
        )


def _generator(doc: Mapping[str, Any], tenant: Tenant) -> GeneratorSpec | None:
    if doc.get("generator") is None:
        return None
    path = "generator"
    obj = _object(doc["generator"], path)
    _keys(
        obj,
        {"version", "seed", "messagesPerMailbox", "campaigns", "epoch", "windowDays", "mailboxes"},
        path,
    )
    version = _int_field(obj, "version", path, 1, 1, 1)
    seed = _int_field(obj, "seed", path, None, -(2**63), 2**63 - 1)
    per_mailbox = _int_field(obj, "messagesPerMailbox", path, None, 0, MAX_MESSAGES_PER_MAILBOX)
    campaigns = _int_field(obj, "campaigns", path, 0, 0, MAX_CAMPAIGNS)
    window = _int_field(obj, "windowDays", path, DEFAULT_WINDOW_DAYS, 2, 3650)
    epoch = _when(obj["epoch"], f"{path}.epoch") if "epoch" in obj else DEFAULT_EPOCH
    mailboxes: tuple[str, ...] | None = None
    raw = obj.get("mailboxes", "all")
    if raw != "all":
        if not isinstance(raw, list):
            raise FixtureError(f"{path}.mailboxes", 'must be "all" or a list of UPNs')
        names: list[str] = []
        for i, upn in enumerate(raw):
            user = tenant.user(upn) if isinstance(upn, str) else None
            if user is None:
                raise FixtureError(f"{path}.mailboxes[{i}]", f"no user '{upn}'")
            names.append(user.user_principal_name)
        mailboxes = tuple(names)
    return GeneratorSpec(
        seed=seed,
        messages_per_mailbox=per_mailbox,
        campaigns=campaigns,
        epoch=epoch,
        window_days=window,
        mailboxes=mailboxes,
        version=version,
    )


# --------------------------------------------------------------------------- messages

_MESSAGE_FIELDS = {
    "mailbox",
    "folder",
    "received",
    "isRead",
    "categories",
    "flagStatus",
    "inferenceClassification",
    "eml",
}
_STRUCTURED_FIELDS = {
    "subject",
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "body",
    "bodyType",
    "headers",
    "attachments",
    "importance",
    "sent",
    "internetMessageId",
}


def _address(value: Any, path: str) -> EmailAddress:
    if not isinstance(value, str) or not value.strip():
        raise FixtureError(path, 'must be an address string, "Name <user@domain>"')
    name, address = parseaddr(value)
    if not address or "@" not in address:
        raise FixtureError(path, f"'{value}' is not an email address")
    return EmailAddress(name, address)


def _addresses(obj: Mapping[str, Any], key: str, path: str) -> list[EmailAddress]:
    value = obj.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise FixtureError(_join(path, key), "must be a list of addresses")
    return [_address(v, f"{_join(path, key)}[{i}]") for i, v in enumerate(value)]


def _headers(value: Any, path: str) -> list[tuple[str, str]]:
    pairs: list[tuple[Any, Any]]
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for i, item in enumerate(value):
            if not (isinstance(item, list) and len(item) == 2):
                raise FixtureError(f"{path}[{i}]", "must be a [name, value] pair")
            pairs.append((item[0], item[1]))
    else:
        raise FixtureError(path, "must be an object or a list of [name, value] pairs")
    out: list[tuple[str, str]] = []
    for name, header_value in pairs:
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise FixtureError(path, f"'{name}' is not a header name")
        if not isinstance(header_value, str) or "\r" in header_value or "\n" in header_value:
            raise FixtureError(f"{path}.{name}", "must be a one-line string")
        out.append((name, header_value))
    return out


def _attachment(root: Path, value: Any, path: str) -> Attachment:
    obj = _object(value, path)
    _keys(
        obj,
        {"name", "contentType", "contentBase64", "text", "file", "eml", "inline", "contentId"},
        path,
    )
    sources = [k for k in ("contentBase64", "text", "file", "eml") if k in obj]
    if len(sources) != 1:
        raise FixtureError(path, "give exactly one of contentBase64, text, file or eml")
    source = sources[0]
    if source == "eml":
        content = _file(root, obj["eml"], f"{path}.eml")
        return Attachment(
            "", _string(obj, "name", path) or "", "message/rfc822", content, kind="item"
        )
    if source == "contentBase64":
        encoded = _required(obj, "contentBase64", path)
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise FixtureError(f"{path}.contentBase64", "is not valid base64") from None
    elif source == "text":
        content = _required(obj, "text", path).encode("utf-8")
    else:
        content = _file(root, obj["file"], f"{path}.file")
    return Attachment(
        id="",
        name=_required(obj, "name", path),
        content_type=_string(obj, "contentType", path) or "application/octet-stream",
        content=content,
        is_inline=_bool(obj, "inline", path, False),
        content_id=_string(obj, "contentId", path),
    )


def _structured_raw(
    root: Path, obj: Mapping[str, Any], path: str, tenant: Tenant, received: datetime
) -> bytes:
    if "from" not in obj:
        raise FixtureError(f"{path}.from", "missing (give eml, or from with the other fields)")
    from_ = _address(obj["from"], f"{path}.from")
    sender = _address(obj["sender"], f"{path}.sender") if "sender" in obj else from_
    body_type = obj.get("bodyType", "text")
    if body_type not in ("text", "html"):
        raise FixtureError(f"{path}.bodyType", "must be text or html")
    importance = obj.get("importance", "normal")
    if importance not in ("low", "normal", "high"):
        raise FixtureError(f"{path}.importance", "must be low, normal or high")
    sent = _when(obj["sent"], f"{path}.sent") if "sent" in obj else received
    attachments = [
        _attachment(root, a, f"{path}.attachments[{i}]")
        for i, a in enumerate(_list(obj, "attachments", path))
    ]
    content = {k: v for k, v in obj.items() if k in _STRUCTURED_FIELDS and k != "internetMessageId"}
    message_id = _string(obj, "internetMessageId", path)
    if not message_id:
        digest = hashlib.sha256(
            json.dumps(content, sort_keys=True, default=str).encode()
        ).hexdigest()
        domain = from_.address.rpartition("@")[2] or tenant.domains[0]
        message_id = f"<{digest[:32]}@{domain}>"
    kind: BodyType = "html" if body_type == "html" else "text"
    draft = Message(
        immutable_id="",
        rest_id="",
        folder_id="",
        internet_message_id=message_id,
        subject=_string(obj, "subject", path) or "",
        from_=from_,
        sender=sender,
        to=_addresses(obj, "to", path),
        cc=_addresses(obj, "cc", path),
        bcc=_addresses(obj, "bcc", path),
        reply_to=_addresses(obj, "replyTo", path),
        received=received,
        sent=sent,
        body=_string(obj, "body", path) or "",
        body_type=kind,
        headers=_headers(obj.get("headers", {}), f"{path}.headers"),
        attachments=attachments,
        importance=str(importance),
    )
    return rfc822_from_message(draft)


def _messages(
    root: Path, doc: Mapping[str, Any], tenant: Tenant
) -> dict[str, list[_FixtureMessage]]:
    out: dict[str, list[_FixtureMessage]] = {}
    for i, entry in enumerate(_list(doc, "messages", "")):
        path = f"messages[{i}]"
        obj = _object(entry, path)
        _keys(obj, _MESSAGE_FIELDS | _STRUCTURED_FIELDS, path)
        upn = _required(obj, "mailbox", path)
        user = tenant.user(upn)
        if user is None:
            raise FixtureError(f"{path}.mailbox", f"no user '{upn}'")
        if not user.has_mailbox:
            raise FixtureError(f"{path}.mailbox", f"user '{upn}' has no mailbox")
        folder = _string(obj, "folder", path) or "inbox"
        if any(not segment.strip() for segment in folder.split("/")):
            raise FixtureError(f"{path}.folder", f"'{folder}' has an empty folder name")
        explicit = _when(obj["received"], f"{path}.received") if "received" in obj else None
        flag = obj.get("flagStatus", "notFlagged")
        if flag not in ("notFlagged", "flagged", "complete"):
            raise FixtureError(f"{path}.flagStatus", "must be notFlagged, flagged or complete")
        inference = obj.get("inferenceClassification")
        if inference is not None and inference not in ("focused", "other"):
            raise FixtureError(f"{path}.inferenceClassification", "must be focused or other")
        structured = sorted(k for k in obj if k in _STRUCTURED_FIELDS)
        if "eml" in obj:
            if structured:
                raise FixtureError(f"{path}.{structured[0]}", "not allowed together with eml")
            raw = _file(root, obj["eml"], f"{path}.eml")
            where = f"{path}.eml"
        else:
            raw = _structured_raw(root, obj, path, tenant, explicit or FIXTURE_EPOCH)
            where = path
        try:
            parsed = parse_rfc822(raw)
        except MimeError as exc:
            raise FixtureError(where, str(exc)) from None
        received = explicit or parsed.header_received or parsed.sent or FIXTURE_EPOCH
        out.setdefault(user.id, []).append(
            _FixtureMessage(
                folder=folder,
                parsed=parsed,
                received=received,
                is_read=_bool(obj, "isRead", path, False),
                categories=tuple(_strings(obj, "categories", path)),
                flag_status=str(flag),
                inference=str(inference) if inference is not None else None,
            )
        )
    return out


def _folder_id(box: Mailbox, spec: str) -> str:
    """The folder for a fixture path, creating missing custom folders deterministically."""
    segments = [s.strip() for s in spec.split("/")]
    first = segments[0]
    root_id = box.well_known["msgfolderroot"]
    current = box.folder(first.lower()) if first.lower() in _WELL_KNOWN else None
    if current is None:
        current = _child(box, root_id, first)
    for segment in segments[1:]:
        current = _child(box, current.id, segment)
    return current.id


def _child(box: Mailbox, parent_id: str, name: str) -> Folder:
    for folder in box.folders.values():
        if folder.parent_id == parent_id and folder.display_name.lower() == name.lower():
            return folder
    folder_id = graph_id(
        box.user_id, "folder", "fixture", parent_id, name.lower(), prefix=b"AAMkAGFR"
    )
    folder = Folder(folder_id, name, parent_id)
    box.folders[folder_id] = folder
    return folder


# --------------------------------------------------------------------------- entry point


def load_tenant(path: Path) -> LoadedTenant:
    """Load a tenant fixture (a directory holding tenant.json, or the file itself).

    Raises `FixtureError` naming the JSON path of the first problem found.
    """
    file = path / "tenant.json" if path.is_dir() else path
    root = file.parent
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError:
        raise FixtureError(str(file), "not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FixtureError(str(file), f"cannot read: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FixtureError(
            f"{file.name}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}"
        ) from None
    doc = _object(document, "$")
    _keys(
        doc,
        {
            "$schema",
            "description",
            "tenant",
            "apps",
            "users",
            "groups",
            "accessPolicies",
            "messages",
            "generator",
        },
        "",
    )
    tenant = _tenant(doc)
    _apps(root, doc, tenant)
    _users(doc, tenant)
    _groups(doc, tenant)
    _policies(doc, tenant)
    spec = _generator(doc, tenant)
    fixture_messages = _messages(root, doc, tenant)
    generated = GeneratedContent(spec, tenant) if spec is not None else None
    if generated is not None:
        for user in tenant.users.values():
            if generated.covers(user):
                user.mailbox_seed = spec.seed if spec is not None else None

    def build_mailbox(user: User) -> Mailbox:
        box = new_mailbox(user.id)
        if generated is not None:
            generated.populate(box, user)
        for item in fixture_messages.get(user.id, ()):
            message = message_from_parsed(
                item.parsed, box=box, folder_id=_folder_id(box, item.folder), received=item.received
            )
            message.is_read = item.is_read
            message.categories = list(item.categories)
            message.flag_status = item.flag_status
            if item.inference is not None:
                message.inference_classification = item.inference
            box.add_message(message)
        box.pristine = True
        return box

    return LoadedTenant(
        tenant=tenant,
        build_mailbox=build_mailbox,
        source=file,
        generated=generated,
        fixture_mailboxes=frozenset(fixture_messages),
    )
