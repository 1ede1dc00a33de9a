"""Mail configuration pages: the list, add (platform, then form), edit, test and remove.

Thin handlers over `configurations.service`, with the same audit entries as the REST API
(`configuration.create`, `.update`, `.delete`, `.test`; the signed-in user is the actor). The
connection test is the API's: `service.test_configuration` with `run_connection_test`
(bound to the application's settings by `connection_test`).
Credentials are write-only: no page ever carries a secret or private key, only its hint; an
empty credential field on the edit form keeps the stored one.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from mailtrawl.configurations import actions as configuration_actions
from mailtrawl.configurations import service as configurations_service
from mailtrawl.configurations.schemas import (
    ConfigurationCreate,
    ConfigurationUpdate,
    ConfigurationView,
)
from mailtrawl.errors import ConfigError, MailtrawlError
from mailtrawl.providers.graph.auth import ClientCertificate
from mailtrawl.storage.engine import write_session
from mailtrawl.storage.secrets import MASK
from mailtrawl.web.deps import AppContext, Caller, actor_of, context, db_session
from mailtrawl.web.ui.auth import Who, same_origin
from mailtrawl.web.ui.forms import MAX_FIELDS, MAX_FORM_BYTES, field, read_form
from mailtrawl.web.ui.layout import page
from mailtrawl.web.ui.permissions import ensure

router = APIRouter(include_in_schema=False)

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]

BASE = "/configurations"

# (key, label, available now)
PLATFORMS: tuple[tuple[str, str, bool], ...] = (
    ("m365", "Microsoft 365", True),
    ("gmail", "Google Workspace", False),
    ("ews", "Exchange (EWS)", False),
    ("imap", "IMAP", False),
)
PLATFORM_NAMES = {key: label for key, label, _ in PLATFORMS}
CLOUDS: tuple[tuple[str, str], ...] = (
    ("global", "Global (commercial and GCC)"),
    ("usgov-high", "US Government GCC High"),
    ("usgov-dod", "US Government DoD"),
    ("china", "China (operated by 21Vianet)"),
    ("custom", "Custom endpoints"),
)
SCOPE_KINDS: tuple[tuple[str, str], ...] = (
    ("all", "All mailboxes"),
    ("groups", "Members of groups"),
    ("departments", "Departments"),
    ("users", "Listed users"),
)
GRAPH_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("Directory.Read.All", "groups and nested membership, to target a group or department"),
    ("Mail.ReadWrite", "search, read, move, delete and restore mail; place warnings"),
    ("MailboxSettings.ReadWrite", "the “suspicious” category used by the warn action"),
    ("User.Read.All", "users and their properties, to resolve who is in scope"),
)
# `?done=<key>` on these pages: fixed sentences, never echoed input.
DONE: dict[str, str] = {
    "created": "The mail configuration was saved and its connection tested; the result is below.",
    "saved": "The changes were saved. Press Test again to check the connection with them.",
    "unchanged": "Nothing was changed.",
    "tested": "The connection test ran; the result is below.",
    "removed": "The mail configuration was removed; investigations that used it keep their results.",
}
CHECK_MARKS = {"ok": "✓", "warning": "⚠", "failed": "✗", "skipped": "–"}

TEXT_FIELDS: dict[str, int] = {
    "name": 200,
    "tenant": 255,
    "client_id": 100,
    "credential_kind": 20,
    "secret_expires": 20,
    "certificate_pem": 64_000,
    "cloud": 20,
    "authority_host": 2048,
    "graph_endpoint": 2048,
    "ca_bundle_pem": 200_000,
    "test_mailbox": 320,
    "authorized_domains": 20_000,
    "scope_kind": 20,
    "scope_values": 100_000,
    "enabled": 10,
}
# Never echoed back into a page, never logged.
SECRET_FIELDS: dict[str, int] = {
    "client_secret": 512,
    "private_key_pem": 64_000,
    "pfx_password": 1024,
}
CREDENTIAL_KINDS = ("secret", "certificate", "pfx")
# A certificate with its key is a few KB as PKCS#12; anything bigger is not one.
MAX_PFX_BYTES = 64 * 1024
PFX_FIELD = "pfx_file"
# The form's text (as `forms.MAX_FORM_BYTES` bounds it) plus one PFX file and the framing.
MAX_UPLOAD_BYTES = MAX_FORM_BYTES + MAX_PFX_BYTES + 16 * 1024
MULTIPART = "multipart/form-data"

Values = dict[str, str]
Errors = dict[str, list[str]]


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done")
    return DONE.get(done) if done else None


def _check_origin(request: Request) -> None:
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Submit the form from mailtrawl's own page.")


def _view(db: Session, ref: str) -> ConfigurationView:
    try:
        return configurations_service.to_view(configurations_service.get_configuration(db, ref=ref))
    except configurations_service.ConfigurationNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None


def _split(text: str, pattern: str = r"[\s,;]+") -> list[str]:
    return [part.strip() for part in re.split(pattern, text) if part.strip()]


# Reading the form -------------------------------------------------------------------------------


async def bounded_upload(request: Request) -> None:
    """Refuse (413) a form body above MAX_UPLOAD_BYTES before anything parses it.

    A dependency listed before `Who`, whose CSRF check parses the form: the body is read
    here in chunks up to the bound, and kept where Starlette's form parser reads it.
    """
    if request.method in ("GET", "HEAD"):
        return
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "The form is too large.")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_UPLOAD_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "The form is too large.")
    request._body = bytes(received)  # Starlette's cache of the body, which `form()` reads


Bounded = Annotated[None, Depends(bounded_upload)]


async def _read_posted(request: Request) -> tuple[FormData, bytes | None, str | None]:
    """(the text fields, the uploaded PFX file or None, what is wrong with the upload).

    The form is multipart (it may carry a file); a URL-encoded post (scripts, tests) is
    read as the other forms are.
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != MULTIPART:
        return await read_form(request), None, None
    try:
        parsed = await request.form(max_files=1, max_fields=MAX_FIELDS)
    except (HTTPException, MultiPartException, ValueError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The form could not be read.") from None
    texts: list[tuple[str, str | UploadFile]] = []
    upload: bytes | None = None
    problem: str | None = None
    try:
        for name, value in parsed.multi_items():
            if isinstance(value, str):
                texts.append((name, value))
            elif name == PFX_FIELD and value.filename:
                data = await value.read(MAX_PFX_BYTES + 1)
                if len(data) > MAX_PFX_BYTES:
                    problem = (
                        f"The PFX file is larger than {MAX_PFX_BYTES // 1024} KB; it is not one."
                    )
                elif not data:
                    problem = "The PFX file is empty."
                else:
                    upload = data
    finally:
        await parsed.close()  # the spooled files: nothing of the upload outlives the request
    return FormData(texts), upload, problem


def _read(form: FormData) -> tuple[Values, Values]:
    """(the fields a page may show again, the secret fields it never shows)."""
    values = {name: field(form, name, max_length=limit) for name, limit in TEXT_FIELDS.items()}
    secrets = {name: field(form, name, max_length=limit) for name, limit in SECRET_FIELDS.items()}
    if values["credential_kind"] not in CREDENTIAL_KINDS:
        values["credential_kind"] = "secret"
    return values, secrets


def _pfx_credential(
    upload: bytes | None, password: str, problem: str | None, errors: Errors
) -> dict[str, Any] | None:
    """The API's `pfx` credential for the uploaded file, checked first so that a wrong
    password or a broken file is named next to the file input."""
    if problem is not None:
        errors.setdefault(PFX_FIELD, []).append(problem)
        return None
    if upload is None:
        return None
    try:
        ClientCertificate.from_pfx(upload, password or None)
    except ConfigError as exc:
        errors.setdefault(PFX_FIELD, []).append(exc.message)
        return None
    except Exception:  # cryptography's other refusals (unsupported algorithms, ...)
        errors.setdefault(PFX_FIELD, []).append(
            "The PFX file could not be opened: it is not a PKCS#12 file mailtrawl can read."
        )
        return None
    return {
        "kind": "pfx",
        "pfx_base64": base64.b64encode(upload).decode("ascii"),
        "password": password or None,
    }


def _credential(
    values: Values,
    secrets: Values,
    errors: Errors,
    upload: bytes | None = None,
    upload_problem: str | None = None,
) -> dict[str, Any] | None:
    """The credential the form carries, or None when its fields are empty (keep the old one)."""
    if values["credential_kind"] == "pfx":
        return _pfx_credential(upload, secrets["pfx_password"], upload_problem, errors)
    if values["credential_kind"] == "certificate":
        if not secrets["private_key_pem"] and not values["certificate_pem"]:
            return None
        return {
            "kind": "certificate",
            "private_key_pem": secrets["private_key_pem"],
            "certificate_pem": values["certificate_pem"],
        }
    if not secrets["client_secret"]:
        return None
    credential: dict[str, Any] = {"kind": "secret", "client_secret": secrets["client_secret"]}
    if values["secret_expires"]:
        try:
            day = date.fromisoformat(values["secret_expires"])
        except ValueError:
            errors.setdefault("secret_expires", []).append("Enter a date such as 2026-12-31.")
        else:
            credential["expires_at"] = f"{day.isoformat()}T00:00:00+00:00"
    return credential


def _document(values: Values) -> dict[str, Any]:
    """The fields of `ConfigurationCreate` / `ConfigurationUpdate` the form fills (no credential)."""
    cloud = values["cloud"] or "global"
    document: dict[str, Any] = {
        "name": values["name"],
        "tenant": values["tenant"],
        "client_id": values["client_id"],
        "cloud": cloud,
        "test_mailbox": values["test_mailbox"] or None,
        "authorized_domains": _split(values["authorized_domains"]),
        "default_scope": {
            "kind": values["scope_kind"] or "all",
            "values": _split(values["scope_values"], r"[\r\n,;]+"),
        },
        "enabled": values["enabled"] == "on",
    }
    if cloud == "custom":
        document["custom"] = {
            "authority_host": values["authority_host"],
            "graph_endpoint": values["graph_endpoint"],
            "ca_bundle_pem": values["ca_bundle_pem"] or None,
        }
    return document


def _field_of(loc: tuple[int | str, ...], kind: str) -> str:
    """The form field a validation error belongs to."""
    parts = [p for p in loc if isinstance(p, str)]
    if not parts:
        return "form"
    head = parts[0]
    if head == "credential":
        for name in ("client_secret", "expires_at", "private_key_pem", "certificate_pem"):
            if name in parts:
                return "secret_expires" if name == "expires_at" else name
        if kind == "pfx":
            return PFX_FIELD
        return "private_key_pem" if kind == "certificate" else "client_secret"
    if head == "custom":
        return parts[1] if len(parts) > 1 else "cloud"
    if head == "default_scope":
        return "scope_values"
    return head


def _validation_errors(exc: ValidationError, kind: str, errors: Errors) -> None:
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        if loc == ("credential",) and error["type"] == "missing":
            continue  # `_missing_credential` says it in the form's words
        message = str(error["msg"]).removeprefix("Value error, ")
        name = _field_of(loc, kind)
        if name == "form" and "custom" in message:
            name = "cloud"
        errors.setdefault(name, []).append(message[:1:].upper() + message[1:])


def _missing_credential(values: Values, errors: Errors) -> None:
    if values["credential_kind"] == "pfx":
        if PFX_FIELD not in errors:
            errors.setdefault(PFX_FIELD, []).append(
                "Choose the .pfx or .p12 file (the certificate with its private key)."
            )
        return
    if values["credential_kind"] == "certificate":
        errors.setdefault("private_key_pem", []).append(
            "Paste the private key and the certificate (PEM)."
        )
    else:
        errors.setdefault("client_secret", []).append(
            "Paste the client secret's Value (not its Secret ID)."
        )


def _credential_error_field(values: Values) -> str:
    return {"certificate": "private_key_pem", "pfx": PFX_FIELD}.get(
        values["credential_kind"], "client_secret"
    )


# Rendering the form -----------------------------------------------------------------------------


def _values_of(view: ConfigurationView) -> Values:
    scope = view.default_scope or {}
    custom = view.custom or {}
    return {
        "name": view.name,
        "tenant": view.tenant,
        "client_id": view.client_id,
        "credential_kind": "certificate" if view.credential.kind == "certificate" else "secret",
        "secret_expires": (
            view.credential.expires_at.date().isoformat()
            if view.credential.expires_at and view.credential.kind == "secret"
            else ""
        ),
        "certificate_pem": "",
        "cloud": view.cloud,
        "authority_host": custom.get("authority_host") or "",
        "graph_endpoint": custom.get("graph_endpoint") or "",
        "ca_bundle_pem": custom.get("ca_bundle_pem") or "",
        "test_mailbox": view.test_mailbox or "",
        "authorized_domains": ", ".join(view.authorized_domains),
        "scope_kind": str(scope.get("kind") or "all"),
        "scope_values": "\n".join(str(v) for v in scope.get("values") or []),
        "enabled": "on" if view.enabled else "",
    }


EMPTY: Values = {name: "" for name in TEXT_FIELDS} | {
    "credential_kind": "secret",
    "cloud": "global",
    "scope_kind": "all",
    "enabled": "on",
}


def _form_page(
    request: Request,
    who: Caller,
    *,
    values: Values,
    errors: Errors | None = None,
    view: ConfigurationView | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        who,
        "configurations/form.html",
        {
            "values": values,
            "errors": errors or {},
            "configuration": view,
            "action": f"{BASE}/{view.id}/edit" if view else f"{BASE}/new",
            "clouds": CLOUDS,
            "scope_kinds": SCOPE_KINDS,
            "graph_permissions": GRAPH_PERMISSIONS,
            "mask": MASK,
        },
        status_code=status_code,
    )


# Running the connection test --------------------------------------------------------------------


async def _test(ctx: AppContext, request: Request, who: Caller, ref: str) -> str | None:
    """Run the connection test, store and audit its result; a sentence when it could not run."""
    with ctx.sessions.begin() as db:
        try:
            await configuration_actions.test_connection(
                db, box=ctx.box, ref=ref, settings=ctx.settings, actor=actor_of(request, who)
            )
        except configurations_service.ConfigurationNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
        except MailtrawlError as exc:
            return exc.message  # audited as failed; committed with the session
    return None


def _checks_context(view: ConfigurationView, error: str | None = None) -> dict[str, Any]:
    return {"configuration": view, "test_error": error, "marks": CHECK_MARKS}


# The pages -------------------------------------------------------------------------------------


@router.get(BASE, response_class=HTMLResponse)
def configurations(request: Request, who: Who, db: Db) -> HTMLResponse:
    """Every configuration: name, platform, test mailbox, ✓/✗, last test, created."""
    ensure(who.role, "configuration.read")
    views = [
        configurations_service.to_view(r) for r in configurations_service.list_configurations(db)
    ]
    return page(
        request,
        who,
        "configurations/list.html",
        {"configurations": views, "platforms": PLATFORM_NAMES, "notice": _notice(request)},
    )


@router.get(BASE + "/new", response_class=HTMLResponse)
def new_configuration(request: Request, who: Who, platform: str | None = None) -> HTMLResponse:
    """Step 1 chooses the platform; step 2 (`?platform=m365`) is the Microsoft 365 form."""
    ensure(who.role, "configuration.edit")
    if platform == "m365":
        return _form_page(request, who, values=dict(EMPTY))
    return page(request, who, "configurations/choose.html", {"platforms": PLATFORMS})


def _create(
    ctx: AppContext,
    request: Request,
    who: Caller,
    values: Values,
    secrets: Values,
    upload: bytes | None = None,
    upload_problem: str | None = None,
) -> tuple[str | None, Errors]:
    """(the new configuration's id, {}) or (None, what to fix, by field)."""
    errors: Errors = {}
    document = _document(values)
    credential = _credential(values, secrets, errors, upload, upload_problem)
    if credential is None:
        _missing_credential(values, errors)
    else:
        document["credential"] = credential
    try:
        data = ConfigurationCreate.model_validate(document)
    except ValidationError as exc:
        _validation_errors(exc, values["credential_kind"], errors)
        return None, errors
    if errors:
        return None, errors
    with write_session(ctx.sessions) as db:
        try:
            record = configuration_actions.create(
                db, box=ctx.box, data=data, actor=actor_of(request, who)
            )
        except configurations_service.ConfigurationExists as exc:
            return None, {"name": [exc.message]}
        except ConfigError as exc:
            return None, {_credential_error_field(values): [exc.message]}
        return str(record.id), {}


@router.post(BASE + "/new")
async def create_configuration(request: Request, _bounded: Bounded, who: Who, ctx: Ctx) -> Response:
    """Save a new configuration, run its connection test at once, and show the result."""
    ensure(who.role, "configuration.edit")
    _check_origin(request)
    form, upload, upload_problem = await _read_posted(request)
    values, secrets = _read(form)
    created, errors = await run_in_threadpool(
        _create, ctx, request, who, values, secrets, upload, upload_problem
    )
    if created is None:
        return _form_page(
            request,
            who,
            values=values,
            errors=errors,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    error = await _test(ctx, request, who, created)
    done = "created" if error is None else "saved"
    return RedirectResponse(f"{BASE}/{created}?done={done}", status_code=status.HTTP_303_SEE_OTHER)


@router.get(BASE + "/{ref}", response_class=HTMLResponse)
def configuration(request: Request, who: Who, db: Db, ref: str) -> HTMLResponse:
    """One configuration: its settings and its last connection test, check by check."""
    ensure(who.role, "configuration.read")
    view = _view(db, ref)
    return page(
        request,
        who,
        "configurations/detail.html",
        {
            **_checks_context(view),
            "platforms": PLATFORM_NAMES,
            "clouds": dict(CLOUDS),
            "notice": _notice(request),
        },
    )


@router.post(BASE + "/{ref}/test")
async def test_configuration(request: Request, who: Who, ctx: Ctx, ref: str) -> Response:
    """Run the connection test again; htmx gets the check list, a browser the page."""
    ensure(who.role, "configuration.test")
    _check_origin(request)
    error = await _test(ctx, request, who, ref)
    if request.headers.get("hx-request") != "true":
        if error is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, error)
        return RedirectResponse(f"{BASE}/{ref}?done=tested", status_code=status.HTTP_303_SEE_OTHER)

    def fragment() -> HTMLResponse:
        with ctx.sessions.begin() as db:
            view = _view(db, ref)
        return page(request, who, "configurations/_checks.html", _checks_context(view, error))

    return await run_in_threadpool(fragment)


@router.get(BASE + "/{ref}/edit", response_class=HTMLResponse)
def edit_configuration(request: Request, who: Who, db: Db, ref: str) -> HTMLResponse:
    """The same form, filled in; the credential shows only as its hint."""
    ensure(who.role, "configuration.edit")
    view = _view(db, ref)
    return _form_page(request, who, values=_values_of(view), view=view)


def _changed(document: Mapping[str, Any], current: ConfigurationView) -> dict[str, Any]:
    """The fields of a validated update that differ from the stored configuration."""
    update = ConfigurationUpdate.model_validate(document)
    changes: dict[str, Any] = {}
    for key, value in update.model_dump(mode="json", exclude_unset=True).items():
        if key == "credential":
            changes[key] = document[key]
        elif key == "custom":
            if value != current.custom:
                changes[key] = document[key]
        elif key == "default_scope":
            if value != (current.default_scope or {"kind": "all", "values": []}):
                changes[key] = document[key]
        elif key == "test_mailbox" and value is None:
            continue  # the service keeps a stored test mailbox when none is given
        elif value != getattr(current, key):
            changes[key] = document[key]
    if "custom" in changes:
        changes["cloud"] = document["cloud"]
    return changes


def _update(
    ctx: AppContext,
    request: Request,
    who: Caller,
    ref: str,
    values: Values,
    secrets: Values,
    upload: bytes | None = None,
    upload_problem: str | None = None,
) -> tuple[ConfigurationView | None, str | None, Errors]:
    """(the stored view, `saved` or `unchanged`, {}) or (the view, None, what to fix)."""
    errors: Errors = {}
    document = _document(values)
    credential = _credential(values, secrets, errors, upload, upload_problem)
    if credential is not None:
        document["credential"] = credential
    with write_session(ctx.sessions) as db:
        before = _view(db, ref)
        changes: dict[str, Any] = {}
        try:
            changes = _changed(document, before)
        except ValidationError as exc:
            _validation_errors(exc, values["credential_kind"], errors)
        if errors:
            return before, None, errors
        if not changes:
            return before, "unchanged", {}
        try:
            record = configuration_actions.update(
                db,
                box=ctx.box,
                ref=before.id,
                data=ConfigurationUpdate.model_validate(changes),
                actor=actor_of(request, who),
            )
        except configurations_service.ConfigurationExists as exc:
            db.rollback()
            return before, None, {"name": [exc.message]}
        except ConfigError as exc:
            db.rollback()
            return before, None, {_credential_error_field(values): [exc.message]}
        except MailtrawlError as exc:
            db.rollback()
            return before, None, {"cloud": [exc.message]}
        return configurations_service.to_view(record), "saved", {}


@router.post(BASE + "/{ref}/edit")
async def update_configuration(
    request: Request, _bounded: Bounded, who: Who, ctx: Ctx, ref: str
) -> Response:
    """Save the changes; an empty credential field keeps the stored credential."""
    ensure(who.role, "configuration.edit")
    _check_origin(request)
    form, upload, upload_problem = await _read_posted(request)
    values, secrets = _read(form)
    view, done, errors = await run_in_threadpool(
        _update, ctx, request, who, ref, values, secrets, upload, upload_problem
    )
    if done is None or view is None:
        return _form_page(
            request,
            who,
            values=values,
            errors=errors,
            view=view,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    return RedirectResponse(f"{BASE}/{view.id}?done={done}", status_code=status.HTTP_303_SEE_OTHER)


@router.get(BASE + "/{ref}/remove", response_class=HTMLResponse)
def remove_configuration_page(request: Request, who: Who, db: Db, ref: str) -> HTMLResponse:
    """Ask first: name the configuration and say what removing it does."""
    ensure(who.role, "configuration.edit")
    return page(request, who, "configurations/remove.html", {"configuration": _view(db, ref)})


def _delete(ctx: AppContext, request: Request, who: Caller, ref: str) -> None:
    with write_session(ctx.sessions) as db:
        found = _view(db, ref)
        configuration_actions.delete(db, ref=found.id, actor=actor_of(request, who))


@router.post(BASE + "/{ref}/remove")
async def remove_configuration(request: Request, who: Who, ctx: Ctx, ref: str) -> Response:
    """Remove the configuration (investigations keep their results and its name)."""
    ensure(who.role, "configuration.edit")
    _check_origin(request)
    await run_in_threadpool(_delete, ctx, request, who, ref)
    return RedirectResponse(f"{BASE}?done=removed", status_code=status.HTTP_303_SEE_OTHER)


__all__ = ["router"]
