"""The real msal ConfidentialClientApplication against the HTTPS emulator."""

from __future__ import annotations

import uuid

import jwt
import msal
import pytest
import requests

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.certs import make_certificate

SCOPES = ["https://graph.microsoft.com/.default"]
FOUR = ["Directory.Read.All", "Mail.ReadWrite", "MailboxSettings.ReadWrite", "User.Read.All"]


def _session(emu: EmulatorProcess) -> requests.Session:
    # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment would override `verify`.
    session = requests.Session()
    session.trust_env = False
    session.verify = emu.ca_bundle
    return session


def _app(
    emu: EmulatorProcess, client_id: str, credential: object, authority: str | None = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=authority or emu.authority,
        instance_discovery=False,
        http_client=_session(emu),
    )


def test_msal_with_a_client_secret(emulator: EmulatorProcess) -> None:
    app = _app(emulator, emulator.info["client_id"], emulator.info["client_secret"])
    result = app.acquire_token_for_client(SCOPES)
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["roles"] == FOUR
    assert claims["tid"] == emulator.tenant_id
    again = app.acquire_token_for_client(SCOPES)
    assert again["token_source"] == "cache"


def test_msal_with_a_domain_authority(emulator: EmulatorProcess) -> None:
    app = _app(
        emulator,
        emulator.info["client_id"],
        emulator.info["client_secret"],
        f"{emulator.authority_host}/contoso.com",
    )
    assert "access_token" in app.acquire_token_for_client(SCOPES)


@pytest.mark.parametrize("legacy_thumbprint", [False, True], ids=["PS256-x5t#S256", "RS256-x5t"])
def test_msal_with_a_certificate(emulator: EmulatorProcess, legacy_thumbprint: bool) -> None:
    cert = make_certificate()
    app_info = emulator.control(
        "POST",
        "/apps",
        {
            "displayName": "cert app",
            "permissions": dict.fromkeys(FOUR, True),
            "secret": False,
            "certificates": [cert.certificate_pem],
        },
    )
    credential: dict[str, str] = {"private_key": cert.private_key_pem}
    if legacy_thumbprint:
        credential["thumbprint"] = cert.sha1_hex
    else:
        credential["public_certificate"] = cert.certificate_pem
    result = _app(emulator, app_info["clientId"], credential).acquire_token_for_client(SCOPES)
    assert "access_token" in result, result
    assert (
        jwt.decode(result["access_token"], options={"verify_signature": False})["appidacr"] == "2"
    )


def test_msal_reports_a_wrong_secret(emulator: EmulatorProcess) -> None:
    result = _app(emulator, emulator.info["client_id"], "not-the-secret").acquire_token_for_client(
        SCOPES
    )
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]


def test_msal_reports_an_expired_secret(emulator: EmulatorProcess) -> None:
    cid = emulator.info["client_id"]
    old = emulator.control("POST", f"/apps/{cid}/secrets", {"expires": "2021-06-01T00:00:00Z"})
    result = _app(emulator, cid, old["value"]).acquire_token_for_client(SCOPES)
    assert result["error_codes"] == [7000222]


def test_msal_reports_an_unknown_application(emulator: EmulatorProcess) -> None:
    result = _app(emulator, str(uuid.uuid4()), "whatever").acquire_token_for_client(SCOPES)
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


def test_msal_reports_a_certificate_that_is_not_registered(emulator: EmulatorProcess) -> None:
    registered, stranger = make_certificate(), make_certificate("stranger")
    app_info = emulator.control(
        "POST",
        "/apps",
        {
            "displayName": "cert app",
            "permissions": {},
            "secret": False,
            "certificates": [registered.certificate_pem],
        },
    )
    credential = {
        "private_key": stranger.private_key_pem,
        "public_certificate": stranger.certificate_pem,
    }
    result = _app(emulator, app_info["clientId"], credential).acquire_token_for_client(SCOPES)
    assert result["error_codes"] == [700027]


def test_msal_refuses_an_unknown_tenant_at_construction(emulator: EmulatorProcess) -> None:
    with pytest.raises(
        ValueError, match=r"90002|invalid_tenant|Unable to get authority configuration"
    ):
        _app(emulator, emulator.info["client_id"], "x", f"{emulator.authority_host}/{uuid.uuid4()}")
