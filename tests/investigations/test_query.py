"""Query documents and hunt files: validation that points at the field, canonical forms."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailtrawl.core.criteria import Group, Leaf, Not, leaves
from mailtrawl.investigations.query import (
    QueryError,
    hunt_to_document,
    load_hunt_file,
    parse_query,
    parse_size,
    query_schema,
)

NOW = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


def errors(document: object) -> list[tuple[str, str]]:
    with pytest.raises(QueryError) as caught:
        parse_query(document, now=NOW)
    return [(e.path, e.message) for e in caught.value.errors]


def test_shorthand_and_operators() -> None:
    hunt = parse_query(
        {
            "match": {
                "all": [
                    {"from": "Alerts@M1crosoft-Support.com"},
                    {"any": [{"subject": {"equals": "Hello"}}, {"body": ["reset", "expire"]}]},
                    {"not": {"from_domain": "contoso.com"}},
                    {"attachment_size": {"min": "10KB", "max": "5 MiB"}},
                    {"header": {"name": "X-Mailer", "contains": "PHPMailer"}},
                ]
            },
            "received": {"after": "2025-05-01", "before": "2025-05-31"},
            "folders": ["Inbox", "junkemail"],
        },
        now=NOW,
    )
    assert isinstance(hunt.match, Group)
    assert hunt.match.kind == "all"
    found = {leaf.path: leaf for leaf in leaves(hunt.match)}
    assert found["match.all[0].from"].values == ("alerts@m1crosoft-support.com",)
    assert found["match.all[1].any[0].subject"].op == "equals"
    assert found["match.all[1].any[1].body"].values == ("reset", "expire")
    assert isinstance(hunt.match.children[2], Not)
    size = found["match.all[3].attachment_size"]
    assert (size.size_min, size.size_max) == (10_000, 5 * 1024 * 1024)
    assert found["match.all[4].header"].header_name == "x-mailer"
    assert hunt.received_after == datetime(2025, 5, 1, tzinfo=UTC)
    # A date as the upper bound includes that whole day.
    assert hunt.received_before == datetime(2025, 6, 1, tzinfo=UTC)
    assert hunt.folders == ("inbox", "junkemail")
    assert hunt.attached_emails is True


def test_several_keys_in_one_mapping_mean_all_and_a_list_means_all() -> None:
    hunt = parse_query({"match": {"from": "a@b.example", "subject": "x"}}, now=NOW)
    assert isinstance(hunt.match, Group)
    assert hunt.match.kind == "all"
    assert [leaf.path for leaf in leaves(hunt.match)] == ["match.from", "match.subject"]
    listed = parse_query({"match": [{"from": "a@b.example"}, {"subject": "x"}]}, now=NOW)
    assert [leaf.path for leaf in leaves(listed.match)] == ["match[0].from", "match[1].subject"]
    single = parse_query({"match": {"subject": "x"}}, now=NOW)
    assert isinstance(single.match, Leaf)


def test_normalised_values() -> None:
    hunt = parse_query(
        {
            "match": {
                "any": [
                    {"url_domain": "MІCROSOFT-onedrive.com"},  # Cyrillic І
                    {"from_domain": "@Exämple.COM."},
                    {"url": "HTTPS://Evil.Example/Path?utm_source=x&id=1#frag"},
                    {"attachment_hash": "0BC3B4B037DB2714433925C72BF4AE5A"},
                    {"attachment_extension": ".HTM"},
                    {"internet_message_id": "abc@host"},
                    {"sender_ip": "203.0.113.0/24"},
                    {"to": "@Contoso.com"},
                ]
            }
        },
        now=NOW,
    )
    values = [leaf.values[0] for leaf in leaves(hunt.match)]
    assert values[0] == "xn--mcrosoft-onedrive-cpo.com"
    assert values[1] == "xn--exmple-cua.com"
    assert values[2] == "https://evil.example/Path?id=1"
    assert values[3] == "0bc3b4b037db2714433925c72bf4ae5a"
    assert values[4] == "htm"
    assert values[5] == "<abc@host>"
    assert values[6] == "203.0.113.0/24"
    assert values[7] == "@contoso.com"


def test_errors_point_at_the_field() -> None:
    problems = errors(
        {
            "match": {
                "all": [
                    {"subjct": "x"},
                    {"any": [{"body_regex": "(unclosed"}]},
                    {"attachment_hash": "xyz"},
                    {"subject": {"startswith": "x"}},
                    {"from": "not-an-address"},
                    {"attachment_size": {"min": "lots"}},
                ]
            },
            "received": {"after": "yesterday-ish"},
            "folders": ["inbox", "nowhere"],
            "extra": 1,
        }
    )
    paths = dict(problems)
    assert "did you mean 'subject'" in paths["match.all[0].subjct"]
    assert "position" in paths["match.all[1].any[0].body_regex"]
    assert "MD5" in paths["match.all[2].attachment_hash"]
    assert "contains or equals" in paths["match.all[3].subject.startswith"]
    assert "email address" in paths["match.all[4].from"]
    assert "size" in paths["match.all[5].attachment_size.min"]
    assert "date" in paths["received.after"]
    assert "unknown folder" in paths["folders[1]"]
    assert "unknown key" in paths["extra"]


def test_invalid_regex_reports_reason_and_position() -> None:
    [(path, message)] = errors({"match": {"body_regex": "ab(c"}})
    assert path == "match.body_regex"
    assert "position" in message
    assert "missing" in message.lower()


def test_empty_and_wrong_shapes() -> None:
    assert errors({"match": {"all": []}})[0][0] == "match.all"
    assert errors({"match": "subject"})[0][0] == "match"
    assert errors({"match": {"has_attachments": "yes"}})[0][0] == "match.has_attachments"
    assert errors([1, 2])[0][0] == ""
    assert errors({"received": {"after": "2025-06-01", "before": "2025-05-01"}})[0][0] == "received"


def test_relative_dates_are_resolved_when_parsed() -> None:
    hunt = parse_query({"received": {"after": "7d"}}, now=NOW)
    assert hunt.received_after == datetime(2025, 5, 26, 8, 0, tzinfo=UTC)


def test_canonical_document_round_trips() -> None:
    document = {
        "match": {
            "all": [
                {"from": ["a@x.example", "b@x.example"]},
                {"not": {"subject": {"equals": "Hi"}}},
                {"attachment_size": {"max": 2048}},
                {"header": {"name": "X-Test", "exists": True}},
                {"has_attachments": True},
            ]
        },
        "received": {"after": "2025-05-01T00:00:00Z"},
        "folders": ["inbox"],
        "attached_emails": False,
    }
    hunt = parse_query(document, now=NOW)
    again = parse_query(hunt_to_document(hunt), now=NOW)
    assert again == hunt


def test_sizes() -> None:
    assert parse_size(2048) == 2048
    assert parse_size("10KB") == 10_000
    assert parse_size("1.5 MiB") == int(1.5 * 1024 * 1024)
    assert parse_size("-1") is None
    assert parse_size(True) is None


def test_hunt_file() -> None:
    hunt = load_hunt_file(
        """
name: Parcel phish
configuration: contoso
scope: {groups: [Finance Team]}
received: {after: 2025-05-01}
match:
  all:
    - from_domain: dhl-parcel-tracking.info
    - body: customs fee
"""
    )
    assert hunt.name == "Parcel phish"
    assert hunt.configuration == "contoso"
    assert hunt.scope == {"kind": "groups", "values": ["Finance Team"]}
    parsed = parse_query(hunt.query, now=NOW)
    assert parsed.received_after == datetime(2025, 5, 1, tzinfo=UTC)
    with pytest.raises(QueryError) as caught:
        load_hunt_file("match: [unclosed")
    assert "line 1" in caught.value.errors[0].path


def test_schema_lists_every_field() -> None:
    schema = query_schema()
    names = {
        next(iter(option["properties"]))
        for option in schema["$defs"]["node"]["oneOf"]
        if "properties" in option
    }
    assert {"all", "any", "not", "subject", "body_regex", "attachment_hash", "sender_ip"} <= names
