"""The Microsoft identity platform v2 endpoints an app-only client uses.

OIDC discovery, instance discovery, the signing keys, and the token endpoint for the
client-credentials grant with a client secret (form body or HTTP Basic) or a certificate
client assertion (RS256/PS256, `x5t` or `x5t#S256`). Errors carry the AADSTS code, text and
HTTP status Entra ID answers with.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from mailtrawl.emulator.errors import AadError
from mailtrawl.emulator.runtime import EmulatorState
from mailtrawl.emulator.state import App, Tenant

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DNS = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}$")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def resolve_tenant(state: EmulatorState, segment: str) -> Tenant:
    """The tenant addressed by GUID or verified domain, or the AADSTS error Entra gives."""
    tenant = state.tenant
    if segment.lower() == tenant.id.lower() or tenant.matches_domain(segment):
        return tenant
    if _GUID.match(segment) or _DNS.match(segment):
        raise AadError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and "
            "are signing into the correct cloud. Check with your subscription administrator, this "
            "may happen if there are no active subscriptions for the tenant.",
        )
    raise AadError(
        400,
        "invalid_request",
        900023,
        f"Specified tenant identifier '{segment}' is neither a valid DNS name, nor a valid "
        "external domain.",
    )


def openid_configuration(state: EmulatorState, base: str, segment: str) -> dict[str, Any]:
    tenant = resolve_tenant(state, segment)
    tid = tenant.id
    return {
        "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{tid}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
        "kerberos_endpoint": f"{base}/{tid}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


def instance_discovery(base: str) -> dict[str, Any]:
    host = urlsplit(base).netloc
    return {
        "tenant_discovery_endpoint": f"{base}/common/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }


def jwks(state: EmulatorState) -> dict[str, Any]:
    public = state.signing_key.public_key()
    numbers = public.public_numbers()

    def b64(n: int) -> str:
        return (
            base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big"))
            .decode()
            .rstrip("=")
        )

    return {
        "keys": [
            {
                "kty": "RSA",
                "use": "sig",
                "kid": state.key_id,
                "x5t": state.key_id,
                "n": b64(numbers.n),
                "e": b64(numbers.e),
            }
        ]
    }


def _unpad(value: str) -> str:
    return value.strip().rstrip("=").replace("+", "-").replace("/", "_")


def _invalid_secret(app: App) -> AadError:
    return AadError(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        f"client secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
    )


def _check_secret(state: EmulatorState, app: App, presented: str) -> None:
    matching = [s for s in app.secrets if s.value == presented]
    if not matching:
        raise _invalid_secret(app)
    now = state.now()
    if all(s.expires <= now for s in matching):
        raise AadError(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{app.client_id}' are expired. Visit the "
            "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or "
            "consider using certificate credentials for added security: https://aka.ms/certCreds.",
        )


def _check_assertion(
    state: EmulatorState, app: App, assertion: str, token_endpoint_paths: set[str]
) -> None:
    bad_signature = AadError(
        401, "invalid_client", 700027, "Client assertion failed signature validation."
    )
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise AadError(
            401,
            "invalid_client",
            50027,
            f"JWT token is invalid or malformed. ({type(exc).__name__})",
        ) from exc
    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        raise bad_signature
    thumb_s256 = header.get("x5t#S256")
    thumb_s1 = header.get("x5t")
    cert = None
    for candidate in app.certificates:
        if (isinstance(thumb_s256, str) and _unpad(thumb_s256) == candidate.thumbprint_sha256) or (
            isinstance(thumb_s1, str) and _unpad(thumb_s1) == candidate.thumbprint_sha1
        ):
            cert = candidate
            break
    if cert is None:
        shown = thumb_s256 or thumb_s1 or ""
        raise AadError(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{shown}']",
        )
    public_key = x509.load_pem_x509_certificate(cert.pem.encode()).public_key()
    if not isinstance(public_key, RSAPublicKey):
        raise bad_signature
    try:
        claims = jwt.decode(
            assertion,
            key=public_key,
            algorithms=[alg],
            options={
                "verify_exp": False,
                "verify_aud": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise bad_signature from exc
    except jwt.PyJWTError as exc:
        raise AadError(401, "invalid_client", 50027, "JWT token is invalid or malformed.") from exc
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise AadError(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if not any(
        isinstance(a, str) and urlsplit(a).path.rstrip("/").lower() in token_endpoint_paths
        for a in audiences
    ):
        raise AadError(
            401,
            "invalid_client",
            50012,
            "Client assertion audience claim does not match Realm issuer.",
        )
    now = state.epoch()
    exp = claims.get("exp")
    nbf = claims.get("nbf", 0)
    if (
        not isinstance(exp, int | float)
        or not isinstance(nbf, int | float)
        or exp <= now
        or nbf > now + 300
    ):
        raise AadError(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}, expiry time of assertion "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(exp if isinstance(exp, int | float) else 0))}.",
        )


def _parse_basic(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote(user.replace("+", " ")), unquote(password.replace("+", " "))


def issue_token(
    state: EmulatorState, segment: str, form_body: bytes, authorization: str | None
) -> dict[str, Any]:
    """Validate a client-credentials token request and answer a signed access token."""
    tenant = resolve_tenant(state, segment)
    state.stats.token_requests += 1
    try:
        form = {k: v[0] for k, v in parse_qs(form_body.decode(), keep_blank_values=True).items()}
    except UnicodeDecodeError as exc:
        raise AadError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ) from exc
    basic = _parse_basic(authorization) if authorization else None
    grant_type = form.get("grant_type")
    if not grant_type:
        raise AadError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        )
    if grant_type != "client_credentials":
        raise AadError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )
    client_id = form.get("client_id") or (basic[0] if basic else None)
    if client_id:
        state.stats.token_requests_by_app[client_id.lower()] += 1
    if not client_id:
        raise AadError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    app = tenant.apps.get(client_id.lower()) or tenant.apps.get(client_id)
    if app is None:
        raise AadError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant.display_name}'. This can happen if the application has not been installed by "
            "the administrator of the tenant or consented to by any user in the tenant. You may have "
            "sent your authentication request to the wrong tenant.",
        )
    secret = form.get("client_secret") or (basic[1] if basic else None)
    assertion = form.get("client_assertion")
    if assertion:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise AadError(
                400,
                "invalid_request",
                50027,
                "Invalid JWT token. The client_assertion_type parameter must be "
                f"'{ASSERTION_TYPE}'.",
            )
        token_paths = {f"/{tenant.id}/oauth2/v2.0/token".lower()} | {
            f"/{d}/oauth2/v2.0/token".lower() for d in tenant.domains
        }
        _check_assertion(state, app, assertion, token_paths)
        appidacr = "2"
    elif secret:
        _check_secret(state, app, secret)
        appidacr = "1"
    else:
        raise AadError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    scope = form.get("scope", "")
    scopes = scope.split()
    if not scopes:
        raise AadError(
            400,
            "invalid_scope",
            70011,
            "The provided request must include a 'scope' input parameter.",
        )
    valid = {
        f"{GRAPH_RESOURCE}/.default",
        f"{GRAPH_APP_ID}/.default",
        f"{GRAPH_RESOURCE}//.default",
    }
    if len(scopes) != 1 or scopes[0].lower() not in valid:
        raise AadError(
            400,
            "invalid_scope",
            70011,
            f"The provided value for the input parameter 'scope' is not valid. The scope {scope} is "
            "not valid. For the client credentials grant the scope must be the resource identifier "
            "suffixed with '/.default', for example 'https://graph.microsoft.com/.default'.",
        )
    return mint_access_token(state, tenant, app, appidacr)


def mint_access_token(
    state: EmulatorState, tenant: Tenant, app: App, appidacr: str
) -> dict[str, Any]:
    now = int(state.epoch())
    lifetime = state.settings.token_lifetime_seconds
    claims: dict[str, Any] = {
        "aud": GRAPH_RESOURCE,
        "iss": f"https://sts.windows.net/{tenant.id}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        # `aio` is opaque in Entra's tokens; here it carries the revocation generation.
        "aio": f"{state.token_generation}.{base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('=')}",
        "app_displayname": app.display_name,
        "appid": app.client_id,
        "appidacr": appidacr,
        "idp": f"https://sts.windows.net/{tenant.id}/",
        "idtyp": "app",
        "oid": app.object_id,
        "sub": app.object_id,
        "tid": tenant.id,
        "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "ver": "1.0",
        "xms_tcdt": 1600000000,
    }
    roles = app.granted_roles()
    if roles:
        claims["roles"] = roles
    token = jwt.encode(
        claims,
        state.signing_key,
        algorithm="RS256",
        headers={"typ": "JWT", "x5t": state.key_id, "kid": state.key_id},
    )
    return {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }
