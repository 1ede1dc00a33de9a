"""The Microsoft 365 connection test against the emulator: each failure names its fix."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    NoEncryption,
    pkcs12,
)

from mailtrawl.configurations.schemas import CheckView
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.providers.base import CheckReport
from mailtrawl.providers.errors import TokenRequestFailed
from mailtrawl.providers.graph.auth import ClientCertificate, ClientSecret
from mailtrawl.providers.graph.checks import TEST_SUBJECT, token_failure
from tests.emulator.certs import make_certificate
from tests.providers.conftest import FOUR, MakeProvider, new_app

pytestmark = pytest.mark.anyio

ORDER = ["token", "permissions", "directory", "test-mailbox", "category", "test-item", "reach"]


def _statuses(report: CheckReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def _all_ok(report: CheckReport) -> None:
    assert [c.name for c in report.checks] == ORDER
    assert _statuses(report) == dict.fromkeys(ORDER, "ok"), [
        (c.name, c.message) for c in report.checks if c.status != "ok"
    ]
    assert report.ok


def _leftovers(emu: EmulatorProcess, mailbox: str) -> list[dict[str, object]]:
    snapshot = emu.snapshot(mailbox)
    return [
        m
        for folder in snapshot["folders"]
        for m in folder["messages"]
        if m["subject"] == TEST_SUBJECT
    ]


async def test_client_secret_passes_every_check_and_leaves_nothing_behind(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    report = await make_m365().check()
    _all_ok(report)
    assert report.check("category").message == (
        "The warning category 'Suspicious email' was created in alice@contoso.com."
    )
    assert report.check("reach").details["sampled"] == 6
    assert _leftovers(emulator, "alice@contoso.com") == []
    assert [m["subject"] for m in emulator.snapshot("alice@contoso.com")["purged"]] == [
        TEST_SUBJECT
    ]
    assert "Suspicious email" in {
        c["displayName"] for c in emulator.snapshot("alice@contoso.com")["masterCategories"]
    }
    # The report fits the API's schema, and a second run finds the category in place.
    for check in report.as_dict()["checks"]:
        CheckView.model_validate(check)
    again = await make_m365().check()
    assert again.check("category").details["change"] == "unchanged"
    assert report.duration_ms > 0


@pytest.mark.parametrize("form", ["pem", "pfx", "pfx-with-password"])
async def test_certificate_passes_every_check(
    emulator: EmulatorProcess, make_m365: MakeProvider, form: str
) -> None:
    cert = make_certificate()
    app = new_app(
        emulator, dict.fromkeys(FOUR, True), secret=False, certificates=[cert.certificate_pem]
    )
    if form == "pem":
        credential = ClientCertificate.from_pem(cert.private_key_pem, cert.certificate_pem)
    else:
        password = b"s3cret" if form == "pfx-with-password" else None
        pfx = pkcs12.serialize_key_and_certificates(
            b"mailtrawl",
            cert.key,
            cert.cert,
            None,
            BestAvailableEncryption(password) if password else NoEncryption(),
        )
        credential = ClientCertificate.from_pfx(pfx, password)
    assert credential.thumbprint == cert.sha1_hex.upper()
    report = await make_m365(client_id=app["clientId"], credential=credential).check()
    _all_ok(report)
    assert report.check("token").details["credential"] == "certificate"


async def test_wrong_secret(make_m365: MakeProvider) -> None:
    report = await make_m365(credential=ClientSecret("Tst8Q~not-the-value")).check()
    token = report.check("token")
    assert token.status == "failed"
    assert token.details["aadsts"] == 7000215
    assert "not the client secret's Value" in token.message
    assert "copy the Value column, not the Secret ID" in (token.fix or "")
    assert {c.name: c.status for c in report.checks[1:]} == dict.fromkeys(ORDER[1:], "skipped")
    assert not report.ok


async def test_expired_secret_names_the_date(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    cid = emulator.info["client_id"]
    old = emulator.control("POST", f"/apps/{cid}/secrets", {"expires": "2021-06-01T00:00:00Z"})
    expiry = datetime(2021, 6, 1, tzinfo=UTC)
    report = await make_m365(credential=ClientSecret(old["value"], expires_at=expiry)).check()
    token = report.check("token")
    assert token.status == "failed"
    assert token.details["aadsts"] == 7000222
    assert token.message == "The client secret expired on 2021-06-01."
    assert "create a new client secret" in (token.fix or "")


async def test_unknown_application(make_m365: MakeProvider) -> None:
    report = await make_m365(client_id=str(uuid.uuid4())).check()
    token = report.check("token")
    assert token.details["aadsts"] == 700016
    assert "the client id is wrong, or the app is registered in another tenant" in token.message
    assert not report.ok


async def test_unknown_tenant(make_m365: MakeProvider) -> None:
    report = await make_m365(tenant=str(uuid.uuid4())).check()
    token = report.check("token")
    assert token.status == "failed"
    assert token.details["aadsts"] == 90002
    assert "was not found" in token.message
    assert "Directory (tenant) ID" in (token.fix or "")


async def test_certificate_not_uploaded(emulator: EmulatorProcess, make_m365: MakeProvider) -> None:
    registered, stranger = make_certificate(), make_certificate("stranger")
    app = new_app(
        emulator, dict.fromkeys(FOUR, True), secret=False, certificates=[registered.certificate_pem]
    )
    credential = ClientCertificate.from_pem(stranger.private_key_pem, stranger.certificate_pem)
    report = await make_m365(client_id=app["clientId"], credential=credential).check()
    token = report.check("token")
    assert token.details["aadsts"] == 700027
    assert stranger.sha1_hex.upper() in token.message
    assert "upload this certificate" in (token.fix or "")


# Which check fails besides "permissions" when one permission is missing.
DEPENDENT = {
    "Directory.Read.All": ("directory", "failed"),
    "User.Read.All": ("directory", "ok"),  # Directory.Read.All also lists users
    "Mail.ReadWrite": ("test-mailbox", "failed"),
    "MailboxSettings.ReadWrite": ("category", "failed"),
}


@pytest.mark.parametrize("missing", FOUR)
async def test_each_missing_permission_is_named(
    emulator: EmulatorProcess, make_m365: MakeProvider, missing: str
) -> None:
    app = new_app(emulator, {p: True for p in FOUR if p != missing})
    report = await make_m365(
        client_id=app["clientId"], credential=ClientSecret(app["secret"]["value"])
    ).check()
    permissions = report.check("permissions")
    assert permissions.status == "failed"
    assert permissions.details["missing"] == [missing]
    assert f"lacks the application permission {missing}" in permissions.message
    assert "Grant admin consent" in (permissions.fix or "")
    assert "few minutes" not in permissions.message
    name, status = DEPENDENT[missing]
    assert report.check(name).status == status
    if status == "failed":
        assert missing in report.check(name).message
    assert not report.ok


async def test_permissions_added_but_not_consented(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    app = new_app(emulator, dict.fromkeys(FOUR, False))
    provider = make_m365(client_id=app["clientId"], credential=ClientSecret(app["secret"]["value"]))
    report = await provider.check(new_configuration=True)
    assert report.check("token").status == "ok"
    permissions = report.check("permissions")
    assert permissions.status == "failed"
    assert "admin consent has not been granted" in permissions.message
    assert "Microsoft can take a few minutes to apply a new admin consent" in permissions.message
    assert sorted(permissions.details["missing"]) == sorted(FOUR)
    assert report.check("directory").status == "failed"
    assert not report.ok


async def test_test_mailbox_without_a_mailbox(make_m365: MakeProvider) -> None:
    report = await make_m365(test_mailbox="dave@contoso.com").check()
    mailbox = report.check("test-mailbox")
    assert mailbox.status == "failed"
    assert "has no Exchange Online mailbox" in mailbox.message
    assert "licensed user or a shared mailbox" in (mailbox.fix or "")
    assert report.check("category").status == "skipped"
    assert report.check("test-item").status == "skipped"
    assert not report.ok


async def test_unknown_test_mailbox(make_m365: MakeProvider) -> None:
    report = await make_m365(test_mailbox="nobody@contoso.com").check()
    assert (
        report.check("test-mailbox").message == "There is no user nobody@contoso.com in the tenant."
    )


async def test_test_mailbox_outside_authorized_domains(make_m365: MakeProvider) -> None:
    report = await make_m365(authorized_domains=("fabrikam.com",)).check()
    assert report.check("test-mailbox").status == "failed"
    assert "outside this configuration's authorized domains" in report.check("test-mailbox").message


async def test_no_test_mailbox_is_a_warning_not_a_failure(make_m365: MakeProvider) -> None:
    report = await make_m365(test_mailbox=None).check()
    assert report.check("test-mailbox").status == "warning"
    assert report.check("category").status == "skipped"
    assert report.check("test-item").status == "skipped"
    assert report.ok


async def test_access_policy_limiting_the_app(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    emulator.control(
        "PUT",
        "/access-policies",
        [{"appId": emulator.info["client_id"], "group": "Finance Team", "mode": "RestrictAccess"}],
    )
    report = await make_m365().check()  # alice is in Finance Team
    reach = report.check("reach")
    assert reach.status == "warning"
    assert reach.details["blocked"] == 5
    assert reach.details["reached"] == 1
    assert "An application access policy limits the app: 5 of 6 sampled mailboxes" in reach.message
    assert report.ok  # a scoped app is legitimate: a warning, not a failure
    outside = await make_m365(test_mailbox="bob@contoso.com").check()
    assert outside.check("test-mailbox").status == "failed"
    assert "outside the app's application access policy" in outside.check("test-mailbox").message
    assert not outside.ok


async def test_throttling_during_the_test_is_retried(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    emulator.settings(faults={"rate_429": 0.3, "rate_503": 0.2, "retry_after": 0.02, "seed": 5})
    provider = make_m365()
    _all_ok(await provider.check())
    assert provider.stats()["retries"] > 0
    assert _leftovers(emulator, "alice@contoso.com") == []


async def test_persistent_throttling_fails_with_a_clear_message(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    emulator.settings(faults={"rate_429": 1.0, "retry_after": 0.01})
    report = await make_m365().check()
    assert report.check("token").status == "ok"
    assert report.check("permissions").status == "ok"
    directory = report.check("directory")
    assert directory.status == "failed"
    assert directory.message.startswith("Microsoft 365 kept throttling the test")
    assert "not a configuration error" in directory.message
    assert report.check("reach").status == "warning"
    assert not report.ok


async def test_clock_skew_is_explained(emulator: EmulatorProcess, make_m365: MakeProvider) -> None:
    cert = make_certificate()
    app = new_app(
        emulator, dict.fromkeys(FOUR, True), secret=False, certificates=[cert.certificate_pem]
    )
    # Entra's clock is an hour ahead of ours: the signed request looks expired to it.
    emulator.control("POST", "/clock", {"advanceSeconds": 3600})
    credential = ClientCertificate.from_pem(cert.private_key_pem, cert.certificate_pem)
    report = await make_m365(client_id=app["clientId"], credential=credential).check()
    token = report.check("token")
    assert token.details["aadsts"] == 700024
    assert "clock is probably wrong" in token.message
    assert "NTP" in (token.fix or "")


async def test_unknown_aadsts_codes_show_entra_text(make_m365: MakeProvider) -> None:
    provider = make_m365()
    error = TokenRequestFailed(
        aadsts=53003, description="AADSTS53003: Access has been blocked by Conditional Access."
    )
    message, fix = token_failure(error, provider)
    assert message == (
        "Microsoft Entra ID refused the sign-in: AADSTS53003: Access has been blocked by "
        "Conditional Access."
    )
    assert fix is not None
    message, _ = token_failure(TokenRequestFailed(aadsts=7000218), provider)
    assert "neither a client secret nor a certificate" in message
