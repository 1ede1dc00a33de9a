"""Recall and precision against the generated tenant's ground truth, for every filter type.

Each planted campaign's distinctive indicators never occur in background mail, so the
expected hits of a filter are exactly the campaign messages that carry the indicator —
direct copies, resent copies, copies in Junk Email, and forwarded copies (the phish
attached to an internal forward, found by looking inside attached emails).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from tests.investigations.conftest import HuntTenant, Store

Key = tuple[str, str]  # (mailbox UPN, immutable message id)
Case = tuple[dict[str, Any], set[Key]]  # a query and the hits it must give


def _key(message: dict[str, Any]) -> Key:
    return (message["mailbox"].lower(), message["immutableId"])


def _all(campaign: dict[str, Any]) -> set[Key]:
    return {_key(m) for m in campaign["messages"]}


def _first(values: list[Any]) -> Any:
    return values[0] if values else None


def _with_url(campaign: dict[str, Any], url: str) -> set[Key]:
    return {_key(m) for m in campaign["messages"] if url in (m.get("urls") or [])}


def _with_imid(campaign: dict[str, Any], imid: str) -> set[Key]:
    return {
        _key(m)
        for m in campaign["messages"]
        if imid in (m["internetMessageId"], m.get("innerInternetMessageId"))
    }


def _named(campaign: dict[str, Any], pattern: str) -> set[Key]:
    return {
        _key(m)
        for m in campaign["messages"]
        if any(fnmatch.fnmatch(n.lower(), pattern.lower()) for n in m.get("attachmentNames") or [])
    }


def _cases(kind: str, campaign: dict[str, Any]) -> list[Case]:
    """Queries of one filter type for one campaign, with their expected hits."""
    ind = campaign["indicators"]
    everything = _all(campaign)
    attachment = _first(ind["attachments"])
    out: list[Case] = []
    if kind == "from" and ind["senderAddresses"]:
        out.append(({"match": {"from": ind["senderAddresses"][0].upper()}}, everything))
    elif kind == "from_domain":
        # The Unicode spelling of an IDN domain finds its punycode form.
        out.append(({"match": {"from_domain": ind["fromDomainsUnicode"][0]}}, everything))
    elif kind == "sender_name" and ind["displayNames"]:
        out.append(({"match": {"sender_name": {"equals": ind["displayNames"][0]}}}, everything))
    elif kind == "reply_to" and ind["replyTo"]:
        out.append(({"match": {"reply_to": ind["replyTo"][0]}}, everything))
    elif kind == "subject":
        # The decoded form of an RFC 2047 subject, as contains and as equals.
        subject = ind["subjects"][0]
        out.append(({"match": {"subject": subject[5:40]}}, everything))
        direct = {_key(m) for m in campaign["messages"] if m["variant"] != "forwarded"}
        forwarded = everything - direct
        out.append(({"match": {"subject": {"equals": subject}}, "attached_emails": False}, direct))
        out.append(({"match": {"subject": {"equals": subject}}}, direct | forwarded))
    elif kind == "sender_ip":
        out.append(({"match": {"sender_ip": ind["senderIps"][0]}}, everything))
    elif kind == "internet_message_id":
        imid = ind["internetMessageIds"][-1]
        out.append(({"match": {"internet_message_id": imid}}, _with_imid(campaign, imid)))
    elif kind == "header":
        out.append(
            (
                {"match": {"header": {"name": "Received", "contains": ind["senderHosts"][0]}}},
                everything,
            )
        )
    elif kind == "body":
        out.append(({"match": {"body": ind["bodyKeywords"][0]}}, everything))
    elif kind == "url" and ind["urls"]:
        url = ind["urls"][-1]
        out.append(({"match": {"url": url}}, _with_url(campaign, url)))
    elif kind == "url_domain" and ind["urlDomainsUnicode"]:
        out.append(({"match": {"url_domain": ind["urlDomainsUnicode"][0]}}, everything))
    elif kind == "body_regex" and ind["bodyKeywords"]:
        keyword = ind["bodyKeywords"][-1]
        pattern = re.escape(keyword).replace("\\ ", r"\s+")
        out.append(({"match": {"body_regex": pattern}}, everything))
    elif kind == "attachment_hash" and attachment:
        for algorithm in ("md5", "sha1", "sha256", "sha512"):
            out.append(({"match": {"attachment_hash": attachment[algorithm]}}, everything))
    elif kind == "attachment_name" and attachment:
        name = attachment["names"][0]
        pattern = "*" + name[-8:]
        out.append(({"match": {"attachment_name": pattern}}, _named(campaign, pattern)))
    elif kind == "attachment_size" and attachment:
        size = attachment["size"]
        query = {
            "match": {
                "all": [
                    {"attachment_size": {"min": size, "max": size}},
                    {"attachment_type": attachment["contentType"]},
                    {"from_domain": ind["fromDomains"][0]},
                ]
            }
        }
        out.append((query, everything))
    elif kind == "combination":
        # (sender or sender domain) and not one Message-ID: every copy but those of that
        # email, a forward of it included (the query runs on the attached email as a whole).
        excluded = ind["internetMessageIds"][0]
        query = {
            "match": {
                "all": [
                    {
                        "any": [
                            {"from": ind["senderAddresses"][0]},
                            {"from_domain": ind["fromDomains"][0]},
                        ]
                    },
                    {"not": {"internet_message_id": excluded}},
                ]
            }
        }
        out.append((query, everything - _with_imid(campaign, excluded)))
    return out


KINDS = [
    "from",
    "from_domain",
    "sender_name",
    "reply_to",
    "subject",
    "sender_ip",
    "internet_message_id",
    "header",
    "body",
    "url",
    "url_domain",
    "body_regex",
    "attachment_hash",
    "attachment_name",
    "attachment_size",
    "combination",
]


def _check(store: Store, tenant: HuntTenant, kind: str) -> int:
    planned: list[tuple[str, Any, set[Key]]] = []
    for campaign in tenant.truth["campaigns"]:
        for query, expected in _cases(kind, campaign):
            planned.append((campaign["id"], store.create(query, name=campaign["id"]), expected))
    assert planned, f"no campaign has a {kind} indicator"
    store.run_all()
    for campaign_id, investigation_id, expected in planned:
        view = store.view(investigation_id)
        assert view.status == "completed", (campaign_id, view.error)
        assert view.progress.mailboxes_failed == 0
        found = {(h.mailbox.lower(), h.message_id) for h in store.hits(investigation_id)}
        missed, extra = expected - found, found - expected
        assert (missed, extra) == (set(), set()), f"{kind} / {campaign_id} / {view.query}"
        assert view.progress.hits == len(expected)
    return len(planned)


@pytest.mark.parametrize("kind", KINDS)
def test_every_filter_type_finds_exactly_the_planted_copies(
    hunt_store: Store, hunt_tenant: HuntTenant, kind: str
) -> None:
    _check(hunt_store, hunt_tenant, kind)


def test_results_carry_folder_and_campaign_grouping(
    hunt_store: Store, hunt_tenant: HuntTenant
) -> None:
    broadcast = next(c for c in hunt_tenant.truth["campaigns"] if not c["perRecipient"])
    investigation_id = hunt_store.create(
        {"match": {"from": broadcast["indicators"]["senderAddresses"][0]}}
    )
    hunt_store.run_all()
    folders = {_key(m): m["folder"] for m in broadcast["messages"]}
    hits = hunt_store.hits(investigation_id)
    for hit in hits:
        assert hit.folder == folders[(hit.mailbox.lower(), hit.message_id)]
        assert hit.subject
        assert hit.received
        assert hit.internet_message_id
    from mailtrawl.investigations import service

    with hunt_store.sessions() as session:
        campaigns = service.list_campaigns(session, ref=investigation_id)
    by_imid = {c.internet_message_id: c for c in campaigns.items}
    shared = broadcast["indicators"]["internetMessageIds"][0]
    direct = [m for m in broadcast["messages"] if m["internetMessageId"] == shared]
    assert by_imid[shared].copies == len(direct)
    assert by_imid[shared].mailboxes == len({m["mailbox"] for m in direct})


def test_same_results_with_injected_faults(
    hunt_store: Store, hunt_tenant: HuntTenant, hunt_emulator: EmulatorProcess
) -> None:
    cases: list[tuple[Any, set[Key]]] = []
    for campaign in hunt_tenant.truth["campaigns"]:
        for kind in ("from", "body", "attachment_hash"):
            for query, expected in _cases(kind, campaign)[:1]:
                cases.append((hunt_store.create(query), expected))
    hunt_emulator.settings(
        faults={"rate_429": 0.05, "rate_503": 0.03, "rate_reset": 0.02, "retry_after": 0.02}
    )
    try:
        hunt_store.run_all()
    finally:
        hunt_emulator.settings(
            faults={"rate_429": 0.0, "rate_503": 0.0, "rate_reset": 0.0, "retry_after": 1.0}
        )
    throttled = 0
    for investigation_id, expected in cases:
        view = hunt_store.view(investigation_id)
        assert view.status == "completed"
        assert view.progress.mailboxes_failed == 0
        found = {(h.mailbox.lower(), h.message_id) for h in hunt_store.hits(investigation_id)}
        assert found == expected
        throttled += view.progress.throttled
    assert throttled > 0  # the faults did happen, and were absorbed


@pytest.mark.parametrize("kind", ["from", "attachment_hash", "combination"])
def test_the_engine_gives_the_same_results_on_postgresql_and_sqlite(
    any_store: Store, hunt_tenant: HuntTenant, kind: str
) -> None:
    _check(any_store, hunt_tenant, kind)
