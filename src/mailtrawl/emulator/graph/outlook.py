"""Mailbox settings an incident responder touches: master categories, inbox rules, settings."""

from __future__ import annotations

import uuid
from typing import Any

from mailtrawl.emulator.errors import GraphError, bad_request, item_not_found
from mailtrawl.emulator.graph.core import (
    ROUTER,
    SETTINGS_READ,
    SETTINGS_WRITE,
    GraphRequest,
    GraphResponse,
    no_content,
    ok,
)
from mailtrawl.emulator.runtime import EmulatorState
from mailtrawl.emulator.state import Mailbox, MasterCategory

CATEGORY_COLORS = frozenset({"none", *(f"preset{i}" for i in range(25))})


def _box(request: GraphRequest) -> Mailbox:
    assert request.mailbox is not None
    return request.mailbox


def _category_json(cat: MasterCategory) -> dict[str, Any]:
    return {"id": cat.id, "displayName": cat.display_name, "color": cat.color}


def _payload(request: GraphRequest) -> dict[str, Any]:
    payload = request.json()
    if not isinstance(payload, dict):
        raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
    return payload


@ROUTER.add("GET", "users/{user}/outlook/masterCategories", SETTINGS_READ, "mail")
def list_categories(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return ok({"value": [_category_json(c) for c in _box(request).master_categories]})


@ROUTER.add("POST", "users/{user}/outlook/masterCategories", SETTINGS_WRITE, "mail")
def create_category(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    payload = _payload(request)
    name = payload.get("displayName")
    color = payload.get("color", "none")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("The displayName property is required.", "ErrorInvalidRequest")
    if color not in CATEGORY_COLORS:
        raise GraphError(400, "RequestBodyRead", f"Requested value '{color}' was not found.")
    if any(c.display_name.lower() == name.lower() for c in box.master_categories):
        raise GraphError(409, "ErrorAlreadyExists", "An object with the same key already exists.")
    cat = MasterCategory(str(uuid.uuid4()), name, color)
    box.master_categories.append(cat)
    box.pristine = False
    return ok(_category_json(cat), status=201)


def _category(request: GraphRequest) -> MasterCategory:
    for cat in _box(request).master_categories:
        if cat.id == request.params["category"]:
            return cat
    raise item_not_found()


@ROUTER.add("GET", "users/{user}/outlook/masterCategories/{category}", SETTINGS_READ, "mail")
def get_category(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return ok(_category_json(_category(request)))


@ROUTER.add("PATCH", "users/{user}/outlook/masterCategories/{category}", SETTINGS_WRITE, "mail")
def update_category(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    cat = _category(request)
    payload = _payload(request)
    for key, value in payload.items():
        if key == "color":
            if value not in CATEGORY_COLORS:
                raise GraphError(
                    400, "RequestBodyRead", f"Requested value '{value}' was not found."
                )
            cat.color = value
        elif key == "displayName":
            # The name is the key messages refer to; Outlook does not let it change.
            raise GraphError(
                400, "ErrorInvalidPropertySet", "The displayName of a category cannot be changed."
            )
        else:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{key}' does not exist on type 'microsoft.graph.outlookCategory'.",
            )
    _box(request).pristine = False
    return ok(_category_json(cat))


@ROUTER.add("DELETE", "users/{user}/outlook/masterCategories/{category}", SETTINGS_WRITE, "mail")
def delete_category(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    cat = _category(request)
    box.master_categories.remove(cat)
    box.pristine = False
    return no_content()


# Inbox rules ------------------------------------------------------------------------------

_RULE_FIELDS = frozenset(
    {"displayName", "sequence", "isEnabled", "conditions", "actions", "exceptions"}
)


def _rule_json(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rule["id"],
        "displayName": rule["displayName"],
        "sequence": rule["sequence"],
        "isEnabled": rule.get("isEnabled", True),
        "hasError": False,
        "isReadOnly": False,
        "conditions": rule.get("conditions") or {},
        "actions": rule.get("actions") or {},
        "exceptions": rule.get("exceptions") or {},
    }


def _check_rule_fields(payload: dict[str, Any]) -> None:
    for key in payload:
        if key not in _RULE_FIELDS and not key.startswith("@odata"):
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{key}' does not exist on type 'microsoft.graph.messageRule'.",
            )
    if "sequence" in payload and (
        not isinstance(payload["sequence"], int) or payload["sequence"] < 1
    ):
        raise bad_request("sequence must be a positive integer.", "ErrorInvalidRequest")


@ROUTER.add("GET", "users/{user}/mailFolders/{folder}/messageRules", SETTINGS_READ, "mail")
def list_rules(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    _inbox_only(request)
    rules = sorted(_box(request).message_rules, key=lambda r: int(str(r["sequence"])))
    return ok({"value": [_rule_json(r) for r in rules]})


def _inbox_only(request: GraphRequest) -> None:
    box = _box(request)
    folder = box.folder(request.params["folder"])
    if folder is None or folder.id != box.well_known["inbox"]:
        raise GraphError(
            400, "ErrorInvalidRequest", "Message rules are only supported on the Inbox folder."
        )


@ROUTER.add("POST", "users/{user}/mailFolders/{folder}/messageRules", SETTINGS_WRITE, "mail")
def create_rule(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    _inbox_only(request)
    payload = _payload(request)
    _check_rule_fields(payload)
    if not isinstance(payload.get("displayName"), str) or "sequence" not in payload:
        raise bad_request("displayName and sequence are required.", "ErrorInvalidRequest")
    rule = {**payload, "id": "AQAAA" + uuid.uuid4().hex[:20] + "="}
    box = _box(request)
    box.message_rules.append(rule)
    box.pristine = False
    return ok(_rule_json(rule), status=201)


def _rule(request: GraphRequest) -> dict[str, Any]:
    _inbox_only(request)
    for rule in _box(request).message_rules:
        if rule["id"] == request.params["rule"]:
            return rule
    raise item_not_found()


@ROUTER.add("GET", "users/{user}/mailFolders/{folder}/messageRules/{rule}", SETTINGS_READ, "mail")
def get_rule(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    return ok(_rule_json(_rule(request)))


@ROUTER.add(
    "PATCH", "users/{user}/mailFolders/{folder}/messageRules/{rule}", SETTINGS_WRITE, "mail"
)
def update_rule(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    rule = _rule(request)
    payload = _payload(request)
    _check_rule_fields(payload)
    rule.update(payload)
    _box(request).pristine = False
    return ok(_rule_json(rule))


@ROUTER.add(
    "DELETE", "users/{user}/mailFolders/{folder}/messageRules/{rule}", SETTINGS_WRITE, "mail"
)
def delete_rule(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    rule = _rule(request)
    box = _box(request)
    box.message_rules.remove(rule)
    box.pristine = False
    return no_content()


@ROUTER.add("GET", "users/{user}/mailboxSettings", SETTINGS_READ, "mail")
def get_mailbox_settings(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    box = _box(request)
    return ok(
        {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#users('{request.params['user']}')/mailboxSettings",
            "archiveFolder": box.well_known["archive"],
            "timeZone": "UTC",
            "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
            "dateFormat": "yyyy-MM-dd",
            "timeFormat": "HH:mm",
            "userPurpose": "user",
            "automaticRepliesSetting": {
                "status": "disabled",
                "externalAudience": "all",
                "internalReplyMessage": "",
                "externalReplyMessage": "",
            },
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": "08:00:00.0000000",
                "endTime": "17:00:00.0000000",
                "timeZone": {"name": "UTC"},
            },
        }
    )
