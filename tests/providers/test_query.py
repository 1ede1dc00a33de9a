"""ServerQuery → Graph listing requests: pure translation, checked against Graph's rules.

The emulator's OData and KQL parsers (strict like Graph) validate the generated syntax.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest

from mailtrawl.core import (
    EmailAddress,
    MailboxRef,
    MessageMeta,
    MessageRef,
    SearchTerm,
    ServerQuery,
)
from mailtrawl.emulator.query.kql import parse_search
from mailtrawl.emulator.query.odata import (
    check_message_orderby,
    compile_message_filter,
    parse_filter,
    parse_orderby,
)
from mailtrawl.providers.graph.client import encode_params
from mailtrawl.providers.graph.query import (
    MAX_OR_TERMS,
    build_filter,
    build_search,
    select_clause,
    translate,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 11, 3, tzinfo=UTC)
BOX = MailboxRef("a1a1a1a1-0000-4000-8000-000000000001", "alice@contoso.com")


def _valid_filter(expression: str, orderby: str | None = None) -> None:
    expr = parse_filter(expression)
    compile_message_filter(expr)
    if orderby:
        check_message_orderby(parse_orderby(orderby), expr)


def test_empty_query_lists_the_whole_mailbox_with_immutable_ids() -> None:
    translated = translate(BOX.id, ServerQuery())
    [listing] = translated.listings
    assert listing.path == f"users/{BOX.id}/messages"
    assert listing.headers == {"Prefer": 'IdType="ImmutableId"'}
    assert "$filter" not in listing.params
    assert "$search" not in listing.params
    assert listing.params["$top"] == "250"
    assert not translated.residual.has_criteria
    assert not translated.uses_search


def test_one_listing_per_folder() -> None:
    translated = translate(BOX.id, ServerQuery(folders=("inbox", "junkemail", "inbox")))
    assert [item.path for item in translated.listings] == [
        f"users/{BOX.id}/mailFolders/inbox/messages",
        f"users/{BOX.id}/mailFolders/junkemail/messages",
    ]
    assert [item.folder for item in translated.listings] == ["inbox", "junkemail"]


def test_filter_puts_received_first_and_escapes_quotes() -> None:
    query = ServerQuery(
        received_from=T0,
        received_until=T1,
        from_addresses=("o'brien@fabrikam.com",),
        subject_contains="Invoice",
        subject_equals="Re: it's due",
        internet_message_id="<abc@x>",
        has_attachments=True,
    )
    expression, residual = build_filter(query)
    assert expression == (
        "receivedDateTime ge 2026-11-01T00:00:00Z and receivedDateTime lt 2026-11-03T00:00:00Z"
        " and from/emailAddress/address eq 'o''brien@fabrikam.com'"
        " and subject eq 'Re: it''s due' and contains(subject,'Invoice')"
        " and internetMessageId eq '<abc@x>' and hasAttachments eq true"
    )
    assert not residual.has_criteria
    assert expression is not None
    _valid_filter(expression)


def test_ordering_adds_a_leading_received_clause_for_inefficient_filter_rule() -> None:
    query = ServerQuery(from_addresses=("a@x.com", "b@x.com"))
    translated = translate(BOX.id, query, order_by_received=True)
    params = translated.listings[0].params
    assert params["$orderby"] == "receivedDateTime desc"
    assert params["$filter"].startswith("receivedDateTime ge 1900-01-01T00:00:00Z and (")
    _valid_filter(params["$filter"], params["$orderby"])


def test_many_sender_addresses_stay_local() -> None:
    addresses = tuple(f"u{i}@x.com" for i in range(MAX_OR_TERMS + 1))
    expression, residual = build_filter(ServerQuery(from_addresses=addresses))
    assert expression is None
    assert residual.from_addresses == addresses
    few, residual = build_filter(ServerQuery(from_addresses=addresses[:3]))
    assert few is not None
    assert few.count(" or ") == 2
    assert not residual.has_criteria
    _valid_filter(few)


def test_sub_second_bounds_widen_on_the_server_and_stay_exact_locally() -> None:
    start = T0 + timedelta(milliseconds=300)
    end = T1 + timedelta(milliseconds=300)
    expression, residual = build_filter(ServerQuery(received_from=start, received_until=end))
    assert expression == (
        "receivedDateTime ge 2026-11-01T00:00:00Z and receivedDateTime lt 2026-11-03T00:00:01Z"
    )
    assert residual.received_from == start
    assert residual.received_until == end


def test_other_time_zones_are_sent_in_utc() -> None:
    cet = timezone(timedelta(hours=1))
    expression, _ = build_filter(ServerQuery(received_from=datetime(2026, 11, 1, 1, 0, tzinfo=cet)))
    assert expression == "receivedDateTime ge 2026-11-01T00:00:00Z"


def test_search_never_comes_with_filter_or_orderby_and_keeps_exact_criteria_local() -> None:
    query = ServerQuery(
        folders=("inbox",),
        search=(
            SearchTerm("wire transfer", "body"),
            SearchTerm('say "hi"'),
            SearchTerm("x.pdf", "attachment"),
        ),
        from_addresses=("ceo@contoso.com",),
        received_from=T0,
        received_until=T1,
        subject_contains="urgent",
        has_attachments=True,
    )
    translated = translate(BOX.id, query, order_by_received=True)
    params = translated.listings[0].params
    assert translated.uses_search
    assert translated.result_cap == 1000
    assert "$filter" not in params
    assert "$orderby" not in params
    assert params["$search"] == (
        '"body:\\"wire transfer\\" AND \\"say  hi\\" AND attachment:\\"x.pdf\\"'
        ' AND from:\\"ceo@contoso.com\\" AND received>=2026-10-31 AND received<=2026-11-04'
        ' AND hasAttachments:true"'
    )
    parse_search(params["$search"])
    # Everything but the free text is checked again on the listed metadata.
    residual = translated.residual
    assert residual.search == ()
    assert residual.folders == ()
    assert residual.subject_contains == "urgent"
    assert residual.from_addresses == ("ceo@contoso.com",)
    assert residual.received_from == T0


def test_search_escapes_backslashes() -> None:
    search, _ = build_search(ServerQuery(search=(SearchTerm("a\\b"),)))
    assert search == '"\\"a\\\\b\\""'
    parse_search(search)


def test_select_holds_only_what_is_needed_plus_what_the_residual_reads() -> None:
    assert select_clause(["subject"]) == "id,parentFolderId,internetMessageId,subject"
    addresses = tuple(f"u{i}@x.com" for i in range(MAX_OR_TERMS + 1))
    translated = translate(BOX.id, ServerQuery(from_addresses=addresses), select=["subject"])
    assert translated.listings[0].params["$select"] == (
        "id,parentFolderId,internetMessageId,subject,from"
    )
    with pytest.raises(ValueError, match="unknown message field"):
        select_clause(["body"])


def test_page_size_bounds() -> None:
    assert translate(BOX.id, ServerQuery(), page_size=1000).listings[0].params["$top"] == "1000"
    with pytest.raises(ValueError, match="page_size"):
        translate(BOX.id, ServerQuery(), page_size=1001)


def test_query_string_encoding_round_trips() -> None:
    params = (
        translate(BOX.id, ServerQuery(subject_contains="50% & more #1 + ü", received_from=T0))
        .listings[0]
        .params
    )
    decoded = dict(parse_qsl(encode_params(params)))
    assert decoded == params
    _valid_filter(decoded["$filter"])


def test_mailbox_ids_are_percent_encoded_in_paths() -> None:
    translated = translate("guest_x#EXT#@contoso.onmicrosoft.com", ServerQuery())
    assert translated.listings[0].path == "users/guest_x%23EXT%23@contoso.onmicrosoft.com/messages"


def _meta(**fields: object) -> MessageMeta:
    return MessageMeta(ref=MessageRef(BOX, "m1"), **fields)  # type: ignore[arg-type]


def test_server_query_matches_metadata_locally() -> None:
    query = ServerQuery(
        received_from=T0,
        received_until=T1,
        from_addresses=("Boss@Contoso.com",),
        subject_contains="INVOICE",
        internet_message_id="<a@b>",
        has_attachments=False,
    )
    good = _meta(
        received=T0,
        from_=EmailAddress("boss@contoso.com"),
        subject="Your invoice",
        internet_message_id="<a@b>",
        has_attachments=False,
    )
    assert query.matches(good)
    assert not query.matches(_replace(good, received=T1))
    assert not query.matches(_replace(good, from_=EmailAddress("other@contoso.com")))
    assert not query.matches(_replace(good, subject="Receipt"))
    assert not query.matches(_replace(good, internet_message_id="<c@d>"))
    assert not query.matches(_replace(good, has_attachments=True))
    assert ServerQuery(subject_equals="your INVOICE").matches(good)


def _replace(meta: MessageMeta, **changes: object) -> MessageMeta:
    return replace(meta, **changes)  # type: ignore[arg-type]


def test_server_query_validation() -> None:
    with pytest.raises(ValueError, match="time zone"):
        ServerQuery(received_from=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="after"):
        ServerQuery(received_from=T1, received_until=T0)
    with pytest.raises(ValueError, match="empty"):
        SearchTerm("  ")
    with pytest.raises(ValueError, match="unknown search property"):
        SearchTerm("x", "headers")  # type: ignore[arg-type]
    assert not ServerQuery(folders=("inbox",)).has_criteria
    assert ServerQuery(has_attachments=False).has_criteria


def test_or_has_attachments_in_filter_keeps_the_date_range_outside_the_or() -> None:
    query = ServerQuery(
        received_from=T0,
        received_until=T1,
        from_addresses=("a@x.com", "b@x.com"),
        subject_contains="pay",
        or_has_attachments=True,
    )
    translated = translate(BOX.id, query, order_by_received=True)
    params = translated.listings[0].params
    assert params["$filter"] == (
        "receivedDateTime ge 2026-11-01T00:00:00Z and receivedDateTime lt 2026-11-03T00:00:00Z"
        " and (((from/emailAddress/address eq 'a@x.com' or from/emailAddress/address eq 'b@x.com')"
        " and contains(subject,'pay')) or hasAttachments eq true)"
    )
    _valid_filter(params["$filter"], params["$orderby"])
    one, _ = build_filter(ServerQuery(subject_equals="x", or_has_attachments=True))
    assert one == "(subject eq 'x' or hasAttachments eq true)"
    _valid_filter(one)
    # Nothing but dates: everything in the range is listed anyway.
    dates, _ = build_filter(ServerQuery(received_from=T0, or_has_attachments=True))
    assert dates == "receivedDateTime ge 2026-11-01T00:00:00Z"


def test_or_has_attachments_lets_messages_with_attachments_through_the_residual() -> None:
    addresses = tuple(f"u{i}@x.com" for i in range(MAX_OR_TERMS + 1))
    query = ServerQuery(from_addresses=addresses, received_from=T0, or_has_attachments=True)
    translated = translate(BOX.id, query, select=["subject"])
    assert translated.listings[0].params["$filter"] == "receivedDateTime ge 2026-11-01T00:00:00Z"
    assert translated.listings[0].params["$select"] == (
        "id,parentFolderId,internetMessageId,subject,from,hasAttachments"
    )
    residual = translated.residual
    stranger = _meta(received=T0, from_=EmailAddress("z@y.com"), has_attachments=False)
    assert not residual.matches(stranger)
    assert residual.matches(_replace(stranger, has_attachments=True))


def test_or_has_attachments_in_search() -> None:
    query = ServerQuery(
        search=(SearchTerm("invoice"),),
        from_addresses=("a@x.com",),
        received_from=T0,
        has_attachments=False,
        or_has_attachments=True,
    )
    translated = translate(BOX.id, query)
    search = translated.listings[0].params["$search"]
    assert search == (
        '"((\\"invoice\\" AND from:\\"a@x.com\\" AND hasAttachments:false)'
        ' OR hasAttachments:true) AND received>=2026-10-31"'
    )
    parse_search(search)
    assert translated.residual.or_has_attachments
