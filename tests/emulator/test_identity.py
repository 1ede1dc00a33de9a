"""The Microsoft identity platform endpoints, through plain HTTP: success and every error shape."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes

from mailtrawl.emulator.testing import EmulatorProcess
from tests.emulator.certs import SelfSignedCertificate, make_certificate

SCOPE = "https://graph.microsoft.com/.default"
FOUR = ["Directory.Read.All", "Mail.ReadWrite", "MailboxSettings.ReadWrite", "User.Read.All"]
ERROR_KEYS = {
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
}


def _post_token(
    emu: EmulatorProcess, data: dict[str, str], tenant: str | None = None, **kwargs: Any
) -> httpx.Response:
    with emu.client() as client:
        return client.post(
            f"{emu.authority_host}/{tenant or emu.tenant_id}/oauth2/v2.0/token", data=data, **kwargs
        )


def _secret_form(emu: EmulatorProcess, **overrides: str) -> dict[str, str]:
    form = {
        "client_id": emu.info["client_id"],
        "client_secret": emu.info["client_secret"],
        "grant_type": "client_credentials",
        "scope": SCOPE,
    }
    form.update(overrides)
    return form


def _assert_aad_error(
    response: httpx.Response, status: int, error: str, code: int
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body.keys() >= ERROR_KEYS
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert f"Trace ID: {body['trace_id']}" in body["error_description"]
    assert f"Correlation ID: {body['correlation_id']}" in body["error_description"]
    uuid.UUID(body["trace_id"])
    return dict(body)


def test_openid_configuration_by_guid_and_by_domain(emulator: EmulatorProcess) -> None:
    with emulator.client() as client:
        by_id = client.get(f"{emulator.authority}/v2.0/.well-known/openid-configuration")
        by_domain = client.get(
            f"{emulator.authority_host}/contoso.com/v2.0/.well-known/openid-configuration"
        )
    assert by_id.status_code == by_domain.status_code == 200
    for body in (by_id.json(), by_domain.json()):
        # Entra answers with the tenant GUID in the endpoints, whichever name was asked for.
        assert body["token_endpoint"] == f"{emulator.authority}/oauth2/v2.0/token"
        assert body["authorization_endpoint"].startswith("https://")
        assert body["issuer"] == f"{emulator.authority}/v2.0"


def test_unknown_tenant_is_aadsts90002(emulator: EmulatorProcess) -> None:
    with emulator.client() as client:
        response = client.get(
            f"{emulator.authority_host}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration"
        )
    _assert_aad_error(response, 400, "invalid_tenant", 90002)
    response = _post_token(emulator, _secret_form(emulator), tenant="fabrikam.com")
    _assert_aad_error(response, 400, "invalid_tenant", 90002)


def test_malformed_tenant_identifier_is_aadsts900023(emulator: EmulatorProcess) -> None:
    with emulator.client() as client:
        response = client.get(
            f"{emulator.authority_host}/not_a_tenant/v2.0/.well-known/openid-configuration"
        )
    _assert_aad_error(response, 400, "invalid_request", 900023)


def test_instance_discovery(emulator: EmulatorProcess) -> None:
    with emulator.client() as client:
        body = client.get(
            f"{emulator.authority_host}/common/discovery/instance?api-version=1.1"
        ).json()
    assert body["metadata"][0]["aliases"]


def test_secret_in_form_gives_a_graph_token_with_the_consented_roles(
    emulator: EmulatorProcess,
) -> None:
    response = _post_token(emulator, _secret_form(emulator))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256"
    assert header["kid"]
    assert header["x5t"]
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{emulator.tenant_id}/"
    assert claims["tid"] == emulator.tenant_id
    assert claims["appid"] == emulator.info["client_id"]
    assert claims["appidacr"] == "1"
    assert claims["idtyp"] == "app"
    assert claims["roles"] == FOUR
    assert claims["exp"] - claims["iat"] == 3599


def test_tenant_addressed_by_domain_issues_tokens(emulator: EmulatorProcess) -> None:
    response = _post_token(emulator, _secret_form(emulator), tenant="contoso.onmicrosoft.com")
    assert response.status_code == 200, response.text


def test_secret_by_http_basic(emulator: EmulatorProcess) -> None:
    form = {"grant_type": "client_credentials", "scope": SCOPE}
    auth = httpx.BasicAuth(emulator.info["client_id"], emulator.info["client_secret"])
    response = _post_token(emulator, form, auth=auth)
    assert response.status_code == 200, response.text


def test_wrong_secret_is_aadsts7000215(emulator: EmulatorProcess) -> None:
    body = _assert_aad_error(
        _post_token(
            emulator, _secret_form(emulator, client_secret="5a1b2c3d-0000-4000-8000-000000000001")
        ),
        401,
        "invalid_client",
        7000215,
    )
    assert "client secret value, not the client secret ID" in body["error_description"]


def test_expired_secret_is_aadsts7000222(emulator: EmulatorProcess) -> None:
    cid = emulator.info["client_id"]
    secret = emulator.control("POST", f"/apps/{cid}/secrets", {"expires": "2020-01-01T00:00:00Z"})
    response = _post_token(emulator, _secret_form(emulator, client_secret=secret["value"]))
    _assert_aad_error(response, 401, "invalid_client", 7000222)


def test_secret_expired_through_the_control_api(emulator: EmulatorProcess) -> None:
    cid = emulator.info["client_id"]
    secret = emulator.control("POST", f"/apps/{cid}/secrets", {})
    assert (
        _post_token(emulator, _secret_form(emulator, client_secret=secret["value"])).status_code
        == 200
    )
    emulator.control("POST", f"/apps/{cid}/secrets/{secret['id']}/expire")
    _assert_aad_error(
        _post_token(emulator, _secret_form(emulator, client_secret=secret["value"])),
        401,
        "invalid_client",
        7000222,
    )


def test_rotation_expires_old_secrets(emulator: EmulatorProcess) -> None:
    cid = emulator.info["client_id"]
    new = emulator.control("POST", f"/apps/{cid}/secrets/rotate")
    assert (
        _post_token(emulator, _secret_form(emulator, client_secret=new["value"])).status_code == 200
    )
    _assert_aad_error(_post_token(emulator, _secret_form(emulator)), 401, "invalid_client", 7000222)


def test_missing_credential_is_aadsts7000218(emulator: EmulatorProcess) -> None:
    form = _secret_form(emulator)
    del form["client_secret"]
    _assert_aad_error(_post_token(emulator, form), 401, "invalid_client", 7000218)


def test_unknown_application_is_aadsts700016(emulator: EmulatorProcess) -> None:
    response = _post_token(emulator, _secret_form(emulator, client_id=str(uuid.uuid4())))
    _assert_aad_error(response, 400, "unauthorized_client", 700016)


def test_bad_scope_is_aadsts70011(emulator: EmulatorProcess) -> None:
    response = _post_token(
        emulator, _secret_form(emulator, scope="https://graph.microsoft.com/Mail.Read")
    )
    _assert_aad_error(response, 400, "invalid_scope", 70011)


def test_unsupported_grant_type(emulator: EmulatorProcess) -> None:
    response = _post_token(emulator, _secret_form(emulator, grant_type="password"))
    _assert_aad_error(response, 400, "unsupported_grant_type", 70003)


def test_permission_added_but_not_consented_is_absent_from_roles(emulator: EmulatorProcess) -> None:
    app = emulator.control(
        "POST",
        "/apps",
        {
            "displayName": "half consented",
            "permissions": {"Mail.ReadWrite": True, "User.Read.All": False},
        },
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["Mail.ReadWrite"]
    emulator.control(
        "POST", f"/apps/{app['clientId']}/permissions", {"unconsent": ["Mail.ReadWrite"]}
    )
    token = emulator.token(app["clientId"], app["secret"]["value"])
    # With nothing consented Entra still issues the token, with no roles claim at all.
    assert "roles" not in jwt.decode(token, options={"verify_signature": False})


# Certificate client assertions ----------------------------------------------------------------


def _b64url(data: bytes, *, pad: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if pad else text.rstrip("=")


@pytest.fixture
def cert_app(emulator: EmulatorProcess) -> tuple[str, SelfSignedCertificate]:
    cert = make_certificate()
    app = emulator.control(
        "POST",
        "/apps",
        {
            "displayName": "cert app",
            "permissions": dict.fromkeys(FOUR, True),
            "secret": False,
            "certificates": [cert.certificate_pem],
        },
    )
    return app["clientId"], cert


def _assertion(
    emu: EmulatorProcess,
    client_id: str,
    cert: SelfSignedCertificate,
    *,
    alg: str = "PS256",
    sha256: bool = True,
    pad: bool = True,
    aud: str | None = None,
    exp_delta: float = 600.0,
    key: Any = None,
) -> str:
    now = time.time()
    if sha256:
        header = {
            "alg": alg,
            "typ": "JWT",
            "x5t#S256": _b64url(cert.cert.fingerprint(hashes.SHA256()), pad=pad),
        }
    else:
        header = {
            "alg": alg,
            "typ": "JWT",
            "x5t": _b64url(cert.cert.fingerprint(hashes.SHA1()), pad=pad),  # noqa: S303
        }
    claims = {
        "aud": aud or f"{emu.authority}/oauth2/v2.0/token",
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "iat": now,  # float NumericDates, as msal sends them
        "exp": now + exp_delta,
    }
    return jwt.encode(claims, key or cert.key, algorithm=alg, headers=header)


def _assertion_form(client_id: str, assertion: str) -> dict[str, str]:
    return {
        "client_id": client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "grant_type": "client_credentials",
        "scope": SCOPE,
    }


@pytest.mark.parametrize(
    ("alg", "sha256", "pad"),
    [
        ("PS256", True, True),
        ("PS256", True, False),
        ("RS256", False, True),
        ("RS256", False, False),
    ],
)
def test_certificate_assertion_variants(
    emulator: EmulatorProcess,
    cert_app: tuple[str, SelfSignedCertificate],
    alg: str,
    sha256: bool,
    pad: bool,
) -> None:
    client_id, cert = cert_app
    response = _post_token(
        emulator,
        _assertion_form(
            client_id, _assertion(emulator, client_id, cert, alg=alg, sha256=sha256, pad=pad)
        ),
    )
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["appidacr"] == "2"
    assert claims["roles"] == FOUR


def test_assertion_signed_by_another_key_is_aadsts700027(
    emulator: EmulatorProcess, cert_app: tuple[str, SelfSignedCertificate]
) -> None:
    client_id, cert = cert_app
    other = make_certificate("impostor")
    assertion = _assertion(emulator, client_id, cert, key=other.key)
    _assert_aad_error(
        _post_token(emulator, _assertion_form(client_id, assertion)), 401, "invalid_client", 700027
    )


def test_assertion_with_unregistered_certificate_is_aadsts700027(
    emulator: EmulatorProcess, cert_app: tuple[str, SelfSignedCertificate]
) -> None:
    client_id, _ = cert_app
    other = make_certificate("unregistered")
    body = _assert_aad_error(
        _post_token(emulator, _assertion_form(client_id, _assertion(emulator, client_id, other))),
        401,
        "invalid_client",
        700027,
    )
    assert "key was not found" in body["error_description"]


def test_assertion_audience_is_checked(
    emulator: EmulatorProcess, cert_app: tuple[str, SelfSignedCertificate]
) -> None:
    client_id, cert = cert_app
    assertion = _assertion(
        emulator, client_id, cert, aud="https://login.microsoftonline.com/common/oauth2/v2.0/token"
    )
    _assert_aad_error(
        _post_token(emulator, _assertion_form(client_id, assertion)), 401, "invalid_client", 50012
    )


def test_assertion_audience_may_name_a_verified_domain(
    emulator: EmulatorProcess, cert_app: tuple[str, SelfSignedCertificate]
) -> None:
    client_id, cert = cert_app
    assertion = _assertion(
        emulator, client_id, cert, aud=f"{emulator.authority_host}/contoso.com/oauth2/v2.0/token"
    )
    assert _post_token(emulator, _assertion_form(client_id, assertion)).status_code == 200


def test_expired_assertion_is_aadsts700024(
    emulator: EmulatorProcess, cert_app: tuple[str, SelfSignedCertificate]
) -> None:
    client_id, cert = cert_app
    assertion = _assertion(emulator, client_id, cert, exp_delta=-30)
    _assert_aad_error(
        _post_token(emulator, _assertion_form(client_id, assertion)), 401, "invalid_client", 700024
    )


def test_token_lifetime_and_expiry_through_the_clock(emulator: EmulatorProcess) -> None:
    token = emulator.token()
    with emulator.client(headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get(f"{emulator.graph}/users").status_code == 200
        emulator.control("POST", "/clock", {"advanceSeconds": 3600})
        expired = client.get(f"{emulator.graph}/users")
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert expired.json()["error"]["message"] == "Access token has expired or is not yet valid."
