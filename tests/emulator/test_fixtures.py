"""Tenant fixtures: the documented JSON format, deterministic ids, pure mailbox builds."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mailtrawl.emulator.fixtures import FIXTURE_EPOCH, FixtureError, LoadedTenant, load_tenant
from mailtrawl.emulator.mime import rfc822_from_message
from mailtrawl.emulator.state import EmailAddress, Mailbox, Message, User

TENANT_ID = "7d4b6a52-3c1e-4f0a-9b8d-2e5f6a7b8c9d"
APP_ID = "0f8e7d6c-5b4a-4392-8170-6e5d4c3b2a19"

PHISH = b"""Received: from mail.fabrikarn.com (mail.fabrikarn.com [185.12.13.14])\r
 by mx.contoso.com; Mon, 02 Jun 2025 09:14:58 +0000\r
From: "Fabrikam Accounts" <billing@fabrikarn.com>\r
To: alice@contoso.com\r
Subject: =?UTF-8?B?T3ZlcmR1ZSBpbnZvaWNlIOKAkyBhY3Rpb24gcmVxdWlyZWQ=?=\r
Date: Mon, 02 Jun 2025 09:14:30 +0000\r
Message-ID: <inv-1@fabrikarn.com>\r
MIME-Version: 1.0\r
Content-Type: text/plain; charset=utf-8\r
\r
Pay now: https://fabrikarn.com/pay\r
"""

NO_DATES = b"From: a@example.com\r\nSubject: undated\r\n\r\nbody\r\n"


def certificate_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailtrawl fixture test")])
    start = datetime(2025, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1234)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=730))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


def full_document() -> dict[str, Any]:
    return {
        "tenant": {
            "id": TENANT_ID,
            "displayName": "Contoso",
            "domains": ["contoso.com", "contoso.onmicrosoft.com"],
        },
        "apps": [
            {
                "clientId": APP_ID,
                "displayName": "mailtrawl test",
                "secrets": [
                    {
                        "value": "Tst8Q~secret-one",
                        "expires": "2099-01-01T00:00:00Z",
                        "displayName": "ci",
                    },
                    {"value": "Old8Q~expired", "expires": "2020-01-01T00:00:00Z"},
                ],
                "certificates": [{"pemFile": "certs/app.pem"}],
                "permissions": {
                    "Mail.ReadWrite": True,
                    "User.Read.All": True,
                    "Directory.Read.All": False,
                },
            },
            {"displayName": "second app"},
        ],
        "users": [
            {
                "userPrincipalName": "alice@contoso.com",
                "displayName": "Alice Archer",
                "department": "Finance",
                "jobTitle": "Accountant",
            },
            {
                "id": "b2b2b2b2-0000-4000-8000-000000000002",
                "userPrincipalName": "bob@contoso.com",
                "displayName": "Bob Baker",
                "department": "Sales",
            },
            {
                "userPrincipalName": "carol@contoso.com",
                "displayName": "Carol Chen",
                "accountEnabled": False,
            },
            {
                "userPrincipalName": "dave@contoso.onmicrosoft.com",
                "displayName": "Dave Diaz",
                "hasMailbox": False,
            },
            {
                "userPrincipalName": "erin@contoso.com",
                "displayName": "Erin Evans",
                "mail": "erin.evans@contoso.com",
            },
        ],
        "groups": [
            {
                "displayName": "Finance Team",
                "mail": "finance@contoso.com",
                "members": ["alice@contoso.com"],
            },
            {"displayName": "Sales Team", "members": ["bob@contoso.com", "carol@contoso.com"]},
            {
                "displayName": "All Staff",
                "members": [
                    "Finance Team",
                    "Sales Team",
                    "dave@contoso.onmicrosoft.com",
                    "erin.evans@contoso.com",
                ],
            },
        ],
        "accessPolicies": [{"appId": APP_ID, "group": "All Staff", "mode": "RestrictAccess"}],
        "messages": [
            {"mailbox": "alice@contoso.com", "eml": "mail/phish.eml", "categories": ["Suspicious"]},
            {"mailbox": "alice@contoso.com", "eml": "mail/undated.eml", "folder": "Inbox/Reported"},
            {
                "mailbox": "alice@contoso.com",
                "folder": "archive",
                "received": "2025-05-01T08:00:00Z",
                "isRead": True,
                "flagStatus": "flagged",
                "subject": "Quarterly numbers – Q3 ✓",
                "from": "Erin Evans <erin.evans@contoso.com>",
                "to": ["Alice Archer <alice@contoso.com>", "bob@contoso.com"],
                "cc": ["José Núñez <jose@fabrikam.com>"],
                "body": "<p>The numbers are <b>attached</b>.</p>",
                "bodyType": "html",
                "headers": {"X-Mailer": "Outlook"},
                "importance": "high",
                "attachments": [
                    {
                        "name": "q3.csv",
                        "contentType": "text/csv",
                        "text": "quarter,revenue\nQ3,1000\n",
                    },
                    {
                        "name": "logo.png",
                        "contentType": "image/png",
                        "contentBase64": base64.b64encode(b"\x89PNG fake").decode(),
                        "inline": True,
                        "contentId": "logo",
                    },
                    {"eml": "mail/phish.eml"},
                ],
            },
            {
                "mailbox": "bob@contoso.com",
                "folder": "Custom Folder",
                "subject": "Hi",
                "from": "alice@contoso.com",
                "to": "bob@contoso.com",
                "body": "Plain",
            },
        ],
    }


def write_fixture(root: Path, document: dict[str, Any]) -> Path:
    (root / "mail").mkdir(parents=True, exist_ok=True)
    (root / "certs").mkdir(exist_ok=True)
    (root / "mail" / "phish.eml").write_bytes(PHISH)
    (root / "mail" / "undated.eml").write_bytes(NO_DATES)
    if not (root / "certs" / "app.pem").exists():
        (root / "certs" / "app.pem").write_bytes(certificate_pem())
    (root / "tenant.json").write_text(json.dumps(document, ensure_ascii=False), "utf-8")
    return root


@pytest.fixture
def fixture_dir(tmp_path: Path) -> Path:
    return write_fixture(tmp_path, full_document())


@pytest.fixture
def loaded(fixture_dir: Path) -> LoadedTenant:
    return load_tenant(fixture_dir)


def user(loaded: LoadedTenant, upn: str) -> User:
    found = loaded.tenant.user(upn)
    assert found is not None
    return found


def by_subject(box: Mailbox) -> dict[str, Message]:
    return {m.subject: m for m in box.messages.values()}


# --------------------------------------------------------------------------- directory objects


def test_tenant_apps_and_credentials(loaded: LoadedTenant, fixture_dir: Path) -> None:
    tenant = loaded.tenant
    assert tenant.id == TENANT_ID
    assert tenant.domains == ["contoso.com", "contoso.onmicrosoft.com"]
    app = tenant.apps[APP_ID]
    assert app.granted_roles() == ["Mail.ReadWrite", "User.Read.All"]
    assert app.permissions["Directory.Read.All"] is False
    assert [s.hint for s in app.secrets] == ["Tst", "Old"]
    assert app.secrets[1].expires == datetime(2020, 1, 1, tzinfo=UTC)
    (cert,) = app.certificates
    der = x509.load_pem_x509_certificate((fixture_dir / "certs/app.pem").read_bytes()).public_bytes(
        Encoding.DER
    )
    sha1 = hashlib.sha1(der).digest()  # noqa: S324 - x5t is SHA-1 by definition
    assert cert.thumbprint_sha1 == base64.urlsafe_b64encode(sha1).decode().rstrip("=")
    assert cert.thumbprint_sha256 == base64.urlsafe_b64encode(
        hashlib.sha256(der).digest()
    ).decode().rstrip("=")
    assert cert.expires == datetime(2027, 1, 1, tzinfo=UTC)  # the certificate's notAfter
    second = next(a for a in tenant.apps.values() if a.display_name == "second app")
    assert second.client_id
    assert second.object_id
    assert loaded.source == fixture_dir / "tenant.json"


def test_users_groups_and_policies(loaded: LoadedTenant) -> None:
    tenant = loaded.tenant
    alice = user(loaded, "alice@contoso.com")
    assert (alice.department, alice.job_title, alice.mail) == (
        "Finance",
        "Accountant",
        "alice@contoso.com",
    )
    assert user(loaded, "bob@contoso.com").id == "b2b2b2b2-0000-4000-8000-000000000002"
    assert not user(loaded, "carol@contoso.com").account_enabled
    dave = user(loaded, "dave@contoso.onmicrosoft.com")
    assert not dave.has_mailbox
    assert dave.mail is None
    erin = user(loaded, "erin@contoso.com")
    assert erin.mail == "erin.evans@contoso.com"
    assert tenant.user("erin.evans@contoso.com") is erin
    groups = {g.display_name: g for g in tenant.groups.values()}
    assert groups["Finance Team"].mail_enabled
    all_staff = groups["All Staff"].member_ids
    assert all_staff == [groups["Finance Team"].id, groups["Sales Team"].id, dave.id, erin.id]
    (policy,) = tenant.access_policies
    assert (policy.app_id, policy.group_id, policy.mode) == (
        APP_ID,
        groups["All Staff"].id,
        "RestrictAccess",
    )


def test_omitted_ids_are_deterministic(fixture_dir: Path, tmp_path: Path) -> None:
    first = load_tenant(fixture_dir)
    second = load_tenant(fixture_dir / "tenant.json")  # the file itself works too
    assert sorted(first.tenant.users) == sorted(second.tenant.users)
    assert sorted(first.tenant.groups) == sorted(second.tenant.groups)
    assert sorted(first.tenant.apps) == sorted(second.tenant.apps)
    assert user(first, "alice@contoso.com").created == user(second, "alice@contoso.com").created
    doc = full_document()
    del doc["tenant"]["id"]
    other = load_tenant(write_fixture(tmp_path / "other", doc))
    assert (
        other.tenant.id
        == load_tenant(write_fixture(tmp_path / "again", copy.deepcopy(doc))).tenant.id
    )


# --------------------------------------------------------------------------- mailboxes


def test_mailbox_holds_fixture_messages(loaded: LoadedTenant) -> None:
    box = loaded.build_mailbox(user(loaded, "alice@contoso.com"))
    messages = by_subject(box)
    phish = messages["Overdue invoice – action required"]
    assert box.folders[phish.folder_id].well_known_name == "inbox"
    assert phish.received == datetime(2025, 6, 2, 9, 14, 58, tzinfo=UTC)  # the Received header
    assert phish.categories == ["Suspicious"]
    assert phish.mime == PHISH
    undated = messages["undated"]
    assert undated.received == FIXTURE_EPOCH  # never "now"
    reported = box.folders[undated.folder_id]
    assert reported.display_name == "Reported"
    assert box.folders[reported.parent_id].well_known_name == "inbox"
    structured = messages["Quarterly numbers – Q3 ✓"]
    assert box.folders[structured.folder_id].well_known_name == "archive"
    assert structured.is_read
    assert structured.flag_status == "flagged"
    assert structured.importance == "high"
    assert structured.received == datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
    assert structured.from_ == EmailAddress("Erin Evans", "erin.evans@contoso.com")
    assert structured.to == [
        EmailAddress("Alice Archer", "alice@contoso.com"),
        EmailAddress("", "bob@contoso.com"),
    ]
    assert structured.cc == [EmailAddress("José Núñez", "jose@fabrikam.com")]
    assert structured.body_type == "html"
    assert "<b>attached</b>" in structured.body
    names = sorted((a.name, a.kind, a.is_inline) for a in structured.attachments)
    assert names == [
        ("Overdue invoice – action required", "item", False),
        ("logo.png", "file", True),
        ("q3.csv", "file", False),
    ]
    csv = next(a for a in structured.attachments if a.name == "q3.csv")
    assert csv.content == b"quarter,revenue\nQ3,1000\n"
    # Built through a MIME document: headers and $value exist like for delivered mail.
    headers = dict(structured.headers)
    assert headers["X-Mailer"] == "Outlook"
    assert headers["Message-ID"] == structured.internet_message_id
    assert structured.mime is not None
    assert rfc822_from_message(structured) == structured.mime
    bob = by_subject(loaded.build_mailbox(user(loaded, "bob@contoso.com")))["Hi"]
    assert bob.body_type == "text"
    assert bob.body.strip() == "Plain"


def test_structured_and_raw_paths_expose_the_same_properties(
    loaded: LoadedTenant, tmp_path: Path
) -> None:
    box = loaded.build_mailbox(user(loaded, "alice@contoso.com"))
    structured = by_subject(box)["Quarterly numbers – Q3 ✓"]
    assert structured.mime is not None
    doc = full_document()
    doc["messages"] = [
        {"mailbox": "alice@contoso.com", "eml": "mail/same.eml", "received": "2025-05-01T08:00:00Z"}
    ]
    root = write_fixture(tmp_path / "raw", doc)
    (root / "mail" / "same.eml").write_bytes(structured.mime)
    raw_loaded = load_tenant(root)
    (raw,) = raw_loaded.build_mailbox(user(raw_loaded, "alice@contoso.com")).messages.values()
    for name in (
        "subject",
        "from_",
        "to",
        "cc",
        "body",
        "body_type",
        "headers",
        "internet_message_id",
        "importance",
        "received",
        "sent",
    ):
        assert getattr(raw, name) == getattr(structured, name), name
    assert [(a.name, a.content, a.kind) for a in raw.attachments] == [
        (a.name, a.content, a.kind) for a in structured.attachments
    ]


def test_structured_message_id_is_content_derived(tmp_path: Path) -> None:
    doc = full_document()
    entry = {"subject": "Same", "from": "x@fabrikam.com", "to": ["alice@contoso.com"], "body": "b"}
    doc["messages"] = [
        {"mailbox": "alice@contoso.com", **entry},
        {
            "mailbox": "bob@contoso.com",
            "folder": "junkemail",
            "received": "2025-03-01T00:00:00Z",
            **entry,
        },
        {"mailbox": "bob@contoso.com", **entry, "body": "different"},
    ]
    loaded = load_tenant(write_fixture(tmp_path, doc))
    alice = list(loaded.build_mailbox(user(loaded, "alice@contoso.com")).messages.values())
    bob = list(loaded.build_mailbox(user(loaded, "bob@contoso.com")).messages.values())
    assert alice[0].internet_message_id == bob[0].internet_message_id
    assert bob[1].internet_message_id != bob[0].internet_message_id
    assert alice[0].internet_message_id.endswith("@fabrikam.com>")


def test_build_mailbox_is_pure(loaded: LoadedTenant) -> None:
    alice = user(loaded, "alice@contoso.com")
    first = loaded.build_mailbox(alice)
    second = loaded.build_mailbox(alice)
    assert first is not second
    assert first.pristine
    assert second.pristine
    assert list(first.messages) == list(second.messages)
    assert list(first.folders) == list(second.folders)
    for a, b in zip(first.messages.values(), second.messages.values(), strict=True):
        assert (a.rest_id, a.subject, a.headers, a.body, a.received) == (
            b.rest_id,
            b.subject,
            b.headers,
            b.body,
            b.received,
        )
        assert [x.id for x in a.attachments] == [y.id for y in b.attachments]
    # Changing one build leaves the next one untouched.
    changed = next(iter(first.messages.values()))
    changed.categories.append("Changed")
    changed.to.append(EmailAddress("x", "x@example.com"))
    third = loaded.build_mailbox(alice)
    again = third.messages[changed.immutable_id]
    assert "Changed" not in again.categories
    assert all(a.address != "x@example.com" for a in again.to)
    assert loaded.fixture_mailboxes == {alice.id, user(loaded, "bob@contoso.com").id}
    assert loaded.build_mailbox(user(loaded, "erin@contoso.com")).messages == {}


def test_generator_section_adds_lazy_content(tmp_path: Path) -> None:
    doc = full_document()
    doc["generator"] = {
        "seed": 5,
        "messagesPerMailbox": 7,
        "campaigns": 2,
        "mailboxes": ["alice@contoso.com", "erin@contoso.com"],
        "epoch": "2025-07-01T00:00:00Z",
    }
    loaded = load_tenant(write_fixture(tmp_path, doc))
    assert loaded.generated is not None
    alice = user(loaded, "alice@contoso.com")
    box = loaded.build_mailbox(alice)
    messages = list(box.messages.values())
    planted = loaded.generated.plan().get(alice.id, ())
    # Generated content first (background, then campaign copies), fixture messages after.
    assert len(messages) == 7 + len(planted) + 3
    assert [m.subject for m in messages[-3:]] == [
        "Overdue invoice – action required",
        "undated",
        "Quarterly numbers – Q3 ✓",
    ]
    assert all(m.received <= datetime(2025, 7, 1, tzinfo=UTC) for m in messages[:7])
    assert alice.mailbox_seed == 5
    bob = user(loaded, "bob@contoso.com")
    assert bob.mailbox_seed is None
    assert [m.subject for m in loaded.build_mailbox(bob).messages.values()] == ["Hi"]
    assert len(loaded.build_mailbox(user(loaded, "erin@contoso.com")).messages) >= 7


def test_the_shared_test_tenant_loads() -> None:
    shared = Path(__file__).parent.parent / "fixtures" / "tenant"
    if not (shared / "tenant.json").exists():
        pytest.skip("no shared test tenant")
    loaded = load_tenant(shared)
    for found in loaded.tenant.users.values():
        if found.has_mailbox:
            loaded.build_mailbox(found)


# --------------------------------------------------------------------------- validation


def mutate(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with value None, delete) a dotted path with [i] indexes."""
    parts = path.replace("[", ".").replace("]", "").split(".")
    target: Any = doc
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is None:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        ("users[1].userPrincipalName", None, "users[1].userPrincipalName: missing"),
        ("users[1].displayName", "", "users[1].displayName: must not be empty"),
        (
            "users[1].userPrincipleName",
            "typo@contoso.com",
            "users[1].userPrincipleName: unknown field",
        ),
        (
            "users[1].userPrincipalName",
            "bob@fabrikam.com",
            "users[1].userPrincipalName: domain 'fabrikam.com' is not a verified",
        ),
        (
            "users[1].userPrincipalName",
            "alice@contoso.com",
            "users[1].userPrincipalName: duplicate user",
        ),
        ("users[1].id", "not-a-guid", "users[1].id: 'not-a-guid' is not a GUID"),
        ("users[1].accountEnabled", "yes", "users[1].accountEnabled: must be true or false"),
        ("tenant.domains", [], "tenant.domains: at least one verified domain"),
        (
            "tenant.domains",
            ["not a domain"],
            "tenant.domains[0]: 'not a domain' is not a domain name",
        ),
        ("tenant", None, "tenant: missing"),
        ("apps[0].clientId", "xyz", "apps[0].clientId: 'xyz' is not a GUID"),
        (
            "apps[0].secrets[0].expires",
            "tomorrow",
            "apps[0].secrets[0].expires: 'tomorrow' is not an ISO 8601",
        ),
        (
            "apps[0].certificates[0]",
            {"pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
            "apps[0].certificates[0]: not a PEM certificate",
        ),
        (
            "apps[0].certificates[0]",
            {"pemFile": "../outside.pem"},
            "apps[0].certificates[0].pemFile: must stay inside",
        ),
        (
            "apps[0].permissions",
            {"Mail.Read": "yes"},
            "apps[0].permissions.Mail.Read: must be true or false",
        ),
        (
            "groups[2].members[1]",
            "Nobody Team",
            "groups[2].members[1]: no user or group 'Nobody Team'",
        ),
        ("groups[0].members", ["All Staff"], "nested groups form a cycle"),
        ("groups[1].displayName", "Finance Team", "groups[1].displayName: duplicate group name"),
        (
            "accessPolicies[0].appId",
            "11111111-2222-4333-8444-555555555555",
            "accessPolicies[0].appId: no app",
        ),
        (
            "accessPolicies[0].mode",
            "AllowAll",
            "accessPolicies[0].mode: must be RestrictAccess or DenyAccess",
        ),
        (
            "messages[0].mailbox",
            "nobody@contoso.com",
            "messages[0].mailbox: no user 'nobody@contoso.com'",
        ),
        (
            "messages[0].mailbox",
            "dave@contoso.onmicrosoft.com",
            "messages[0].mailbox: user 'dave@contoso.onmicrosoft.com' has no mailbox",
        ),
        ("messages[0].eml", "mail/missing.eml", "messages[0].eml: file not found"),
        ("messages[0].eml", "/etc/passwd", "messages[0].eml: must be relative"),
        ("messages[0].subject", "both", "messages[0].subject: not allowed together with eml"),
        ("messages[2].bodyType", "rtf", "messages[2].bodyType: must be text or html"),
        (
            "messages[2].from",
            "not an address",
            "messages[2].from: 'not an address' is not an email address",
        ),
        (
            "messages[2].attachments[0].contentBase64",
            "!!!",
            "messages[2].attachments[0]: give exactly one of",
        ),
        (
            "messages[2].headers",
            {"Bad Name": "x"},
            "messages[2].headers: 'Bad Name' is not a header name",
        ),
        (
            "messages[2].headers",
            {"X-Inject": "a\r\nBcc: x"},
            "messages[2].headers.X-Inject: must be a one-line string",
        ),
        (
            "messages[2].folder",
            "Inbox//Sub",
            "messages[2].folder: 'Inbox//Sub' has an empty folder name",
        ),
        (
            "messages[2].received",
            "yesterday",
            "messages[2].received: 'yesterday' is not an ISO 8601",
        ),
        ("generator", {"seed": "x", "messagesPerMailbox": 1}, "generator.seed: must be an integer"),
        ("generator", {"seed": 1}, "generator.messagesPerMailbox: missing"),
        (
            "generator",
            {"seed": 1, "messagesPerMailbox": 1, "mailboxes": ["ghost@contoso.com"]},
            "generator.mailboxes[0]: no user",
        ),
    ],
)
def test_validation_errors_name_the_json_path(
    tmp_path: Path, path: str, value: Any, error: str
) -> None:
    doc = full_document()
    mutate(doc, path, value)
    root = write_fixture(tmp_path, doc)
    with pytest.raises(FixtureError) as caught:
        load_tenant(root)
    assert error in str(caught.value)


def test_empty_eml_is_a_fixture_error(tmp_path: Path) -> None:
    root = write_fixture(tmp_path, full_document())
    (root / "mail" / "phish.eml").write_bytes(b"")
    with pytest.raises(FixtureError, match=r"messages\[0\]\.eml: empty message"):
        load_tenant(root)


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "tenant.json").write_text('{"tenant": ', "utf-8")
    with pytest.raises(FixtureError, match="invalid JSON"):
        load_tenant(tmp_path)
    with pytest.raises(FixtureError, match="not found"):
        load_tenant(tmp_path / "nowhere")
