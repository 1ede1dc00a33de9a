"""The deterministic tenant generator: determinism, realism, and ground truth you can trust."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mailtrawl.emulator.bodies import html_to_text
from mailtrawl.emulator.fixtures import LoadedTenant, load_tenant
from mailtrawl.emulator.generator import (
    DEFAULT_EPOCH,
    DEFAULT_WINDOW_DAYS,
    DEMO_PERMISSIONS,
    GeneratedMessage,
    generate,
    tenant_document,
)
from mailtrawl.emulator.mime import message_from_rfc822, rfc822_from_message
from mailtrawl.emulator.state import Mailbox, Message, new_mailbox

USERS = 120
PER_MAILBOX = 30
CAMPAIGNS = 8
SEED = 11


@dataclass
class Generated:
    root: Path
    loaded: LoadedTenant
    truth: dict[str, Any]
    boxes: dict[str, Mailbox]  # by UPN

    def folder_name(self, box: Mailbox, msg: Message) -> str | None:
        return box.folders[msg.folder_id].well_known_name


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("generated")
    generate(root, users=USERS, messages_per_mailbox=PER_MAILBOX, campaigns=CAMPAIGNS, seed=SEED)
    loaded = load_tenant(root)
    truth = json.loads((root / "ground-truth.json").read_text("utf-8"))
    boxes = {
        u.user_principal_name: loaded.build_mailbox(u)
        for u in loaded.tenant.users.values()
        if u.has_mailbox
    }
    return Generated(root, loaded, truth, boxes)


def planted_ids(truth: dict[str, Any]) -> set[str]:
    return {m["immutableId"] for c in truth["campaigns"] for m in c["messages"]}


def background(generated: Generated) -> Iterator[tuple[Mailbox, GeneratedMessage]]:
    planted = planted_ids(generated.truth)
    for box in generated.boxes.values():
        for msg in box.messages.values():
            if msg.immutable_id not in planted:
                assert isinstance(msg, GeneratedMessage)
                yield box, msg


def decoded_text(msg: Message) -> str:
    parts = [msg.subject, msg.body]
    for att in msg.attachments:
        if att.kind == "item":
            inner = message_from_rfc822(att.content, box=new_mailbox("x"), folder_id="f")
            parts.append(decoded_text(inner))
        else:
            parts.append(att.content.decode("utf-8", "replace"))
    return "\n".join(parts)


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_different_seed_does_not(
    tmp_path: Path, generated: Generated
) -> None:
    again = tmp_path / "again"
    generate(again, users=USERS, messages_per_mailbox=PER_MAILBOX, campaigns=CAMPAIGNS, seed=SEED)
    for name in ("tenant.json", "ground-truth.json"):
        assert (again / name).read_bytes() == (generated.root / name).read_bytes()
    other = tmp_path / "other"
    generate(
        other, users=USERS, messages_per_mailbox=PER_MAILBOX, campaigns=CAMPAIGNS, seed=SEED + 1
    )
    assert (other / "tenant.json").read_bytes() != (generated.root / "tenant.json").read_bytes()
    assert (other / "ground-truth.json").read_bytes() != (
        generated.root / "ground-truth.json"
    ).read_bytes()


def snapshot(box: Mailbox) -> list[tuple[Any, ...]]:
    return [
        (
            m.immutable_id,
            m.rest_id,
            m.folder_id,
            m.internet_message_id,
            m.subject,
            m.from_,
            m.to,
            m.cc,
            m.received,
            m.sent,
            m.body,
            m.headers,
            [(a.id, a.name, a.content) for a in m.attachments],
            m.is_read,
            m.conversation_id,
            rfc822_from_message(m),
        )
        for m in box.messages.values()
    ]


def test_mailbox_content_is_identical_on_every_build_and_load(generated: Generated) -> None:
    reloaded = load_tenant(generated.root)
    users = [u for u in generated.loaded.tenant.users.values() if u.has_mailbox][:15]
    for user in users:
        first = generated.loaded.build_mailbox(user)
        second = generated.loaded.build_mailbox(user)
        third = reloaded.build_mailbox(reloaded.tenant.users[user.id])
        assert snapshot(first) == snapshot(second) == snapshot(third)
        assert first.pristine
        assert first.id_counter == len(first.messages)


def test_different_seed_gives_different_mail(tmp_path: Path, generated: Generated) -> None:
    generate(tmp_path, users=USERS, messages_per_mailbox=PER_MAILBOX, campaigns=0, seed=SEED + 5)
    other = load_tenant(tmp_path)
    user = next(iter(other.tenant.users.values()))
    mine = generated.loaded.tenant.users[next(iter(generated.loaded.tenant.users))]
    assert [m.subject for m in other.build_mailbox(user).messages.values()] != [
        m.subject for m in generated.loaded.build_mailbox(mine).messages.values()
    ]


# --------------------------------------------------------------------------- the tenant


def test_tenant_shape(generated: Generated) -> None:
    tenant = generated.loaded.tenant
    assert len(tenant.users) == USERS
    assert tenant.domains[0] == "contoso.com"
    (app,) = tenant.apps.values()
    assert app.display_name == "mailtrawl demo"
    assert app.granted_roles() == sorted(DEMO_PERMISSIONS)
    assert app.secrets
    assert app.secrets[0].value
    groups = {g.display_name: g for g in tenant.groups.values()}
    assert {"All Staff", "Leadership", "Executive", "Sales", "Engineering"} <= set(groups)
    # Nested groups: All Staff holds the department groups, Leadership holds Executive.
    assert groups["Executive"].id in groups["Leadership"].member_ids
    dept_groups = {g.id for n, g in groups.items() if n not in ("All Staff", "Leadership")}
    assert set(groups["All Staff"].member_ids) == dept_groups
    users = list(tenant.users.values())
    assert all(u.department and u.job_title for u in users)
    assert any(u.job_title == "Chief Executive Officer" for u in users)
    assert {"security@contoso.com", "helpdesk@contoso.com"} <= {
        u.user_principal_name for u in users
    }
    assert len({u.user_principal_name.lower() for u in users}) == USERS
    generator = json.loads((generated.root / "tenant.json").read_text("utf-8"))["generator"]
    assert generator["seed"] == SEED
    assert generator["messagesPerMailbox"] == PER_MAILBOX


def test_large_tenant_has_realistic_proportions() -> None:
    doc = tenant_document(users=5000, messages_per_mailbox=100, campaigns=5, seed=3)
    users = doc["users"]
    assert len(users) == 5000
    disabled = sum(1 for u in users if u.get("accountEnabled") is False)
    no_mailbox = sum(1 for u in users if u.get("hasMailbox") is False)
    assert 0.01 <= disabled / 5000 <= 0.03
    assert 0.004 <= no_mailbox / 5000 <= 0.02
    departments = Counter(u["department"] for u in users)
    assert len(departments) >= 9
    assert departments.most_common(1)[0][0] in ("Engineering", "Sales")
    assert any(not u["displayName"].isascii() for u in users)
    assert all(u["userPrincipalName"].isascii() for u in users)


def test_generation_is_small_on_disk(tmp_path: Path) -> None:
    # Speed is measured by `make bench` (emulator: generate_seconds).
    summary = generate(tmp_path, users=3000, messages_per_mailbox=100, campaigns=3, seed=1)
    assert summary.users == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ground-truth.json", "tenant.json"]
    assert (tmp_path / "tenant.json").stat().st_size < 3_000_000
    assert summary.to_dict()["clientSecret"] == summary.client_secret


@pytest.mark.parametrize(
    "kwargs",
    [
        {"users": 0, "messages_per_mailbox": 1, "campaigns": 1},
        {"users": 5, "messages_per_mailbox": -1, "campaigns": 1},
        {"users": 5, "messages_per_mailbox": 1, "campaigns": -1},
    ],
)
def test_bad_parameters_are_rejected(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be between"):
        generate(
            tmp_path,
            users=kwargs["users"],
            messages_per_mailbox=kwargs["messages_per_mailbox"],
            campaigns=kwargs["campaigns"],
            seed=1,
        )


# --------------------------------------------------------------------------- background mail


def test_counts_folders_and_times(generated: Generated) -> None:
    planted_per_mailbox = Counter(
        m["mailbox"] for c in generated.truth["campaigns"] for m in c["messages"]
    )
    folders: Counter[str | None] = Counter()
    start = DEFAULT_EPOCH - timedelta(days=DEFAULT_WINDOW_DAYS)
    for upn, box in generated.boxes.items():
        assert len(box.messages) == PER_MAILBOX + planted_per_mailbox[upn]
        for msg in box.messages.values():
            folders[generated.folder_name(box, msg)] += 1
            assert start <= msg.received <= DEFAULT_EPOCH
            assert msg.sent is not None
            assert msg.sent <= msg.received
    users_without_mailbox = [u for u in generated.loaded.tenant.users.values() if not u.has_mailbox]
    for user in users_without_mailbox:
        assert generated.loaded.build_mailbox(user).messages == {}
    total = sum(folders.values())
    assert folders["inbox"] / total > 0.5
    for name in ("sentitems", "deleteditems", "junkemail", "archive"):
        assert folders[name] > 0, name


def test_background_mail_is_varied(generated: Generated) -> None:
    kinds: Counter[str] = Counter()
    for _box, msg in background(generated):
        assert isinstance(msg, GeneratedMessage)
        kinds[msg.route] += 1
        assert msg.mime is None
    assert set(kinds) == {"internal", "external", "newsletter", "sent"}
    messages = [m for _b, m in background(generated)]
    subjects = [m.subject for m in messages]
    assert any(s.startswith("RE: ") for s in subjects)
    assert any(not s.isascii() for s in subjects)
    assert any(m.has_attachments for m in messages)
    assert any(a.is_inline for m in messages for a in m.attachments)
    names = {a.name.rsplit(".", 1)[-1] for m in messages for a in m.attachments}
    assert {"pdf", "docx", "xlsx"} <= names
    html_only = [m for m in messages if m.route == "newsletter"]
    assert html_only
    assert all(m.body_type == "html" for m in html_only)
    assert any(m.body_type == "text" for m in messages)  # calendar responses


def test_background_message_ids_are_unique_across_the_tenant(generated: Generated) -> None:
    ids = [m.internet_message_id for _b, m in background(generated)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"<[^<>\s@]+@[^<>\s@]+>", i) for i in ids)


def test_background_headers_are_realistic(generated: Generated) -> None:
    seen: set[str] = set()
    for _box, msg in background(generated):
        headers = msg.headers
        names = [n for n, _ in headers]
        values = dict(headers)
        assert values["Message-ID"] == msg.internet_message_id
        for required in ("From", "Subject", "Date", "MIME-Version", "Content-Type"):
            assert required in names
        seen.add(msg.route)
        if msg.route in ("external", "newsletter"):
            assert names.count("Received") == 3
            assert re.search(r"\(\d+\.\d+\.\d+\.\d+\)", headers[2][1])
            assert "Authentication-Results" in names
        if msg.route == "internal":
            assert "Received" in names
            assert "Authentication-Results" in names
        if msg.route == "newsletter":
            assert values["Content-Type"].startswith("text/html")
        # Every read gives the same list; assigning stores an override.
        assert msg.headers == headers
    assert seen == {"internal", "external", "newsletter", "sent"}


def test_background_mime_round_trips(generated: Generated) -> None:
    box = new_mailbox("roundtrip")
    for checked, (_b, msg) in enumerate(background(generated)):
        if checked > 300:
            break
        raw = rfc822_from_message(msg)
        back = message_from_rfc822(raw, box=box, folder_id="f")
        assert back.subject == msg.subject
        assert back.from_ == msg.from_
        assert back.to == msg.to
        assert back.cc == msg.cc
        assert back.body.replace("\r\n", "\n") == msg.body.replace("\r\n", "\n")
        assert sorted((a.name, a.content) for a in back.attachments) == sorted(
            (a.name, a.content) for a in msg.attachments
        )
        assert back.internet_message_id == msg.internet_message_id
        if msg.route != "sent":  # sent items carry no Received header
            assert back.received == msg.received.replace(microsecond=0)
        declared = dict(msg.headers)["Content-Type"]
        assert dict(back.headers)["Content-Type"] == declared


def test_shared_lists_refuse_in_place_changes(generated: Generated) -> None:
    _box, msg = next((b, m) for b, m in background(generated) if not m.cc and not m.categories)
    with pytest.raises(TypeError, match="assign a new list"):
        msg.categories.append("Red")
    msg.categories = ["Red"]  # what the Graph PATCH handler does
    assert msg.categories == ["Red"]
    msg.headers = [("X-Test", "1")]
    assert msg.headers == [("X-Test", "1")]


def test_every_mailbox_builds_its_messages(tmp_path: Path) -> None:
    # Speed is measured by `make bench` (emulator: mailbox_build).
    generate(tmp_path, users=200, messages_per_mailbox=100, campaigns=0, seed=4)
    loaded = load_tenant(tmp_path)
    users = [u for u in loaded.tenant.users.values() if u.has_mailbox][:100]
    for user in users:
        assert len(loaded.build_mailbox(user).messages) == 100


# --------------------------------------------------------------------------- ground truth


def find(box: Mailbox, immutable_id: str) -> Message:
    msg = box.message(immutable_id)
    assert msg is not None, immutable_id
    return msg


def test_ground_truth_messages_exist_where_it_says(generated: Generated) -> None:
    truth = generated.truth
    assert truth["summary"]["campaigns"] == CAMPAIGNS
    assert len(truth["campaigns"]) == CAMPAIGNS
    total = 0
    for campaign in truth["campaigns"]:
        assert campaign["messages"], campaign["id"]
        for entry in campaign["messages"]:
            box = generated.boxes[entry["mailbox"]]
            msg = find(box, entry["immutableId"])
            assert generated.folder_name(box, msg) == entry["folder"]
            assert msg.internet_message_id == entry["internetMessageId"]
            assert msg.mime is not None  # delivered as MIME, parsed like real mail
            total += 1
    assert total == truth["summary"]["plantedMessages"]


def test_campaign_indicators_occur_in_their_messages(generated: Generated) -> None:
    for campaign in generated.truth["campaigns"]:
        ind = campaign["indicators"]
        for entry in campaign["messages"]:
            box = generated.boxes[entry["mailbox"]]
            msg = find(box, entry["immutableId"])
            if entry["variant"] == "forwarded":
                assert msg.subject == "FW: " + ind["subjects"][0]
                (item,) = [a for a in msg.attachments if a.kind == "item"]
                assert item.name == ind["subjects"][0]
                inner = message_from_rfc822(item.content, box=new_mailbox("x"), folder_id="f")
                assert inner.internet_message_id == entry["innerInternetMessageId"]
                assert inner.from_ is not None
                assert inner.from_.address == ind["senderAddresses"][0]
                target = inner
            else:
                target = msg
                assert msg.internet_message_id in ind["internetMessageIds"]
            assert target.subject == ind["subjects"][0]
            assert dict(target.headers)["Subject"] == ind["encodedSubjects"][0]
            assert target.from_ is not None
            assert target.from_.address == ind["senderAddresses"][0]
            assert target.from_.address.split("@")[1] == ind["fromDomains"][0]
            if ind["displayNames"]:
                assert target.from_.name == ind["displayNames"][0]
            if ind["replyTo"]:
                assert [a.address for a in target.reply_to] == ind["replyTo"]
            received_chain = " ".join(v for n, v in target.headers if n == "Received")
            assert f"({ind['senderIps'][0]})" in received_chain
            for url in entry["urls"]:
                assert url in target.body  # present after transfer decoding
                assert url in ind["urls"]
            text = decoded_text(target)
            visible = html_to_text(target.body) if target.body_type == "html" else target.body
            for keyword in ind["bodyKeywords"]:
                assert keyword in text, keyword
                # Keywords never straddle markup: they are in the visible text too.
                assert keyword in visible or keyword in " ".join(
                    a.content.decode("utf-8", "replace") for a in target.attachments
                ), keyword
            files = [a for a in target.attachments if a.kind == "file"]
            assert [a.name for a in files] == entry["attachmentNames"]
            for att in files:
                (spec,) = ind["attachments"]
                assert att.name in spec["names"]
                assert hashlib.md5(att.content).hexdigest() == spec["md5"]  # noqa: S324
                assert hashlib.sha1(att.content).hexdigest() == spec["sha1"]  # noqa: S324
                assert hashlib.sha256(att.content).hexdigest() == spec["sha256"]
                assert hashlib.sha512(att.content).hexdigest() == spec["sha512"]
                assert len(att.content) == spec["size"]


def campaign_of(generated: Generated, theme: str) -> dict[str, Any]:
    return next(c for c in generated.truth["campaigns"] if c["theme"] == theme)


def direct_messages(generated: Generated, campaign: dict[str, Any]) -> list[Message]:
    return [
        find(generated.boxes[e["mailbox"]], e["immutableId"])
        for e in campaign["messages"]
        if e["variant"] != "forwarded"
    ]


def test_campaign_variants_are_all_present(generated: Generated) -> None:
    campaigns = generated.truth["campaigns"]
    techniques = {t for c in campaigns for t in c["techniques"]}
    assert {
        "spoofed-display-name",
        "lookalike-domain",
        "idn-domain",
        "rfc2047-b-subject",
        "rfc2047-q-subject",
        "html-only",
        "per-recipient-url",
        "qp-soft-break-url",
        "same-attachment-different-names",
        "forwarded-copy",
        "broadcast-same-message-id",
    } <= techniques
    encoded = [c["indicators"]["encodedSubjects"][0] for c in campaigns]
    assert any("?B?" in e for e in encoded)
    assert any("?Q?" in e and "utf-8" in e for e in encoded)
    assert any("?Q?" in e and "iso-8859-1" in e for e in encoded)
    idn = campaign_of(generated, "shared-document-idn")["indicators"]
    assert idn["fromDomains"][0].startswith("xn--")
    assert not idn["fromDomainsUnicode"][0].isascii()
    assert idn["urlDomains"][0].startswith("xn--")
    # The IDN campaign shows the Unicode domain in its body.
    assert any(
        idn["urlDomainsUnicode"][0] in m.body
        for m in direct_messages(generated, campaign_of(generated, "shared-document-idn"))
    )
    variants = Counter(m["variant"] for c in campaigns for m in c["messages"])
    assert variants["direct"]
    assert variants["forwarded"]
    assert variants["resend"]
    folders = Counter(m["folder"] for c in campaigns for m in c["messages"])
    assert folders["junkemail"]
    assert folders["deleteditems"]
    assert folders["inbox"]


def test_per_recipient_urls_differ_and_qp_breaks_them(generated: Generated) -> None:
    campaign = campaign_of(generated, "password-expiry")
    urls = [u for m in campaign["messages"] if m["variant"] != "forwarded" for u in m["urls"]]
    assert len(urls) == len(set(urls)) >= 2
    for msg in direct_messages(generated, campaign):
        assert msg.body_type == "html"
        assert msg.mime is not None
        assert b"text/plain" not in msg.mime  # HTML-only
        (url,) = [u for u in urls if u in msg.body]
        assert url.encode() not in msg.mime  # a quoted-printable soft break splits it
        assert url.replace("=", "=3D").encode() not in msg.mime


def test_same_attachment_under_different_names(generated: Generated) -> None:
    for theme in ("invoice-html-attachment", "voicemail"):
        campaign = campaign_of(generated, theme)
        (spec,) = campaign["indicators"]["attachments"]
        assert len(spec["names"]) >= 2, theme


def test_broadcast_campaign_shares_one_message_id(generated: Generated) -> None:
    campaign = campaign_of(generated, "voicemail")
    first_copies = [m for m in campaign["messages"] if m["variant"] == "direct"]
    assert len({m["internetMessageId"] for m in first_copies}) == 1
    assert len({m["mailbox"] for m in first_copies}) == len(first_copies)
    assert not campaign["perRecipient"]


def test_ceo_display_name_is_marked_non_distinctive(generated: Generated) -> None:
    campaign = campaign_of(generated, "ceo-gift-card")
    ceo = next(
        u
        for u in generated.loaded.tenant.users.values()
        if u.job_title == "Chief Executive Officer"
    )
    assert campaign["indicators"]["displayNames"] == []
    assert campaign["nonDistinctive"]["displayNames"] == [ceo.display_name]


def test_background_never_matches_distinctive_indicators(generated: Generated) -> None:
    campaigns = generated.truth["campaigns"]
    senders = {a.lower() for c in campaigns for a in c["indicators"]["senderAddresses"]}
    domains = {d.lower() for c in campaigns for d in c["indicators"]["fromDomains"]}
    names = {n for c in campaigns for n in c["indicators"]["displayNames"]}
    subjects = [s.casefold() for c in campaigns for s in c["indicators"]["subjects"]]
    needles = [
        n.casefold()
        for c in campaigns
        for key in (
            "urls",
            "urlDomains",
            "urlDomainsUnicode",
            "bodyKeywords",
            "attachmentUrls",
            "fromDomains",
            "fromDomainsUnicode",
        )
        for n in c["indicators"][key]
    ]
    ips = {ip for c in campaigns for ip in c["indicators"]["senderIps"]}
    hashes = {a["sha256"] for c in campaigns for a in c["indicators"]["attachments"]}
    att_names = {n for c in campaigns for a in c["indicators"]["attachments"] for n in a["names"]}
    ids = {i for c in campaigns for i in c["indicators"]["internetMessageIds"]}
    checked = 0
    for _box, msg in background(generated):
        assert msg.from_ is not None
        assert msg.from_.address.lower() not in senders
        assert msg.from_.address.split("@")[1].lower() not in domains
        assert msg.from_.name not in names
        subject = msg.subject.casefold()
        assert not any(s in subject for s in subjects)
        text = decoded_text(msg).casefold()
        assert not any(n in text for n in needles)
        header_text = " ".join(v for _n, v in msg.headers)
        assert not any(ip in header_text for ip in ips)
        assert msg.internet_message_id not in ids
        for att in msg.attachments:
            assert hashlib.sha256(att.content).hexdigest() not in hashes
            assert att.name not in att_names
        checked += 1
    assert checked == len(generated.boxes) * PER_MAILBOX


def test_background_has_near_misses(generated: Generated) -> None:
    senders = {m.from_.address.split("@")[1] for _b, m in background(generated) if m.from_}
    # Genuine mail from the brands and the partner the campaigns imitate.
    assert {"microsoft.com", "docusign.net", "dhl.com", "fabrikam.com"} <= senders
    subjects = [m.subject for _b, m in background(generated)]
    assert any("password" in s.lower() for s in subjects)
    assert any(s.startswith("Invoice") for s in subjects)
