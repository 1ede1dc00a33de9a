"""Per-folder delta queries for messages (`mailFolders/{id}/messages/delta`).

Every change in a mailbox takes the next sequence number. A delta token records the sequence
the client has seen; the next round returns messages whose last change is newer, and
`@removed` entries for items that left the folder. Paging walks a fixed (since, upto] window
by sequence: an item that entered the folder in the window keeps its place (the moment it
entered), so changing it mid-sync never drops it from the round, and the change itself comes
in the next round; an older item changed mid-sync moves to the next round.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mailtrawl.emulator.errors import GraphError, bad_request, item_not_found
from mailtrawl.emulator.graph.core import (
    MAIL_READ,
    MAIL_READ_BASIC,
    ROUTER,
    GraphRequest,
    GraphResponse,
    ok,
)
from mailtrawl.emulator.graph.messages_json import MessageView, message_json, resolve_select
from mailtrawl.emulator.graph.paging import decode_token, encode_token
from mailtrawl.emulator.runtime import EmulatorState

DEFAULT_PAGE = 10
MAX_PAGE = 1000
_DELTA_FILTER = re.compile(r"^\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*$", re.IGNORECASE)


def _gone(request: GraphRequest) -> GraphError:
    restart = request.url(request.path.split("/v1.0/", 1)[1], {})
    return GraphError(
        410,
        "syncStateNotFound",
        "The sync state for this delta request was not found or has expired. Start a new full synchronization.",
        headers={"Location": restart},
    )


def _parse_bound(raw: str) -> tuple[str, float]:
    match = _DELTA_FILTER.match(raw)
    if match is None:
        raise GraphError(
            400,
            "ErrorInvalidUrlQueryFilter",
            "Only 'receivedDateTime ge|gt <value>' is supported in $filter for delta queries.",
        )
    try:
        bound = datetime.fromisoformat(match.group(2).replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid datetime '{match.group(2)}' in $filter.") from None
    if bound.tzinfo is None:
        bound = bound.replace(tzinfo=UTC)
    return match.group(1).lower(), bound.timestamp()


@ROUTER.add("GET", "users/{user}/mailFolders/{folder}/messages/delta", MAIL_READ_BASIC, "mail")
def folder_delta(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = request.mailbox
    assert box is not None
    folder = box.folder(request.params["folder"])
    if folder is None:
        raise item_not_found()
    if "$search" in request.query:
        raise bad_request("$search is not supported with delta queries.")
    orderby = request.query.get("$orderby")
    if orderby is not None and orderby.strip().lower() != "receiveddatetime desc":
        raise bad_request("Only '$orderby=receivedDateTime desc' is supported for delta queries.")

    raw_token = request.query.get("$deltatoken") or request.query.get("$skiptoken")
    if raw_token is not None:
        token = decode_token(state.delta_secret, raw_token)
        if (
            token is None
            or token.get("m") != box.user_id
            or token.get("f") != folder.id
            or token.get("g") != box.sync_generation
            or token.get("e") != state.delta_epoch
        ):
            raise _gone(request)
        if "$deltatoken" in request.query:
            # A new round: everything after what the client has seen, up to now.
            token = {
                **token,
                "since": token["upto"],
                "upto": box.seq,
                "cur": token["upto"],
                "first": False,
            }
    else:
        select = request.query.get("$select")
        change_type = request.query.get("changeType")
        if change_type is not None and change_type not in ("created", "updated", "deleted"):
            raise bad_request(f"Invalid changeType '{change_type}'.")
        op, bound = (
            _parse_bound(request.query["$filter"]) if "$filter" in request.query else ("", 0.0)
        )
        token = {
            "m": box.user_id,
            "f": folder.id,
            "g": box.sync_generation,
            "e": state.delta_epoch,
            "since": 0,
            "upto": box.seq,
            "cur": 0,
            "first": True,
            "sel": select,
            "ct": change_type,
            "op": op,
            "bound": bound,
            "imm": request.immutable_ids,
        }

    view = MessageView(
        immutable=bool(token.get("imm")), text_body=request.prefer_text_body, basic_only=False
    )
    select_list = [s.strip() for s in token["sel"].split(",")] if token.get("sel") else None
    fields = resolve_select(select_list, basic_only=not (request.roles & MAIL_READ))
    since, upto, cur = int(token["since"]), int(token["upto"]), int(token["cur"])
    change_type = token.get("ct")
    op, bound = token.get("op") or "", float(token.get("bound") or 0.0)

    entries: list[tuple[int, dict[str, Any]]] = []
    if change_type != "deleted":
        for msg in box.in_folder(folder.id):
            # An item that entered the folder in the window is paged by that (stable) moment,
            # so a change while the client pages cannot push it out of the round; it comes
            # again in the next round as an update. Other items are paged by their last change.
            if since < msg.folder_seq <= upto:
                created, key = True, msg.folder_seq
            elif since < msg.seq <= upto:
                created, key = False, msg.seq
            else:
                continue
            if key <= cur:
                continue
            if change_type == "created" and not created:
                continue
            if change_type == "updated" and created:
                continue
            if op:
                ts = msg.received.timestamp()
                if (op == "ge" and ts < bound) or (op == "gt" and ts <= bound):
                    continue
            entries.append((key, message_json(view, msg, fields)))
    if not token.get("first") and change_type in (None, "deleted"):
        for tomb in box.tombstones:
            if tomb.folder_id == folder.id and cur < tomb.seq <= upto and tomb.seq > since:
                entries.append(
                    (
                        tomb.seq,
                        {
                            "@odata.type": "#microsoft.graph.message",
                            "id": tomb.immutable_id if token.get("imm") else tomb.rest_id,
                            "@removed": {"reason": "deleted"},
                        },
                    )
                )
    entries.sort(key=lambda e: e[0])
    page_size = DEFAULT_PAGE
    max_page = request.prefer("odata.maxpagesize")
    if max_page and max_page.isdigit():
        page_size = max(1, min(int(max_page), MAX_PAGE))
    page = entries[:page_size]
    body: dict[str, Any] = {
        "@odata.context": f"{request.base_url}/v1.0/$metadata#Collection(message)",
    }
    base_path = request.path.split("/v1.0/", 1)[1]
    if len(entries) > page_size:
        next_token = {**token, "cur": page[-1][0]}
        body["@odata.nextLink"] = request.url(
            base_path, {"$skiptoken": encode_token(state.delta_secret, next_token)}
        )
    else:
        done = {**token, "cur": upto, "since": since, "first": False}
        body["@odata.deltaLink"] = request.url(
            base_path, {"$deltatoken": encode_token(state.delta_secret, done)}
        )
    body["value"] = [e[1] for e in page]
    headers = {"Preference-Applied": f"odata.maxpagesize={page_size}"} if max_page else {}
    return ok(body, headers=headers)
