"""Sealing and opening mail-configuration credentials (never stored or shown in plain text)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mailtrawl.configurations.schemas import (
    CertificateCredential,
    Credential,
    PfxCredential,
    SecretCredential,
)
from mailtrawl.errors import ConfigError
from mailtrawl.storage.models import CREDENTIAL_PURPOSE, CredentialKind
from mailtrawl.storage.secrets import SecretBox, credential_hint


@dataclass(frozen=True)
class ClientCredential:
    """An opened credential, held in memory only for as long as a provider needs it."""

    kind: CredentialKind
    client_secret: str | None = None
    private_key_pem: str | None = None
    certificate_pem: str | None = None

    def __repr__(self) -> str:  # never the secret material
        return f"ClientCredential(kind={self.kind.value})"


@dataclass(frozen=True)
class SealedCredential:
    kind: CredentialKind
    ciphertext: bytes
    hint: str | None
    expires_at: datetime | None


def _certificate_parts(
    private_key_pem: str, certificate_pem: str
) -> tuple[str, str, x509.Certificate]:
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        raise ConfigError(
            "The certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----)."
        ) from None
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            "The private key is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)."
        ) from None
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ConfigError("The private key does not belong to the certificate.")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), cert


def _from_pfx(cred: PfxCredential) -> tuple[str, str, x509.Certificate]:
    try:
        data = base64.b64decode(cred.pfx_base64.get_secret_value(), validate=True)
    except binascii.Error:
        raise ConfigError("The PFX file must be sent base64-encoded.") from None
    password = cred.password.get_secret_value().encode() if cred.password else None
    try:
        key, cert, _extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        raise ConfigError(
            "The PFX file could not be opened: wrong password, or not a PKCS#12 file."
        ) from None
    if key is None or cert is None:
        raise ConfigError("The PFX file must hold both the certificate and its private key.")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), cert


def seal(box: SecretBox, credential: Credential) -> SealedCredential:
    """Validate and encrypt a credential; answers what may be stored and shown beside it."""
    if isinstance(credential, SecretCredential):
        secret = credential.client_secret.get_secret_value().strip()
        payload = {"kind": "secret", "client_secret": secret}
        return SealedCredential(
            CredentialKind.SECRET,
            box.encrypt(json.dumps(payload), purpose=CREDENTIAL_PURPOSE),
            credential_hint(secret),
            credential.expires_at,
        )
    if isinstance(credential, CertificateCredential):
        key_pem, cert_pem, cert = _certificate_parts(
            credential.private_key_pem.get_secret_value(), credential.certificate_pem
        )
    else:
        key_pem, cert_pem, cert = _from_pfx(credential)
    payload = {"kind": "certificate", "private_key_pem": key_pem, "certificate_pem": cert_pem}
    thumbprint = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - Entra names certificates by SHA-1 thumbprint
    return SealedCredential(
        CredentialKind.CERTIFICATE,
        box.encrypt(json.dumps(payload), purpose=CREDENTIAL_PURPOSE),
        thumbprint[-4:],
        cert.not_valid_after_utc,
    )


def open_credential(box: SecretBox, ciphertext: bytes) -> ClientCredential:
    text = box.decrypt_text(ciphertext, purpose=CREDENTIAL_PURPOSE)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict) or payload.get("kind") not in ("secret", "certificate"):
        # A bare value sealed by an older writer is a client secret.
        return ClientCredential(CredentialKind.SECRET, client_secret=text)
    if payload["kind"] == "secret":
        return ClientCredential(CredentialKind.SECRET, client_secret=payload["client_secret"])
    return ClientCredential(
        CredentialKind.CERTIFICATE,
        private_key_pem=payload["private_key_pem"],
        certificate_pem=payload["certificate_pem"],
    )
