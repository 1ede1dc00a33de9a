"""Mail folders, messages, attachments and the changes an incident responder makes."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from mailtrawl.emulator.errors import GraphError, bad_request, item_not_found
from mailtrawl.emulator.graph.core import (
    MAIL_READ,
    MAIL_READ_BASIC,
    MAIL_WRITE,
    ROUTER,
    GraphRequest,
    GraphResponse,
    Handler,
    no_content,
    ok,
    parse_select,
    parse_top,
    refuse_unmodelled,
)
from mailtrawl.emulator.graph.messages_json import (
    MessageView,
    attachment_json,
    folder_json,
    message_json,
    resolve_folder_select,
    resolve_select,
    select_folder_fields,
)
from mailtrawl.emulator.mime import conversation_id_for, message_from_rfc822, rfc822_from_message
from mailtrawl.emulator.query.kql import compile_search, parse_search
from mailtrawl.emulator.query.odata import (
    QueryError,
    check_message_orderby,
    compile_message_filter,
    message_sort_key,
    parse_filter,
    parse_orderby,
)
from mailtrawl.emulator.runtime import EmulatorState
from mailtrawl.emulator.state import (
    Attachment,
    BodyType,
    EmailAddress,
    Folder,
    Mailbox,
    Message,
    graph_id,
    utcnow,
)

SEARCH_RESULT_CAP = 1000


def _box(request: GraphRequest) -> Mailbox:
    assert request.mailbox is not None  # set by the dispatcher for every mail route
    return request.mailbox


def _view(request: GraphRequest) -> MessageView:
    return MessageView(
        immutable=request.immutable_ids,
        text_body=request.prefer_text_body,
        basic_only=not (request.roles & MAIL_READ),
    )


def _preference_headers(request: GraphRequest) -> dict[str, str]:
    applied = []
    if request.prefer("outlook.body-content-type"):
        applied.append(
            f'outlook.body-content-type="{"text" if request.prefer_text_body else "html"}"'
        )
    if request.immutable_ids:
        applied.append('IdType="ImmutableId"')
    return {"Preference-Applied": ", ".join(applied)} if applied else {}


def _folder(box: Mailbox, ref: str) -> Folder:
    folder = box.folder(ref)
    if folder is None or folder.well_known_name == "recoverableitemspurges":
        raise item_not_found()
    return folder


def _message(box: Mailbox, ref: str, folder: Folder | None = None) -> Message:
    msg = box.message(ref)
    if msg is None or (folder is not None and msg.folder_id != folder.id):
        raise item_not_found()
    return msg


def _query_error(exc: QueryError) -> GraphError:
    return GraphError(exc.status, exc.code, exc.message)


# Folders ------------------------------------------------------------------------------


def _folder_page(request: GraphRequest, box: Mailbox, parent_id: str) -> GraphResponse:
    refuse_unmodelled(request, "$select", "$filter", "$top", "$skip")
    include_hidden = request.query.get("includeHiddenFolders", "").lower() == "true"
    folders = [
        f
        for f in box.folders.values()
        if f.parent_id == parent_id and (include_hidden or not f.hidden)
    ]
    raw_filter = request.query.get("$filter")
    if raw_filter is not None:
        folders = [f for f in folders if _folder_filter(raw_filter)(f)]
    fields = resolve_folder_select(parse_select(request))
    top = parse_top(request, default=10, maximum=1000, directory=False)
    skip = _skip(request)
    page = folders[skip : skip + top]
    body: dict[str, Any] = {
        "value": [select_folder_fields(folder_json(box, f), fields) for f in page]
    }
    if skip + top < len(folders):
        query = dict(request.query)
        query["$skip"] = str(skip + top)
        body["@odata.nextLink"] = request.url(request.path.split("/v1.0/", 1)[1], query)
    return ok(body)


_FOLDER_FILTER = re.compile(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)


def _folder_filter(raw: str) -> Callable[[Folder], bool]:
    """The one folder filter clients need (`displayName eq '...'`); others are not modelled."""
    match = _FOLDER_FILTER.match(raw)
    if match is None:
        # Never ignore a filter silently: answer that the emulator does not evaluate it.
        raise GraphError(
            501,
            "NotImplemented",
            "The emulator evaluates only \"displayName eq '...'\" in $filter on mail folders.",
        )
    wanted = match.group(1).replace("''", "'").lower()
    return lambda f: f.display_name.lower() == wanted


@ROUTER.add("GET", "users/{user}/mailFolders", MAIL_READ_BASIC, "mail")
def list_folders(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    return _folder_page(request, box, box.well_known["msgfolderroot"])


@ROUTER.add("GET", "users/{user}/mailFolders/{folder}", MAIL_READ_BASIC, "mail")
def get_folder(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    refuse_unmodelled(request, "$select")
    box = _box(request)
    fields = resolve_folder_select(parse_select(request))
    return ok(
        select_folder_fields(folder_json(box, _folder(box, request.params["folder"])), fields)
    )


@ROUTER.add("GET", "users/{user}/mailFolders/{folder}/childFolders", MAIL_READ_BASIC, "mail")
def list_child_folders(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    return _folder_page(request, box, _folder(box, request.params["folder"]).id)


def _create_folder(request: GraphRequest, parent: Folder) -> GraphResponse:
    box = _box(request)
    payload = request.json()
    name = payload.get("displayName") if isinstance(payload, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise bad_request("The displayName property is required.", "ErrorInvalidRequest")
    for f in box.folders.values():
        if f.parent_id == parent.id and f.display_name.lower() == name.lower():
            raise GraphError(
                409, "ErrorFolderExists", "A folder with the specified name already exists."
            )
    box.id_counter += 1
    fid = graph_id(box.user_id, "folder", "custom", box.id_counter, prefix=b"AAMkAGFR")
    folder = Folder(fid, name, parent.id, None, bool(payload.get("isHidden", False)))
    box.folders[fid] = folder
    box.pristine = False
    return ok(folder_json(box, folder), status=201)


@ROUTER.add("POST", "users/{user}/mailFolders", MAIL_WRITE, "mail")
def create_top_folder(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    return _create_folder(request, box.folders[box.well_known["msgfolderroot"]])


@ROUTER.add("POST", "users/{user}/mailFolders/{folder}/childFolders", MAIL_WRITE, "mail")
def create_child_folder(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return _create_folder(request, _folder(_box(request), request.params["folder"]))


# Listing ------------------------------------------------------------------------------


def _skip(request: GraphRequest) -> int:
    raw = request.query.get("$skip", "0")
    try:
        skip = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value '{raw}' for query option '$skip'.") from None
    if skip < 0:
        raise bad_request(f"Invalid value '{raw}' for query option '$skip'.")
    return skip


def _received_desc(msg: Message) -> datetime:
    return msg.received


def list_messages(request: GraphRequest, source: list[Message]) -> GraphResponse:
    refuse_unmodelled(
        request, "$select", "$filter", "$orderby", "$search", "$top", "$skip", "$count", "$expand"
    )
    view = _view(request)
    fields = resolve_select(parse_select(request), basic_only=view.basic_only)
    expand = _expand_attachments(request, view)
    search = request.query.get("$search")
    raw_filter = request.query.get("$filter")
    raw_orderby = request.query.get("$orderby")
    try:
        if search is not None:
            if raw_orderby is not None:
                raise GraphError(
                    400,
                    "SearchWithOrderBy",
                    "The query parameter '$orderBy' is not supported with '$search'.",
                )
            if raw_filter is not None:
                raise GraphError(
                    400,
                    "ErrorInvalidUrlQuery",
                    "The query parameter '$filter' is not supported with '$search'.",
                )
            predicate = compile_search(parse_search(search))
            items = [m for m in source if predicate(m)]
            items.sort(key=lambda m: m.sent or m.received, reverse=True)
            del items[SEARCH_RESULT_CAP:]
        else:
            expr = parse_filter(raw_filter) if raw_filter is not None else None
            items = source
            if expr is not None:
                predicate = compile_message_filter(expr)
                items = [m for m in items if predicate(m)]
            if raw_orderby is not None:
                orderby = parse_orderby(raw_orderby)
                check_message_orderby(orderby, expr)
                items = list(items)
                for prop, descending in reversed(orderby):
                    items.sort(key=message_sort_key(prop), reverse=descending)
            else:
                items = sorted(items, key=_received_desc, reverse=True)
    except QueryError as exc:
        raise _query_error(exc) from exc
    default_top = 10
    max_page = request.prefer("odata.maxpagesize")
    if max_page and max_page.isdigit():
        default_top = min(int(max_page), 1000)
    top = parse_top(request, default=default_top, maximum=1000, directory=False)
    skip = _skip(request)
    page = items[skip : skip + top]
    body: dict[str, Any] = {
        "@odata.context": f"{request.base_url}/v1.0/$metadata#users('{request.params['user']}')/messages"
    }
    if request.query.get("$count", "").lower() == "true":
        body["@odata.count"] = len(items)
    if skip + top < len(items):
        query = dict(request.query)
        query["$skip"] = str(skip + top)
        body["@odata.nextLink"] = request.url(request.path.split("/v1.0/", 1)[1], query)
    body["value"] = [message_json(view, m, fields) for m in page]
    if expand is not None:
        for rendered, msg in zip(body["value"], page, strict=True):
            rendered["attachments"] = expand(msg)
    return ok(body, headers=_preference_headers(request))


@ROUTER.add("GET", "users/{user}/messages", MAIL_READ_BASIC, "mail")
def list_mailbox_messages(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return list_messages(request, list(_box(request).visible_messages()))


@ROUTER.add("GET", "users/{user}/mailFolders/{folder}/messages", MAIL_READ_BASIC, "mail")
def list_folder_messages(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    folder = _folder(box, request.params["folder"])
    return list_messages(request, list(box.in_folder(folder.id)))


# One message --------------------------------------------------------------------------


def _get_message(request: GraphRequest, folder_ref: str | None) -> GraphResponse:
    refuse_unmodelled(request, "$select", "$expand")
    box = _box(request)
    folder = _folder(box, folder_ref) if folder_ref else None
    msg = _message(box, request.params["message"], folder)
    view = _view(request)
    fields = resolve_select(parse_select(request), basic_only=view.basic_only)
    body = message_json(view, msg, fields)
    expand = _expand_attachments(request, view)
    if expand is not None:
        body["attachments"] = expand(msg)
    return ok(body, headers=_preference_headers(request))


ExpandedAttachments = Callable[[Message], list[dict[str, Any]]]
# What `attachments($select=...)` may name: the properties of the base `attachment` type.
_ATTACHMENT_PROPERTIES = {
    name.lower(): name
    for name in ("id", "name", "contentType", "size", "isInline", "lastModifiedDateTime")
}
_EXPAND = re.compile(r"^\s*attachments\s*(?:\((.*)\))?\s*$", re.IGNORECASE | re.DOTALL)
_EXPAND_SELECT = re.compile(r"^\s*\$?select\s*=(.*)$", re.IGNORECASE | re.DOTALL)


def _expand_attachments(request: GraphRequest, view: MessageView) -> ExpandedAttachments | None:
    """`$expand=attachments` or `attachments($select=...)` (the only expansion modelled).

    Plain `attachments` renders them in full (contentBytes included); with `$select`, each
    attachment keeps its `@odata` annotations, `id` and the properties named.
    """
    raw = (request.query.get("$expand") or "").strip()
    if not raw:
        return None
    match = _EXPAND.match(raw)
    if match is None:
        name = raw.split("(", 1)[0].strip()
        raise bad_request(
            f"Parsing OData Select and Expand failed: Could not find a property named '{name}'."
        )
    fields: set[str] | None = None
    if match.group(1) is not None:
        option = _EXPAND_SELECT.match(match.group(1))
        if option is None:
            # Nested $filter, $top, ... are valid OData the emulator does not evaluate.
            raise GraphError(
                501,
                "NotImplemented",
                "The emulator evaluates only $select inside $expand=attachments(...).",
            )
        fields = {"id"}
        for item in option.group(1).split(","):
            prop = _ATTACHMENT_PROPERTIES.get(item.strip().lower())
            if prop is None:
                raise bad_request(
                    "Parsing OData Select and Expand failed: Could not find a property named "
                    f"'{item.strip()}' on type 'microsoft.graph.attachment'."
                )
            fields.add(prop)
    if view.basic_only:
        raise GraphError(
            403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )
    selected = fields

    def render(msg: Message) -> list[dict[str, Any]]:
        if selected is None:
            return [attachment_json(a) for a in msg.attachments]
        return [
            {
                k: v
                for k, v in attachment_json(a, with_content=False).items()
                if k[0] == "@" or k in selected
            }
            for a in msg.attachments
        ]

    return render


@ROUTER.add("GET", "users/{user}/messages/{message}", MAIL_READ_BASIC, "mail")
def get_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return _get_message(request, None)


@ROUTER.add("GET", "users/{user}/mailFolders/{folder}/messages/{message}", MAIL_READ_BASIC, "mail")
def get_folder_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return _get_message(request, request.params["folder"])


@ROUTER.add("GET", "users/{user}/messages/{message}/$value", MAIL_READ, "mail")
def get_message_mime(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    msg = _message(_box(request), request.params["message"])
    return GraphResponse(200, None, {}, raw=rfc822_from_message(msg), content_type="text/plain")


@ROUTER.add("GET", "users/{user}/messages/{message}/attachments", MAIL_READ, "mail")
def list_attachments(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    msg = _message(_box(request), request.params["message"])
    select = {s.lower() for s in parse_select(request) or ()}
    values = []
    for att in msg.attachments:
        body = attachment_json(att)
        if select:
            body = {
                k: v
                for k, v in body.items()
                if k.startswith("@") or k.lower() in select or k == "id"
            }
        values.append(body)
    return ok({"value": values})


def _attachment(request: GraphRequest) -> Attachment:
    msg = _message(_box(request), request.params["message"])
    for att in msg.attachments:
        if att.id == request.params["attachment"]:
            return att
    raise item_not_found()


@ROUTER.add("GET", "users/{user}/messages/{message}/attachments/{attachment}", MAIL_READ, "mail")
def get_attachment(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return ok(attachment_json(_attachment(request)))


@ROUTER.add(
    "GET", "users/{user}/messages/{message}/attachments/{attachment}/$value", MAIL_READ, "mail"
)
def get_attachment_value(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    att = _attachment(request)
    content_type = (
        "message/rfc822" if att.kind == "item" else (att.content_type or "application/octet-stream")
    )
    return GraphResponse(200, None, {}, raw=att.content, content_type=content_type)


# Changes ------------------------------------------------------------------------------


def _moved_response(request: GraphRequest, msg: Message) -> GraphResponse:
    view = _view(request)
    return ok(
        message_json(view, msg, resolve_select(None, basic_only=False)),
        status=201,
        headers=_preference_headers(request),
    )


def _destination(request: GraphRequest) -> Folder:
    payload = request.json()
    dest = payload.get("destinationId") if isinstance(payload, dict) else None
    if not isinstance(dest, str) or not dest:
        raise bad_request("The destinationId property is required.", "ErrorInvalidRequest")
    folder = _box(request).folder(dest)
    if folder is None or folder.well_known_name == "recoverableitemspurges":
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return folder


@ROUTER.add("POST", "users/{user}/messages/{message}/move", MAIL_WRITE, "mail")
def move_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    msg = _message(box, request.params["message"])
    dest = _destination(request)
    box.move(msg, dest.id)
    return _moved_response(request, msg)


@ROUTER.add("POST", "users/{user}/messages/{message}/copy", MAIL_WRITE, "mail")
def copy_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    msg = _message(box, request.params["message"])
    dest = _destination(request)
    immutable, rest = box.new_item_ids()
    now = utcnow()
    clone = Message(
        immutable_id=immutable,
        rest_id=rest,
        folder_id=dest.id,
        internet_message_id=msg.internet_message_id,
        subject=msg.subject,
        from_=msg.from_,
        sender=msg.sender,
        to=list(msg.to),
        cc=list(msg.cc),
        bcc=list(msg.bcc),
        reply_to=list(msg.reply_to),
        received=msg.received,
        sent=msg.sent,
        body=msg.body,
        body_type=msg.body_type,
        headers=list(msg.headers),
        attachments=[
            Attachment(
                graph_id(immutable, "att", i, prefix=b"AAMkAGAT"),
                a.name,
                a.content_type,
                a.content,
                a.kind,
                a.is_inline,
                a.content_id,
                a.last_modified,
            )
            for i, a in enumerate(msg.attachments)
        ],
        categories=list(msg.categories),
        flag_status=msg.flag_status,
        is_read=msg.is_read,
        importance=msg.importance,
        is_draft=msg.is_draft,
        conversation_id=msg.conversation_id,
        created=now,
        last_modified=now,
        mime=msg.mime,
    )
    box.add_message(clone)
    return _moved_response(request, clone)


@ROUTER.add("DELETE", "users/{user}/messages/{message}", MAIL_WRITE, "mail")
def delete_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return _soft_delete(request)


def _soft_delete(request: GraphRequest) -> GraphResponse:
    box = _box(request)
    msg = _message(box, request.params["message"])
    deletions = box.well_known["recoverableitemsdeletions"]
    if msg.folder_id == deletions:
        raise GraphError(400, "ErrorCannotDeleteObject", "Object cannot be deleted.")
    # A soft delete: the item lands in Recoverable Items, where users can still recover it.
    box.move(msg, deletions)
    return no_content()


@ROUTER.add("DELETE", "users/{user}/mailFolders/{folder}/messages/{message}", MAIL_WRITE, "mail")
def delete_folder_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    _message(
        _box(request), request.params["message"], _folder(_box(request), request.params["folder"])
    )
    return _soft_delete(request)


@ROUTER.add("POST", "users/{user}/messages/{message}/permanentDelete", MAIL_WRITE, "mail")
def permanent_delete(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    box.remove(_message(box, request.params["message"]))
    return no_content()


@ROUTER.add(
    "POST",
    "users/{user}/mailFolders/{folder}/messages/{message}/permanentDelete",
    MAIL_WRITE,
    "mail",
)
def permanent_delete_in_folder(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    box.remove(_message(box, request.params["message"], _folder(box, request.params["folder"])))
    return no_content()


_ALWAYS_UPDATABLE = {
    "categories",
    "flag",
    "isread",
    "importance",
    "inferenceclassification",
    "singlevalueextendedproperties",
}
_DRAFT_ONLY = {
    "subject",
    "body",
    "internetmessageid",
    "replyto",
    "torecipients",
    "ccrecipients",
    "bccrecipients",
    "from",
    "sender",
    "internetmessageheaders",
}
_READ_ONLY = {
    "id",
    "createddatetime",
    "lastmodifieddatetime",
    "changekey",
    "receiveddatetime",
    "sentdatetime",
    "hasattachments",
    "bodypreview",
    "parentfolderid",
    "conversationid",
    "conversationindex",
    "isdraft",
    "weblink",
    "uniquebody",
}


def _recipients(value: Any, field: str) -> list[EmailAddress]:
    if not isinstance(value, list):
        raise GraphError(
            400,
            "RequestBodyRead",
            f"Cannot convert the literal to the expected type for '{field}'.",
        )
    return [_recipient(v, field) for v in value]


def _recipient(value: Any, field: str) -> EmailAddress:
    try:
        email = value["emailAddress"]
        address = email["address"]
        if not isinstance(address, str):
            raise TypeError
        return EmailAddress(str(email.get("name") or address), address)
    except (KeyError, TypeError):
        raise GraphError(400, "RequestBodyRead", f"Invalid recipient in '{field}'.") from None


def _apply_patch(box: Mailbox, msg: Message, payload: dict[str, Any]) -> None:
    for key in payload:
        low = key.lower()
        if key.startswith("@odata"):
            continue
        if low in _READ_ONLY:
            raise GraphError(
                400,
                "ErrorInvalidPropertySet",
                f"The property '{key}' is read-only and cannot be set.",
            )
        if low in _DRAFT_ONLY and not msg.is_draft:
            raise GraphError(
                400,
                "ErrorInvalidPropertyUpdateSentMessage",
                "Update operation is invalid for property of a sent message.",
            )
        if low not in _ALWAYS_UPDATABLE and low not in _DRAFT_ONLY:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{key}' does not exist on type 'microsoft.graph.message'. Make sure to only use property names that are defined by the type or mark the type as open type.",
            )
    for key, value in payload.items():
        low = key.lower()
        if low == "categories":
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise GraphError(400, "RequestBodyRead", "categories must be an array of strings.")
            msg.categories = list(dict.fromkeys(value))
        elif low == "flag":
            status = value.get("flagStatus") if isinstance(value, dict) else None
            if status not in ("notFlagged", "flagged", "complete"):
                raise GraphError(400, "RequestBodyRead", "Invalid flagStatus.")
            msg.flag_status = status
        elif low == "isread":
            if not isinstance(value, bool):
                raise GraphError(400, "RequestBodyRead", "isRead must be a boolean.")
            msg.is_read = value
        elif low == "importance":
            if value not in ("low", "normal", "high"):
                raise GraphError(400, "RequestBodyRead", "Invalid importance.")
            msg.importance = value
        elif low == "inferenceclassification":
            if value not in ("focused", "other"):
                raise GraphError(400, "RequestBodyRead", "Invalid inferenceClassification.")
            msg.inference_classification = value
        elif low == "subject":
            msg.subject = str(value or "")
        elif low == "body":
            msg.body, msg.body_type = _body(value)
        elif low in ("torecipients", "ccrecipients", "bccrecipients", "replyto"):
            setattr(
                msg,
                {
                    "torecipients": "to",
                    "ccrecipients": "cc",
                    "bccrecipients": "bcc",
                    "replyto": "reply_to",
                }[low],
                _recipients(value, key),
            )
        elif low in ("from", "sender"):
            setattr(msg, "from_" if low == "from" else "sender", _recipient(value, key))
        elif low == "internetmessageid":
            msg.internet_message_id = str(value)
        # singleValueExtendedProperties: message flags are read-only after the first save.
    msg.mime = None if msg.is_draft else msg.mime
    box.touch(msg)


def _body(value: Any) -> tuple[str, BodyType]:
    if not isinstance(value, dict):
        raise GraphError(400, "RequestBodyRead", "body must be an itemBody object.")
    content_type = str(value.get("contentType", "text")).lower()
    if content_type not in ("text", "html"):
        raise GraphError(400, "RequestBodyRead", "body.contentType must be text or html.")
    return str(value.get("content", "")), "html" if content_type == "html" else "text"


@ROUTER.add("PATCH", "users/{user}/messages/{message}", MAIL_WRITE, "mail")
def update_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    msg = _message(box, request.params["message"])
    payload = request.json()
    if not isinstance(payload, dict):
        raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
    _apply_patch(box, msg, payload)
    view = _view(request)
    return ok(
        message_json(view, msg, resolve_select(None, basic_only=False)),
        headers=_preference_headers(request),
    )


# Creating messages ---------------------------------------------------------------------

MESSAGE_FLAGS = "integer 0x0e07"
MF_READ = 0x01
MF_UNSENT = 0x08


def _extended_time(props: dict[str, str], tag: str) -> datetime | None:
    raw = props.get(f"systemtime {tag}")
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise GraphError(
            400,
            "ErrorInvalidExtendedPropertyValue",
            f"Invalid value for extended property SystemTime {tag}.",
        ) from None


_FLAG_STATUSES = frozenset({"notFlagged", "flagged", "complete"})
_IMPORTANCES = frozenset({"low", "normal", "high"})


def _create_from_json(
    request: GraphRequest, box: Mailbox, folder: Folder, payload: dict[str, Any]
) -> Message:
    props: dict[str, str] = {}
    for prop in payload.get("singleValueExtendedProperties") or []:
        if not isinstance(prop, dict) or "id" not in prop or "value" not in prop:
            raise GraphError(400, "RequestBodyRead", "Invalid singleValueExtendedProperties entry.")
        props[str(prop["id"]).lower()] = str(prop["value"])
    is_draft = True
    is_read = True  # a new draft is read
    if MESSAGE_FLAGS in props:
        try:
            flags = int(props[MESSAGE_FLAGS])
        except ValueError:
            raise GraphError(
                400, "ErrorInvalidExtendedPropertyValue", "Invalid value for Integer 0x0E07."
            ) from None
        is_draft = bool(flags & MF_UNSENT)
        is_read = bool(flags & MF_READ)
    headers: list[tuple[str, str]] = []
    for header in payload.get("internetMessageHeaders") or []:
        name = str(header.get("name", "")) if isinstance(header, dict) else ""
        if not name.lower().startswith("x-"):
            raise GraphError(
                400,
                "InvalidInternetMessageHeader",
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
            )
        headers.append((name, str(header.get("value", ""))))
    flag = payload.get("flag")
    flag_status = flag.get("flagStatus", "notFlagged") if isinstance(flag, dict) else "notFlagged"
    if flag is not None and (not isinstance(flag, dict) or flag_status not in _FLAG_STATUSES):
        raise GraphError(400, "RequestBodyRead", "Invalid flagStatus.")
    importance = payload.get("importance") or "normal"
    if importance not in _IMPORTANCES:
        raise GraphError(400, "RequestBodyRead", "Invalid importance.")
    now = utcnow()
    received = _extended_time(props, "0x0e06") or now
    sent = _extended_time(props, "0x0039") or (None if is_draft else received)
    immutable, rest = box.new_item_ids()
    body, body_type = _body(payload["body"]) if "body" in payload else ("", "text")
    from_ = _recipient(payload["from"], "from") if payload.get("from") else None
    attachments = []
    for i, att in enumerate(payload.get("attachments") or []):
        if (
            not isinstance(att, dict)
            or str(att.get("@odata.type", "")).lower() != "#microsoft.graph.fileattachment"
        ):
            raise GraphError(400, "RequestBodyRead", "Only fileAttachment can be created inline.")
        try:
            content = base64.b64decode(str(att.get("contentBytes", "")), validate=True)
        except binascii.Error:
            raise GraphError(400, "RequestBodyRead", "contentBytes is not valid base64.") from None
        attachments.append(
            Attachment(
                graph_id(immutable, "att", i, prefix=b"AAMkAGAT"),
                str(att.get("name") or "attachment"),
                str(att.get("contentType") or "application/octet-stream"),
                content,
                "file",
                bool(att.get("isInline", False)),
                att.get("contentId"),
            )
        )
    msg = Message(
        immutable_id=immutable,
        rest_id=rest,
        folder_id=folder.id,
        internet_message_id=str(
            payload.get("internetMessageId") or f"<{immutable[-20:]}@emulator.local>"
        ),
        subject=str(payload.get("subject") or ""),
        from_=from_,
        sender=_recipient(payload["sender"], "sender") if payload.get("sender") else from_,
        to=_recipients(payload.get("toRecipients") or [], "toRecipients"),
        cc=_recipients(payload.get("ccRecipients") or [], "ccRecipients"),
        bcc=_recipients(payload.get("bccRecipients") or [], "bccRecipients"),
        reply_to=_recipients(payload.get("replyTo") or [], "replyTo"),
        received=received,
        sent=sent,
        body=body,
        body_type=body_type,
        headers=headers,
        attachments=attachments,
        categories=[str(c) for c in payload.get("categories") or []],
        is_read=bool(payload.get("isRead", is_read)),
        flag_status=str(flag_status),
        importance=str(importance),
        is_draft=is_draft,
        conversation_id=conversation_id_for(str(payload.get("subject") or "")),
        created=now,
        last_modified=now,
    )
    return msg


def _create_message(request: GraphRequest, folder: Folder) -> GraphResponse:
    box = _box(request)
    content_type = (request.header("content-type") or "").lower()
    if content_type.startswith("text/plain"):
        # A MIME message, base64-encoded: Graph saves it as a draft.
        try:
            raw = base64.b64decode(request.body, validate=False)
        except binascii.Error:
            raise GraphError(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            ) from None
        msg = message_from_rfc822(raw, box=box, folder_id=folder.id, received=utcnow())
        msg.is_draft = True
    else:
        payload = request.json()
        if not isinstance(payload, dict):
            raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
        msg = _create_from_json(request, box, folder, payload)
    box.add_message(msg)
    view = _view(request)
    return ok(
        message_json(view, msg, resolve_select(None, basic_only=False)),
        status=201,
        headers=_preference_headers(request),
    )


@ROUTER.add("POST", "users/{user}/messages", MAIL_WRITE, "mail")
def create_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    return _create_message(request, box.folders[box.well_known["drafts"]])


@ROUTER.add("POST", "users/{user}/mailFolders/{folder}/messages", MAIL_WRITE, "mail")
def create_folder_message(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return _create_message(request, _folder(_box(request), request.params["folder"]))


@ROUTER.add("POST", "users/{user}/messages/{message}/attachments", MAIL_WRITE, "mail")
def add_attachment(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    msg = _message(box, request.params["message"])
    if not msg.is_draft:
        raise GraphError(
            400, "ErrorInvalidOperation", "Attachments can only be added to draft messages."
        )
    payload = request.json()
    if (
        not isinstance(payload, dict)
        or str(payload.get("@odata.type", "")).lower() != "#microsoft.graph.fileattachment"
    ):
        raise GraphError(400, "RequestBodyRead", "Only fileAttachment is supported.")
    try:
        content = base64.b64decode(str(payload.get("contentBytes", "")), validate=True)
    except binascii.Error:
        raise GraphError(400, "RequestBodyRead", "contentBytes is not valid base64.") from None
    if len(content) > 3 * 1024 * 1024:
        raise GraphError(
            413,
            "ErrorRequestEntityTooLarge",
            "Attachments larger than 3 MB need an upload session.",
        )
    att = Attachment(
        graph_id(
            msg.immutable_id, "att", len(msg.attachments), utcnow().timestamp(), prefix=b"AAMkAGAT"
        ),
        str(payload.get("name") or "attachment"),
        str(payload.get("contentType") or "application/octet-stream"),
        content,
        "file",
        bool(payload.get("isInline", False)),
        payload.get("contentId"),
    )
    msg.attachments.append(att)
    box.touch(msg)
    return ok(attachment_json(att), status=201)


# The same operations addressed through a folder (`…/mailFolders/{folder}/messages/{message}/…`):
# Graph accepts both paths; through a folder, the message must be in that folder.


def _through_folder(handler: Handler) -> Handler:
    def checked(
        request: GraphRequest, state: EmulatorState
    ) -> GraphResponse | Awaitable[GraphResponse]:
        box = _box(request)
        _message(box, request.params["message"], _folder(box, request.params["folder"]))
        return handler(request, state)

    return checked


for _method, _suffix, _roles, _handler in (
    ("PATCH", "", MAIL_WRITE, update_message),
    ("POST", "/move", MAIL_WRITE, move_message),
    ("POST", "/copy", MAIL_WRITE, copy_message),
    ("GET", "/$value", MAIL_READ, get_message_mime),
    ("GET", "/attachments", MAIL_READ, list_attachments),
    ("GET", "/attachments/{attachment}", MAIL_READ, get_attachment),
    ("GET", "/attachments/{attachment}/$value", MAIL_READ, get_attachment_value),
):
    ROUTER.add(
        _method,
        f"users/{{user}}/mailFolders/{{folder}}/messages/{{message}}{_suffix}",
        _roles,
        "mail",
    )(_through_folder(_handler))
