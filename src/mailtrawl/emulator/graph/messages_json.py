"""Message, folder and attachment JSON exactly as Graph shapes it (default sets, `$select`)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from mailtrawl.emulator.bodies import body_preview, html_to_text, text_to_html
from mailtrawl.emulator.errors import GraphError
from mailtrawl.emulator.state import Attachment, EmailAddress, Folder, Mailbox, Message


def iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _recipient(value: EmailAddress) -> dict[str, Any]:
    # Exchange never shows an empty display name: without one, the address stands in.
    return {"emailAddress": {"name": value.name or value.address, "address": value.address}}


def _addr(value: EmailAddress | None) -> dict[str, Any] | None:
    return _recipient(value) if value is not None else None


def _addrs(values: list[EmailAddress]) -> list[dict[str, Any]]:
    return [_recipient(v) for v in values]


class MessageView:
    """Renders messages for one request: id flavour, body type and role-limited fields."""

    def __init__(self, *, immutable: bool, text_body: bool, basic_only: bool) -> None:
        self.immutable = immutable
        self.text_body = text_body
        self.basic_only = basic_only

    def message_id(self, msg: Message) -> str:
        return msg.immutable_id if self.immutable else msg.rest_id

    def body(self, msg: Message) -> dict[str, str]:
        if self.text_body and msg.body_type == "html":
            return {"contentType": "text", "content": html_to_text(msg.body)}
        if not self.text_body and msg.body_type == "text":
            return {"contentType": "html", "content": text_to_html(msg.body)}
        return {"contentType": msg.body_type, "content": msg.body}


_FIELDS: dict[str, Callable[[MessageView, Message], Any]] = {
    "id": lambda v, m: v.message_id(m),
    "createdDateTime": lambda v, m: iso(m.created or m.received),
    "lastModifiedDateTime": lambda v, m: iso(m.last_modified or m.received),
    "changeKey": lambda v, m: m.change_key,
    "categories": lambda v, m: list(m.categories),
    "receivedDateTime": lambda v, m: iso(m.received),
    "sentDateTime": lambda v, m: iso(m.sent),
    "hasAttachments": lambda v, m: m.has_attachments,
    "internetMessageId": lambda v, m: m.internet_message_id,
    "subject": lambda v, m: m.subject,
    "bodyPreview": lambda v, m: body_preview(m.body, m.body_type),
    "importance": lambda v, m: m.importance,
    "parentFolderId": lambda v, m: m.folder_id,
    "conversationId": lambda v, m: m.conversation_id,
    "conversationIndex": lambda v, m: base64.b64encode(m.conversation_id.encode()[:22]).decode(),
    "isDeliveryReceiptRequested": lambda v, m: False,
    "isReadReceiptRequested": lambda v, m: False,
    "isRead": lambda v, m: m.is_read,
    "isDraft": lambda v, m: m.is_draft,
    "webLink": lambda v, m: (
        f"https://outlook.office365.com/owa/?ItemID={m.rest_id}&exvsurl=1&viewmodel=ReadMessageItem"
    ),
    "inferenceClassification": lambda v, m: m.inference_classification,
    "body": lambda v, m: v.body(m),
    "uniqueBody": lambda v, m: v.body(m),
    "sender": lambda v, m: _addr(m.sender),
    "from": lambda v, m: _addr(m.from_),
    "toRecipients": lambda v, m: _addrs(m.to),
    "ccRecipients": lambda v, m: _addrs(m.cc),
    "bccRecipients": lambda v, m: _addrs(m.bcc),
    "replyTo": lambda v, m: _addrs(m.reply_to),
    "flag": lambda v, m: {"flagStatus": m.flag_status},
    "internetMessageHeaders": lambda v, m: [{"name": n, "value": val} for n, val in m.headers],
}
FIELD_NAMES = {name.lower(): name for name in _FIELDS}
DEFAULT_FIELDS: tuple[str, ...] = tuple(
    n for n in _FIELDS if n not in ("uniqueBody", "internetMessageHeaders")
)
# Mail.ReadBasic.All: everything but the body and its preview (and attachments, extended props).
BODY_FIELDS = frozenset({"body", "bodyPreview", "uniqueBody"})


def resolve_select(select: list[str] | None, *, basic_only: bool) -> list[str]:
    """Canonical field names for `$select` (or the default set); unknown names answer 400."""
    if select is None:
        fields = list(DEFAULT_FIELDS)
        return [f for f in fields if f not in BODY_FIELDS] if basic_only else fields
    out: list[str] = []
    for raw in select:
        name = FIELD_NAMES.get(raw.lower())
        if name is None:
            raise GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{raw}' on type 'microsoft.graph.message'.",
            )
        if basic_only and name in BODY_FIELDS:
            raise GraphError(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        if name not in out:
            out.append(name)
    if "id" not in out:
        out.insert(0, "id")
    return out


def message_json(view: MessageView, msg: Message, fields: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.etag": f'W/"{msg.change_key}"'}
    for name in fields:
        body[name] = _FIELDS[name](view, msg)
    return body


FOLDER_FIELDS = (
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "sizeInBytes",
    "isHidden",
)
_FOLDER_FIELDS_LOWER = {name.lower(): name for name in FOLDER_FIELDS}


def resolve_folder_select(select: list[str] | None) -> list[str] | None:
    """Canonical mailFolder fields for `$select` (None: all); unknown names answer 400."""
    if select is None:
        return None
    out = ["id"]
    for raw in select:
        name = _FOLDER_FIELDS_LOWER.get(raw.lower())
        if name is None:
            raise GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{raw}' on type 'microsoft.graph.mailFolder'.",
            )
        if name not in out:
            out.append(name)
    return out


def select_folder_fields(body: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    return body if fields is None else {k: body[k] for k in fields}


def folder_json(box: Mailbox, folder: Folder) -> dict[str, Any]:
    total = unread = size = 0
    for msg in box.in_folder(folder.id):
        total += 1
        unread += 0 if msg.is_read else 1
        size += len(msg.body) + sum(a.size for a in msg.attachments)
    children = sum(1 for f in box.folders.values() if f.parent_id == folder.id)
    return {
        "id": folder.id,
        "displayName": folder.display_name,
        "parentFolderId": folder.parent_id,
        "childFolderCount": children,
        "unreadItemCount": unread,
        "totalItemCount": total,
        "sizeInBytes": size,
        "isHidden": folder.hidden and folder.well_known_name not in (None, "msgfolderroot"),
    }


def attachment_json(att: Attachment, *, with_content: bool = True) -> dict[str, Any]:
    if att.kind == "item":
        return {
            "@odata.type": "#microsoft.graph.itemAttachment",
            "id": att.id,
            "lastModifiedDateTime": iso(att.last_modified),
            "name": att.name,
            "contentType": None,
            "size": att.size,
            "isInline": att.is_inline,
        }
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": att.content_type,
        "id": att.id,
        "lastModifiedDateTime": iso(att.last_modified),
        "name": att.name,
        "contentType": att.content_type,
        "size": att.size,
        "isInline": att.is_inline,
        "contentId": att.content_id,
        "contentLocation": None,
    }
    if with_content:
        body["contentBytes"] = base64.b64encode(att.content).decode()
    return body
