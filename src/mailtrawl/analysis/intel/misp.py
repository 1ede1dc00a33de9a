"""MISP event exports: `{"Event": ...}`, a list of them, or a REST search `{"response": [...]}`.

Attributes are read from `Event.Attribute[]` and from every `Event.Object[].Attribute[]`.
Types that name something we can look up are kept (hashes, `filename|<hash>`, url, domain,
hostname, `domain|ip`, ip-src/ip-dst with or without `|port`, sender email addresses); the rest
(comments, registry keys, recipient addresses...) are skipped with a count. Deleted attributes
are skipped; with `only_to_ids` so are those not flagged for detection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mailtrawl.analysis.intel.collect import Collector
from mailtrawl.analysis.intel.values import IntelFormatError, IntelType

# MISP type -> (indicator type, which "|"-separated part holds the value).
_TYPES: dict[str, tuple[IntelType, int]] = {
    "md5": (IntelType.MD5, 0),
    "sha1": (IntelType.SHA1, 0),
    "sha256": (IntelType.SHA256, 0),
    "sha512": (IntelType.SHA512, 0),
    "filename|md5": (IntelType.MD5, 1),
    "filename|sha1": (IntelType.SHA1, 1),
    "filename|sha256": (IntelType.SHA256, 1),
    "filename|sha512": (IntelType.SHA512, 1),
    "malware-sample": (IntelType.MD5, 1),  # "name|md5"
    "url": (IntelType.URL, 0),
    "domain": (IntelType.DOMAIN, 0),
    "hostname": (IntelType.DOMAIN, 0),
    "hostname|port": (IntelType.DOMAIN, 0),
    "ip-src": (IntelType.IP, 0),
    "ip-dst": (IntelType.IP, 0),
    "ip-src|port": (IntelType.IP, 0),
    "ip-dst|port": (IntelType.IP, 0),
    "email": (IntelType.EMAIL, 0),
    "email-src": (IntelType.EMAIL, 0),
    "email-reply-to": (IntelType.EMAIL, 0),
}


def is_misp(document: Any) -> bool:
    """Whether a decoded JSON document looks like a MISP event export."""
    if isinstance(document, dict):
        return "Event" in document or isinstance(document.get("response"), list)
    return isinstance(document, list) and any(
        isinstance(item, dict) and "Event" in item for item in document[:10]
    )


def parse_misp(document: Any, collector: Collector, *, only_to_ids: bool = False) -> None:
    """Collect indicators from every event in the document."""
    for event_position, event in _events(document):
        info = str(event.get("info", ""))
        org = event.get("Orgc") or event.get("Org") or {}
        source = str(org.get("name", "")) if isinstance(org, dict) else ""
        attributes = event.get("Attribute", [])
        if not isinstance(attributes, list):
            raise IntelFormatError("'Attribute' must be a list", event_position)
        for index, attribute in enumerate(attributes):
            position = f"{event_position}.Attribute[{index}]"
            _attribute(attribute, position, info, source, collector, only_to_ids)
        objects = event.get("Object", [])
        if not isinstance(objects, list):
            raise IntelFormatError("'Object' must be a list", event_position)
        for object_index, obj in enumerate(objects):
            object_position = f"{event_position}.Object[{object_index}]"
            if not isinstance(obj, dict):
                raise IntelFormatError("expected a JSON object", object_position)
            inner = obj.get("Attribute", [])
            if not isinstance(inner, list):
                raise IntelFormatError("'Attribute' must be a list", object_position)
            if obj.get("deleted") in (True, "1", 1):
                continue
            for index, attribute in enumerate(inner):
                position = f"{object_position}.Attribute[{index}]"
                _attribute(attribute, position, info, source, collector, only_to_ids)


def _events(document: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(document, dict) and isinstance(document.get("response"), list):
        items: list[Any] = document["response"]
        prefix = "response"
    elif isinstance(document, list):
        items, prefix = document, ""
    else:
        items, prefix = [document], ""
    for index, item in enumerate(items):
        position = f"{prefix}[{index}].Event" if len(items) > 1 or prefix else "Event"
        event = item.get("Event") if isinstance(item, dict) else None
        if not isinstance(event, dict):
            raise IntelFormatError("expected an object with an 'Event'", position)
        yield position, event


def _attribute(
    attribute: Any,
    position: str,
    info: str,
    source: str,
    collector: Collector,
    only_to_ids: bool,
) -> None:
    if not isinstance(attribute, dict):
        raise IntelFormatError("expected a JSON object", position)
    if attribute.get("deleted") in (True, "1", 1):
        return
    if only_to_ids and attribute.get("to_ids") not in (True, "1", 1):
        return
    misp_type = str(attribute.get("type", ""))
    value = attribute.get("value")
    if not isinstance(value, str):
        collector.reject("the attribute has no string value", position)
        return
    description = str(attribute.get("comment") or info)
    if misp_type == "domain|ip":
        domain, _, ip = value.partition("|")
        collector.add(IntelType.DOMAIN, domain, position, description=description, source=source)
        if ip:
            collector.add(IntelType.IP, ip, position, description=description, source=source)
        return
    mapped = _TYPES.get(misp_type)
    if mapped is None:
        collector.warn(f"{position}: type {misp_type[:40]!r} is not looked up, skipped")
        return
    kind, part = mapped
    pieces = value.split("|")
    if part >= len(pieces):
        collector.reject(f"a {misp_type} value needs {part + 1} '|'-separated parts", position)
        return
    collector.add(kind, pieces[part], position, description=description, source=source)
