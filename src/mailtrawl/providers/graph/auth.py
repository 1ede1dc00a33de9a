"""Access tokens for Microsoft Graph with msal: client secret or certificate, any cloud.

msal is synchronous and does network I/O (even at construction: OpenID discovery), so every
call runs in a worker thread, one at a time behind a lock. msal's own cache answers repeated
calls; a short in-memory fast path avoids a thread hop per Graph request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from requests.adapters import HTTPAdapter

from mailtrawl.errors import ConfigError, ProviderUnavailable
from mailtrawl.providers.errors import TokenRequestFailed

GRAPH_SCOPE_SUFFIX = "/.default"
# Seconds before expiry at which a cached token is no longer handed out (msal uses 300 too).
EXPIRY_MARGIN = 300.0


@dataclass(frozen=True, slots=True)
class CloudEndpoints:
    """Where to sign in and where Graph lives, and which CAs to trust for both."""

    name: str
    authority_host: str  # https://login.microsoftonline.com
    graph_endpoint: str  # https://graph.microsoft.com (no version)
    # A CA bundle, as a file path or as PEM text (a TLS-inspecting proxy, the emulator).
    ca_bundle_path: str | None = None
    ca_bundle_pem: str | None = None
    # Known clouds are validated by msal; custom hosts skip instance discovery.
    well_known: bool = True

    @property
    def scope(self) -> str:
        """The `.default` scope of the Graph resource in this cloud."""
        return _resource(self.graph_endpoint) + GRAPH_SCOPE_SUFFIX

    @property
    def graph_base(self) -> str:
        return self.graph_endpoint.rstrip("/") + "/v1.0"

    def ssl_context(self) -> ssl.SSLContext:
        """System trust plus the custom CA bundle, if any (for httpx)."""
        if self.ca_bundle_path or self.ca_bundle_pem:
            return ssl.create_default_context(cafile=self.ca_bundle_path, cadata=self.ca_bundle_pem)
        return ssl.create_default_context()


def _resource(graph_endpoint: str) -> str:
    match = re.match(r"^(https://[^/]+)", graph_endpoint.strip())
    if match is None:
        raise ConfigError("The Graph endpoint must be an https:// URL.")
    host = match.group(1)
    # Tokens for a custom endpoint (the emulator, a proxy) are still for Graph's resource id.
    return host if host in _KNOWN_GRAPH_HOSTS else "https://graph.microsoft.com"


CLOUDS: dict[str, CloudEndpoints] = {
    "global": CloudEndpoints(
        "global", "https://login.microsoftonline.com", "https://graph.microsoft.com"
    ),
    "usgov-high": CloudEndpoints(
        "usgov-high", "https://login.microsoftonline.us", "https://graph.microsoft.us"
    ),
    "usgov-dod": CloudEndpoints(
        "usgov-dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"
    ),
    "china": CloudEndpoints(
        "china",
        "https://login.partner.microsoftonline.cn",
        "https://microsoftgraph.chinacloudapi.cn",
    ),
}
_KNOWN_GRAPH_HOSTS = frozenset(c.graph_endpoint for c in CLOUDS.values())


def cloud_endpoints(
    cloud: str,
    *,
    authority_host: str | None = None,
    graph_endpoint: str | None = None,
    ca_bundle_path: str | None = None,
    ca_bundle_pem: str | None = None,
) -> CloudEndpoints:
    """The endpoints of a named cloud, or of a custom one (all three custom fields apply)."""
    if cloud == "custom":
        if not authority_host or not graph_endpoint:
            raise ConfigError("A custom cloud needs an authority host and a Graph endpoint.")
        for label, url in (("authority host", authority_host), ("Graph endpoint", graph_endpoint)):
            if not url.startswith("https://"):
                raise ConfigError(f"The {label} must be an https:// URL (msal accepts only TLS).")
        graph = graph_endpoint.rstrip("/")
        graph = graph[: -len("/v1.0")] if graph.endswith("/v1.0") else graph
        return CloudEndpoints(
            "custom",
            authority_host.rstrip("/"),
            graph,
            ca_bundle_path=ca_bundle_path,
            ca_bundle_pem=ca_bundle_pem,
            well_known=False,
        )
    try:
        known = CLOUDS[cloud]
    except KeyError:
        raise ConfigError(
            f"Unknown cloud '{cloud}'; use one of {', '.join([*CLOUDS, 'custom'])}."
        ) from None
    if ca_bundle_path or ca_bundle_pem:
        return CloudEndpoints(
            known.name,
            known.authority_host,
            known.graph_endpoint,
            ca_bundle_path=ca_bundle_path,
            ca_bundle_pem=ca_bundle_pem,
        )
    return known


# Credentials ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientSecret:
    value: str = field(repr=False)
    # When Entra said the secret expires (shown when it was created), if known.
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A certificate credential: PEM private key (unencrypted PKCS#8) and PEM certificate."""

    private_key_pem: str = field(repr=False)
    certificate_pem: str

    @property
    def thumbprint(self) -> str:
        """The SHA-1 thumbprint Entra shows for the certificate (upper-case hex)."""
        cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra names certificates by SHA-1 thumbprint

    @property
    def expires_at(self) -> datetime:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode()).not_valid_after_utc

    @classmethod
    def from_pfx(cls, pfx: bytes, password: str | bytes | None = None) -> ClientCertificate:
        """Open a PKCS#12 (.pfx) file into PEM key and certificate."""
        secret = password.encode() if isinstance(password, str) else password
        try:
            key, cert, _chain = pkcs12.load_key_and_certificates(pfx, secret)
        except ValueError:
            raise ConfigError(
                "The PFX file could not be opened: wrong password, or not a PKCS#12 file."
            ) from None
        if key is None or cert is None:
            raise ConfigError("The PFX file must hold both the certificate and its private key.")
        return cls._from_objects(key, cert)

    @classmethod
    def from_pem(
        cls, private_key_pem: str, certificate_pem: str, password: str | bytes | None = None
    ) -> ClientCertificate:
        """Check that the key matches the certificate; normalise both to PEM."""
        secret = password.encode() if isinstance(password, str) else password
        try:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=secret)
        except (ValueError, TypeError):
            raise ConfigError(
                "The private key is not a PEM private key (or its password is wrong)."
            ) from None
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        except ValueError:
            raise ConfigError("The certificate is not a PEM certificate.") from None
        return cls._from_objects(key, cert)

    @classmethod
    def _from_objects(cls, key: Any, cert: x509.Certificate) -> ClientCertificate:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(
            serialization.Encoding.DER, spki
        ) != cert.public_key().public_bytes(serialization.Encoding.DER, spki):
            raise ConfigError("The private key does not belong to the certificate.")
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(key_pem, cert.public_bytes(serialization.Encoding.PEM).decode())


Credential = ClientSecret | ClientCertificate


# Tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str = field(repr=False)
    expires_on: float  # epoch seconds
    source: str = "identity_provider"  # or "cache"

    @property
    def roles(self) -> tuple[str, ...]:
        """The application permissions granted (and consented) in this token."""
        roles = token_claims(self.value).get("roles") or ()
        return tuple(str(r) for r in roles)


def token_claims(token: str) -> dict[str, Any]:
    """The JWT payload, decoded without verification: only to read what was granted."""
    try:
        payload = token.split(".")[1]
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(data)
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


_AADSTS = re.compile(r"AADSTS(\d+)")
_TRAILER = re.compile(r"\s*(Trace ID:|Correlation ID:|Timestamp:).*$", re.DOTALL)


def auth_error(result: Mapping[str, Any]) -> TokenRequestFailed:
    """An msal error dict as a typed error carrying the first AADSTS code."""
    codes = result.get("error_codes") or []
    description = str(result.get("error_description") or "")
    code: int | None = int(codes[0]) if codes else None
    if code is None:
        match = _AADSTS.search(description)
        code = int(match.group(1)) if match else None
    text = _TRAILER.sub("", description).strip() or str(result.get("error") or "unknown error")
    return TokenRequestFailed(
        f"Microsoft Entra ID refused the sign-in: {text}",
        aadsts=code,
        error=str(result.get("error") or "") or None,
        description=text,
        correlation_id=result.get("correlation_id"),
    )


def _reason(exc: Exception) -> str:
    """The innermost reason of a requests error, without URLs full of parameters."""
    text = str(exc.args[0] if exc.args else exc)
    match = re.search(r"\((?:Caused by )?\w+\((.*)\)\)\s*$", text)
    return (match.group(1) if match else text)[:300]


class _ContextAdapter(HTTPAdapter):
    """A requests adapter that verifies TLS with a given SSL context (a PEM CA bundle)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


def msal_session(cloud: CloudEndpoints) -> requests.Session:
    """The requests session msal uses: no environment (REQUESTS_CA_BUNDLE would override
    `verify`, proxies would leak), and the cloud's CA bundle."""
    session = requests.Session()
    session.trust_env = False
    if cloud.ca_bundle_path:
        session.verify = cloud.ca_bundle_path
    elif cloud.ca_bundle_pem:
        session.mount("https://", _ContextAdapter(cloud.ssl_context()))
    return session


class TokenSource:
    """Gets Graph access tokens for one app registration in one tenant."""

    def __init__(
        self,
        *,
        tenant: str,
        client_id: str,
        credential: Credential,
        cloud: CloudEndpoints,
        timeout: float = 30.0,
    ) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.credential = credential
        self.cloud = cloud
        self.timeout = timeout
        self._app: Any = None
        self._session: requests.Session | None = None
        self._current: AccessToken | None = None
        self._async_lock = asyncio.Lock()
        self._thread_lock = threading.Lock()
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"TokenSource(tenant={self.tenant!r}, client_id={self.client_id!r})"

    @property
    def authority(self) -> str:
        return f"{self.cloud.authority_host}/{self.tenant}"

    async def token(self) -> AccessToken:
        """A valid token: the one in hand while it has 5 minutes left, else msal's."""
        current = self._current
        if current is not None and current.expires_on - time.time() > EXPIRY_MARGIN:
            return current
        async with self._async_lock:
            current = self._current
            if current is not None and current.expires_on - time.time() > EXPIRY_MARGIN:
                return current
            self._current = await asyncio.to_thread(self._acquire, False)
            return self._current

    async def refresh(self, stale: str | None = None) -> AccessToken:
        """A new token from the identity platform, unless someone already replaced `stale`."""
        async with self._async_lock:
            current = self._current
            if current is not None and stale is not None and current.value != stale:
                return current
            self._current = await asyncio.to_thread(self._acquire, True)
            return self._current

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self._app = None

    # Worker-thread side -----------------------------------------------------------------

    def _client_credential(self) -> str | dict[str, str]:
        if isinstance(self.credential, ClientSecret):
            return self.credential.value
        # A public certificate without a thumbprint makes msal sign with PS256 and send
        # x5t#S256, as Entra's current documentation asks.
        return {
            "private_key": self.credential.private_key_pem,
            "public_certificate": self.credential.certificate_pem,
        }

    def _application(self) -> Any:
        import msal  # imported here: loading it costs ~100 ms and only token use needs it

        if self._app is None:
            self._session = msal_session(self.cloud)
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._client_credential(),
                    authority=self.authority,
                    http_client=self._session,
                    timeout=self.timeout,
                    instance_discovery=False if not self.cloud.well_known else None,
                )
            except ValueError as exc:
                # msal's OpenID discovery failed: Entra answers 400 for an unknown tenant.
                self._session.close()
                self._session = None
                match = _AADSTS.search(str(exc))
                code = int(match.group(1)) if match else 90002
                raise TokenRequestFailed(
                    f"Tenant '{self.tenant}' was not found at {self.cloud.authority_host}.",
                    aadsts=code,
                    error="invalid_tenant",
                    description=str(exc).split("\n")[0],
                ) from None
        return self._app

    def _acquire(self, force: bool) -> AccessToken:
        try:
            return self._acquire_unguarded(force)
        except requests.exceptions.SSLError as exc:
            raise ProviderUnavailable(
                f"The TLS certificate of {self.cloud.authority_host} is not trusted: {_reason(exc)}. "
                "Behind a TLS-inspecting proxy, add its CA bundle to the configuration."
            ) from None
        except requests.RequestException as exc:
            raise ProviderUnavailable(
                f"Cannot reach the sign-in service at {self.cloud.authority_host}: "
                f"{_reason(exc)}. Check the network, firewall and proxy."
            ) from None

    def _acquire_unguarded(self, force: bool) -> AccessToken:
        import msal

        with self._thread_lock:
            app = self._application()
            if force:
                cache = app.token_cache
                for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(item)
            try:
                result = app.acquire_token_for_client([self.cloud.scope])
            except msal.exceptions.MsalServiceError as exc:  # 5xx from the token endpoint
                raise ProviderUnavailable(
                    f"The sign-in service at {self.cloud.authority_host} failed: {exc}; "
                    "try again in a few minutes."
                ) from None
            if "access_token" not in result:
                raise auth_error(result)
            if result.get("token_source") != "cache":
                self.requests_made += 1
            expires_in = float(result.get("expires_in") or 0)
            return AccessToken(
                str(result["access_token"]),
                time.time() + expires_in,
                str(result.get("token_source") or "identity_provider"),
            )
