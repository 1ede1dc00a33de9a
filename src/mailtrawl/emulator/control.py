"""The control plane under `/_emulator/`: deliver mail, inspect and reset state, change limits.

Separate from the Graph paths and protected by its own bearer token, so tests, the demo and
benchmarks can steer the emulator while clients see only Graph.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import orjson

from mailtrawl.emulator.certificates import certificate_from_pem
from mailtrawl.emulator.graph.messages_json import iso
from mailtrawl.emulator.graph.subscriptions import LIFECYCLE_EVENTS, control_json, hub_for
from mailtrawl.emulator.mime import MimeError, message_from_parsed, parse_rfc822
from mailtrawl.emulator.runtime import EmulatorState
from mailtrawl.emulator.state import (
    AccessPolicy,
    App,
    Certificate,
    Group,
    Mailbox,
    Message,
    Secret,
    User,
    deterministic_uuid,
)

MAX_DELIVERY_BYTES = 160 * 1024 * 1024


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(body: bytes) -> Any:
    if not body:
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ControlError(400, f"invalid JSON: {exc}") from exc


def _when(raw: Any, field: str) -> datetime:
    if not isinstance(raw, str):
        raise ControlError(400, f"{field} must be an ISO 8601 date-time")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ControlError(400, f"{field}: {exc}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _user(state: EmulatorState, ref: str) -> User:
    user = state.tenant.user(ref)
    if user is None:
        raise ControlError(404, f"no user '{ref}'")
    return user


def _app(state: EmulatorState, ref: str) -> App:
    app = state.tenant.apps.get(ref)
    if app is None:
        raise ControlError(404, f"no app '{ref}'")
    return app


def _group(state: EmulatorState, ref: str) -> Group:
    group = state.tenant.groups.get(ref)
    if group is None:
        group = next(
            (g for g in state.tenant.groups.values() if g.display_name.lower() == ref.lower()), None
        )
    if group is None:
        raise ControlError(404, f"no group '{ref}'")
    return group


def authorized(state: EmulatorState, authorization: str | None) -> bool:
    if not authorization or not authorization.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), state.control_token.encode())


def message_summary(box: Mailbox, msg: Message) -> dict[str, Any]:
    folder = box.folders.get(msg.folder_id)
    return {
        "id": msg.rest_id,
        "immutableId": msg.immutable_id,
        "folder": (folder.well_known_name or folder.display_name) if folder else None,
        "folderId": msg.folder_id,
        "internetMessageId": msg.internet_message_id,
        "subject": msg.subject,
        "from": msg.from_.address if msg.from_ else None,
        "receivedDateTime": iso(msg.received),
        "categories": list(msg.categories),
        "isRead": msg.is_read,
        "isDraft": msg.is_draft,
        "flagStatus": msg.flag_status,
        "importance": msg.importance,
        "hasAttachments": msg.has_attachments,
        "attachments": [
            {
                "name": a.name,
                "kind": a.kind,
                "size": a.size,
                "sha256": hashlib.sha256(a.content).hexdigest(),
            }
            for a in msg.attachments
        ],
    }


def snapshot(state: EmulatorState, user: User) -> dict[str, Any]:
    if not user.has_mailbox:
        raise ControlError(409, f"user '{user.user_principal_name}' has no mailbox")
    box = state.mailbox(user)
    by_folder: dict[str, list[dict[str, Any]]] = {}
    for msg in sorted(box.messages.values(), key=lambda m: m.received):
        by_folder.setdefault(msg.folder_id, []).append(message_summary(box, msg))
    return {
        "mailbox": user.user_principal_name,
        "userId": user.id,
        "folders": [
            {
                "id": f.id,
                "wellKnownName": f.well_known_name,
                "displayName": f.display_name,
                "parentId": f.parent_id,
                "messages": by_folder.get(f.id, []),
            }
            for f in box.folders.values()
        ],
        "purged": [message_summary(box, m) for m in box.purged],
        "masterCategories": [
            {"id": c.id, "displayName": c.display_name, "color": c.color}
            for c in box.master_categories
        ],
        "messageRules": list(box.message_rules),
    }


MAX_COPIES = 10_000


def deliver(
    state: EmulatorState,
    raw: bytes,
    recipients: list[str],
    folder: str,
    received: datetime | None,
    copies: int = 1,
) -> dict[str, Any]:
    """Deliver `raw` to each recipient's folder, `copies` times (each copy a separate item)."""
    if not raw:
        raise ControlError(400, "no message to deliver")
    if len(raw) > MAX_DELIVERY_BYTES:
        raise ControlError(413, "message too large")
    if not recipients:
        raise ControlError(400, "recipients is required")
    users = [_user(state, r) for r in recipients]
    for user in users:
        if not user.has_mailbox:
            raise ControlError(409, f"user '{user.user_principal_name}' has no mailbox")
    try:
        parsed = parse_rfc822(raw)
    except MimeError as exc:
        raise ControlError(400, f"not a message: {exc}") from exc
    for user in users:  # every folder is checked before anything is delivered
        if state.mailbox(user).folder(folder) is None:
            raise ControlError(404, f"no folder '{folder}' in {user.user_principal_name}")
    delivered = []
    for user in users:
        box = state.mailbox(user)  # fetched again: the cache may have let it go meanwhile
        target = box.folder(folder)
        assert target is not None
        for _ in range(copies):
            msg = message_from_parsed(
                parsed, box=box, folder_id=target.id, received=received or state.now()
            )
            box.add_message(msg)
            delivered.append(
                {
                    "mailbox": user.user_principal_name,
                    "id": msg.rest_id,
                    "immutableId": msg.immutable_id,
                    "folder": target.well_known_name or target.display_name,
                    "internetMessageId": msg.internet_message_id,
                    "subject": msg.subject,
                }
            )
    hub_for(state).poke()  # subscribers hear of it without waiting for the next look
    return {"delivered": delivered}


def _copies(raw: Any) -> int:
    if raw is None:
        return 1
    try:
        copies = int(raw)
    except (TypeError, ValueError):
        raise ControlError(400, "copies must be an integer") from None
    if isinstance(raw, bool) or not 1 <= copies <= MAX_COPIES:
        raise ControlError(400, f"copies must be between 1 and {MAX_COPIES}")
    return copies


def _new_secret(app: App, value: str | None, expires: datetime, name: str) -> Secret:
    secret_value = value or (secrets.token_urlsafe(30).replace("-", "~")[:40])
    secret = Secret(str(uuid.uuid4()), secret_value, secret_value[:3], expires, name)
    app.secrets.append(secret)
    return secret


def _secret_json(secret: Secret, reveal: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": secret.id,
        "hint": secret.hint,
        "expires": iso(secret.expires),
        "displayName": secret.display_name,
    }
    if reveal:
        out["value"] = secret.value
    return out


def app_json(app: App) -> dict[str, Any]:
    return {
        "clientId": app.client_id,
        "displayName": app.display_name,
        "permissions": dict(app.permissions),
        "secrets": [_secret_json(s) for s in app.secrets],
        "certificates": [
            {"id": c.id, "thumbprintSha1": c.thumbprint_sha1, "expires": iso(c.expires)}
            for c in app.certificates
        ],
    }


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "userPrincipalName": user.user_principal_name,
        "displayName": user.display_name,
        "mail": user.mail,
        "department": user.department,
        "jobTitle": user.job_title,
        "accountEnabled": user.account_enabled,
        "hasMailbox": user.has_mailbox,
    }


def handle(
    state: EmulatorState, method: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    """Serve one control request; answers (status, JSON body)."""
    parts = [p for p in path.split("/") if p][1:]  # drop "_emulator"
    route = "/".join(parts)
    tenant = state.tenant

    if method == "GET" and route == "info":
        return 200, {
            "tenantId": tenant.id,
            "domains": tenant.domains,
            "users": len(tenant.users),
            "groups": len(tenant.groups),
            "apps": [app_json(a) for a in tenant.apps.values()],
            "materialisedMailboxes": state.store.materialised(),
            "settings": state.settings.to_dict(),
            "now": iso(state.now()),
        }
    if method == "POST" and route == "reset":
        state.reset()
        hub_for(state).reset()
        return 200, {"reset": True}
    if route == "stats":
        if method == "GET":
            return 200, {**state.stats.to_dict(), "notifications": hub_for(state).stats.to_dict()}
        if method == "DELETE":
            from mailtrawl.emulator.graph.subscriptions import DeliveryStats
            from mailtrawl.emulator.runtime import Stats

            state.stats = Stats()
            hub_for(state).stats = DeliveryStats()
            return 200, {"reset": True}
    if route == "settings":
        hub = hub_for(state)
        if method == "GET":
            return 200, {**state.settings.to_dict(), "notifications": hub.settings.to_dict()}
        if method == "PATCH":
            changes = _json(body)
            if not isinstance(changes, dict):
                raise ControlError(400, "expected an object of settings")
            try:
                # Checked first, so that a bad value changes nothing.
                notifications = copy.deepcopy(hub.settings)
                notifications.update(changes.get("notifications", {}))
                state.settings.update({k: v for k, v in changes.items() if k != "notifications"})
            except ValueError as exc:
                raise ControlError(400, str(exc)) from exc
            hub.settings = notifications
            if "faults" in changes and "seed" in changes["faults"]:
                import random

                state.rng = random.Random(state.settings.faults.seed)
            state.store.cache_size = state.settings.mailbox_cache_size
            return 200, {**state.settings.to_dict(), "notifications": hub.settings.to_dict()}
    if parts and parts[0] == "subscriptions":
        return _subscriptions(state, method, parts[1:], _json(body))
    if method == "POST" and route == "deliver":
        content_type = headers.get("content-type", "")
        if content_type.startswith("message/rfc822"):
            params = {k: v[0] for k, v in parse_qs(query).items()}
            recipients = [r for r in params.get("recipients", "").split(",") if r]
            received = _when(params["received"], "received") if "received" in params else None
            return 200, deliver(
                state,
                body,
                recipients,
                params.get("folder", "inbox"),
                received,
                _copies(params.get("copies")),
            )
        payload = _json(body)
        try:
            raw = base64.b64decode(payload.get("mime", ""), validate=True)
        except (binascii.Error, AttributeError) as exc:
            raise ControlError(400, "mime must be base64") from exc
        received = (
            _when(payload["receivedDateTime"], "receivedDateTime")
            if payload.get("receivedDateTime")
            else None
        )
        return 200, deliver(
            state,
            raw,
            list(payload.get("recipients") or []),
            str(payload.get("folder") or "inbox"),
            received,
            _copies(payload.get("copies")),
        )
    if method == "GET" and len(parts) == 2 and parts[0] == "mailboxes":
        return 200, snapshot(state, _user(state, parts[1]))
    if method == "POST" and route == "delta/expire":
        payload = _json(body)
        refs = payload.get("mailboxes")
        if refs is None:
            state.delta_epoch += 1
        else:
            for ref in refs:
                box = state.mailbox(_user(state, ref))
                box.sync_generation += 1
                box.pristine = False
        return 200, {"expired": True}
    if method == "POST" and route == "tokens/revoke":
        state.token_generation += 1
        state.token_cache.clear()
        return 200, {"revoked": True}
    if method == "POST" and route == "clock":
        payload = _json(body)
        advance = payload.get("advanceSeconds")
        if not isinstance(advance, int | float):
            raise ControlError(400, "advanceSeconds must be a number")
        state.clock_offset += timedelta(seconds=advance)
        return 200, {"now": iso(state.now())}
    if parts and parts[0] == "apps":
        return _apps(state, method, parts[1:], _json(body))
    if parts and parts[0] == "users":
        return _users(state, method, parts[1:], _json(body))
    if parts and parts[0] == "groups":
        return _groups(state, method, parts[1:], _json(body))
    if route == "access-policies" and method == "PUT":
        payload = _json(body)
        if not isinstance(payload, list):
            raise ControlError(400, "expected a list of policies")
        policies = []
        for item in payload:
            mode = item.get("mode", "RestrictAccess")
            if mode not in ("RestrictAccess", "DenyAccess"):
                raise ControlError(400, "mode must be RestrictAccess or DenyAccess")
            policies.append(
                AccessPolicy(
                    _app(state, str(item.get("appId"))).client_id,
                    _group(state, str(item.get("group"))).id,
                    mode,
                )
            )
        tenant.access_policies = policies
        return 200, {"policies": len(policies)}
    raise ControlError(404, f"no control endpoint {method} /_emulator/{route}")


def _subscriptions(
    state: EmulatorState, method: str, parts: list[str], payload: Any
) -> tuple[int, Any]:
    """Inspect Graph subscriptions and steer their delivery (lifecycle events, pauses)."""
    hub = hub_for(state)
    if not parts and method == "GET":
        return 200, {"value": [control_json(state, s) for s in hub.subscriptions.values()]}
    sub = hub.subscriptions.get(parts[0]) if parts else None
    if sub is None:
        raise ControlError(404, "no such subscription")
    action = parts[1] if len(parts) == 2 else None
    if len(parts) == 1 and method == "GET":
        return 200, control_json(state, sub)
    if action == "lifecycle" and method == "POST":
        event = payload.get("event") if isinstance(payload, dict) else None
        if event not in LIFECYCLE_EVENTS:
            raise ControlError(400, f"event must be one of {', '.join(LIFECYCLE_EVENTS)}")
        if not hub.lifecycle(sub, event):
            raise ControlError(409, "the subscription has no lifecycleNotificationUrl")
        if event == "subscriptionRemoved":
            hub.remove(sub.id)
        return 200, {"queued": event, "removed": event == "subscriptionRemoved"}
    if action in ("pause", "resume") and method == "POST":
        # A paused subscription drops its notifications (counted), as a lost delivery would.
        sub.paused = action == "pause"
        return 200, control_json(state, sub)
    if action == "expire" and method == "POST":
        sub.expires = state.now() - timedelta(seconds=1)
        hub.remove(sub.id)
        hub.stats.expired += 1
        return 200, {"expired": sub.id}
    raise ControlError(404, "no such subscription endpoint")


def _certificate(pem: str) -> Certificate:
    try:
        return certificate_from_pem(pem)
    except ValueError as exc:
        raise ControlError(400, f"not a PEM certificate: {exc}") from None


def _apps(state: EmulatorState, method: str, parts: list[str], payload: Any) -> tuple[int, Any]:
    tenant = state.tenant
    if not parts and method == "GET":
        return 200, {"value": [app_json(a) for a in tenant.apps.values()]}
    if not parts and method == "POST":
        client_id = str(payload.get("clientId") or uuid.uuid4())
        if client_id in tenant.apps:
            raise ControlError(409, "app exists")
        perms = payload.get("permissions") or {}
        if not isinstance(perms, dict):
            raise ControlError(400, "permissions must map names to consent (true/false)")
        app = App(
            client_id,
            str(payload.get("displayName") or "app"),
            permissions={str(k): bool(v) for k, v in perms.items()},
            object_id=deterministic_uuid(client_id, "sp"),
        )
        tenant.apps[client_id] = app
        out = app_json(app)
        if payload.get("secret", True):
            expires = (
                _when(payload["secretExpires"], "secretExpires")
                if payload.get("secretExpires")
                else state.now() + timedelta(days=180)
            )
            secret = _new_secret(app, payload.get("secretValue"), expires, "control")
            out["secret"] = _secret_json(secret, reveal=True)
        for pem in payload.get("certificates") or []:
            app.certificates.append(_certificate(str(pem)))
        out["certificates"] = app_json(app)["certificates"]
        return 201, out
    app = _app(state, parts[0])
    rest = parts[1:]
    if not rest and method == "GET":
        return 200, app_json(app)
    if rest == ["secrets"] and method == "POST":
        expires = (
            _when(payload["expires"], "expires")
            if payload.get("expires")
            else state.now() + timedelta(days=180)
        )
        secret = _new_secret(
            app, payload.get("value"), expires, str(payload.get("displayName") or "")
        )
        return 201, _secret_json(secret, reveal=True)
    if rest == ["secrets", "rotate"] and method == "POST":
        for old in app.secrets:
            old.expires = min(old.expires, state.now() - timedelta(seconds=1))
        secret = _new_secret(
            app, payload.get("value"), state.now() + timedelta(days=180), "rotated"
        )
        return 201, _secret_json(secret, reveal=True)
    if len(rest) == 3 and rest[0] == "secrets" and rest[2] == "expire" and method == "POST":
        found = next((s for s in app.secrets if s.id == rest[1]), None)
        if found is None:
            raise ControlError(404, "no such secret")
        secret = found
        secret.expires = state.now() - timedelta(seconds=1)
        return 200, _secret_json(secret)
    if len(rest) == 2 and rest[0] == "secrets" and method == "DELETE":
        app.secrets = [s for s in app.secrets if s.id != rest[1]]
        return 200, app_json(app)
    if rest == ["certificates"] and method == "POST":
        cert = _certificate(str(payload.get("pem") or ""))
        app.certificates.append(cert)
        return 201, {"id": cert.id, "thumbprintSha1": cert.thumbprint_sha1}
    if rest == ["permissions"] and method == "POST":
        for name in payload.get("grant") or []:  # added and consented
            app.permissions[str(name)] = True
        for name in payload.get("add") or []:  # added, consent not granted
            app.permissions.setdefault(str(name), False)
        for name in payload.get("unconsent") or []:
            if name in app.permissions:
                app.permissions[str(name)] = False
        for name in payload.get("revoke") or []:
            app.permissions.pop(str(name), None)
        return 200, app_json(app)
    raise ControlError(404, "no such app endpoint")


def _users(state: EmulatorState, method: str, parts: list[str], payload: Any) -> tuple[int, Any]:
    tenant = state.tenant
    if not parts and method == "POST":
        upn = payload.get("userPrincipalName")
        if not isinstance(upn, str) or "@" not in upn:
            raise ControlError(400, "userPrincipalName is required")
        if tenant.user(upn) is not None:
            raise ControlError(409, "user exists")
        user = User(
            id=str(payload.get("id") or uuid.uuid4()),
            user_principal_name=upn,
            display_name=str(payload.get("displayName") or upn.split("@")[0]),
            mail=payload.get("mail", upn),
            department=payload.get("department"),
            job_title=payload.get("jobTitle"),
            account_enabled=bool(payload.get("accountEnabled", True)),
            has_mailbox=bool(payload.get("hasMailbox", True)),
        )
        tenant.add_user(user)
        return 201, user_json(user)
    if len(parts) == 1:
        user = _user(state, parts[0])
        if method == "GET":
            return 200, user_json(user)
        if method == "PATCH":
            for key, attr in (
                ("displayName", "display_name"),
                ("department", "department"),
                ("jobTitle", "job_title"),
                ("accountEnabled", "account_enabled"),
                ("hasMailbox", "has_mailbox"),
            ):
                if key in payload:
                    setattr(user, attr, payload[key])
            return 200, user_json(user)
        if method == "DELETE":
            del tenant.users[user.id]
            tenant.mailboxes.pop(user.id, None)
            for group in tenant.groups.values():
                if user.id in group.member_ids:
                    group.member_ids.remove(user.id)
            return 200, {"deleted": user.user_principal_name}
    raise ControlError(404, "no such user endpoint")


def _groups(state: EmulatorState, method: str, parts: list[str], payload: Any) -> tuple[int, Any]:
    tenant = state.tenant

    def member_id(ref: str) -> str:
        user = tenant.user(ref)
        return user.id if user is not None else _group(state, ref).id

    if not parts and method == "POST":
        name = payload.get("displayName")
        if not isinstance(name, str) or not name:
            raise ControlError(400, "displayName is required")
        group = Group(
            str(payload.get("id") or uuid.uuid4()),
            name,
            mail=payload.get("mail"),
            member_ids=[member_id(str(m)) for m in payload.get("members") or []],
        )
        tenant.groups[group.id] = group
        return 201, {"id": group.id, "displayName": group.display_name, "members": group.member_ids}
    if len(parts) == 2 and parts[1] == "members" and method == "POST":
        group = _group(state, parts[0])
        for ref in payload.get("add") or []:
            mid = member_id(str(ref))
            if mid not in group.member_ids:
                group.member_ids.append(mid)
        for ref in payload.get("remove") or []:
            mid = member_id(str(ref))
            if mid in group.member_ids:
                group.member_ids.remove(mid)
        return 200, {"id": group.id, "members": group.member_ids}
    raise ControlError(404, "no such group endpoint")
