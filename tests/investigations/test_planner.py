"""The planner: what goes to the server, what stays local, what is fetched and when."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from mailtrawl.core.query import SearchTerm
from mailtrawl.investigations.planner import plan_hunt
from mailtrawl.investigations.query import parse_query
from mailtrawl.providers.registry import capabilities

M365 = capabilities("m365")
NOW = datetime(2025, 6, 2, tzinfo=UTC)


def plan(document: dict[str, object], caps=M365):  # type: ignore[no-untyped-def]
    return plan_hunt(parse_query(document, now=NOW), caps)


def test_sender_and_dates_are_an_exact_server_filter() -> None:
    p = plan(
        {
            "match": {"all": [{"from": ["a@evil.example", "b@evil.example"]}]},
            "received": {"after": "2025-05-01", "before": "2025-05-10"},
            "attached_emails": False,
        }
    )
    assert p.server.from_addresses == ("a@evil.example", "b@evil.example")
    assert p.server.received_from == datetime(2025, 5, 1, tzinfo=UTC)
    assert p.server.received_until == datetime(2025, 5, 11, tzinfo=UTC)
    assert not p.server.search
    assert not p.server.or_has_attachments
    assert not (p.parts.body)
    assert not (p.parts.headers)
    assert not (p.parts.attachment_list)
    explained = p.explain(mailboxes=1000)
    assert explained["server"]["mode"] == "filter"
    assert explained["local"] == []  # nothing left to check locally
    assert explained["estimate"]["requests_per_mailbox"] == 1.0
    assert explained["estimate"]["total_requests"] == 1000


def test_attached_emails_widen_a_narrow_listing_to_messages_with_attachments() -> None:
    p = plan({"match": {"from": "a@evil.example"}})
    assert p.server.or_has_attachments
    assert p.parts.attachment_list
    assert "attached emails" in p.explain()["fetched_later"]


def test_body_keywords_use_search_when_nothing_filters() -> None:
    p = plan({"match": {"all": [{"body": "reset your password"}, {"url_domain": "evil.example"}]}})
    assert p.server.search == (SearchTerm("reset your password", "body"),)
    assert p.parts.body
    assert not p.parts.headers
    local = {item["path"] for item in p.explain()["local"]}
    # The keyword is narrowed by the server but still decided locally.
    assert local == {"match.all[0].body", "match.all[1].url_domain"}


def test_search_is_not_combined_with_filter() -> None:
    p = plan({"match": {"all": [{"from": "a@evil.example"}, {"body": "invoice"}]}})
    assert p.server.from_addresses
    assert not p.server.search


def test_keywords_with_punctuation_or_alternatives_stay_local() -> None:
    assert not plan({"match": {"body": "pay-now!"}}).server.search
    assert not plan({"match": {"body": ["a", "b"]}}).server.search
    assert not plan({"match": {"any": [{"body": "a"}, {"subject": "b"}]}}).server.has_criteria


def test_negations_and_alternatives_are_never_pushed() -> None:
    p = plan({"match": {"not": {"from": "a@evil.example"}}})
    assert not p.server.from_addresses
    assert not p.pushed
    p = plan({"match": {"any": [{"from": "a@evil.example"}, {"subject": "x"}]}})
    assert not p.server.has_criteria


def test_attachment_filters_narrow_to_messages_with_attachments() -> None:
    p = plan({"match": {"attachment_hash": "0" * 64}})
    assert p.server.has_attachments is True
    assert p.parts.attachment_list
    assert p.fetch_attachment_content
    assert not p.server.or_has_attachments
    when = {i["path"]: i["when"] for i in p.explain()["local"]}
    assert "fetching attachments" in when["match.attachment_hash"]


def test_headers_are_listed_only_when_read() -> None:
    assert plan({"match": {"sender_ip": "203.0.113.9"}}).parts.headers
    assert not plan({"match": {"subject": "x"}}).parts.headers


def test_domain_senders_and_long_lists_stay_local() -> None:
    assert not plan({"match": {"from": "@evil.example"}}).server.from_addresses
    many = [f"u{i}@evil.example" for i in range(16)]
    assert not plan({"match": {"from": many}}).server.from_addresses


def test_without_server_capabilities_everything_is_local() -> None:
    caps = replace(M365, server_side_filter=False, server_side_search=False)
    p = plan({"match": {"all": [{"from": "a@evil.example"}, {"body": "x"}]}}, caps)
    assert not p.server.has_criteria
    assert p.explain()["server"]["mode"] == "list"
