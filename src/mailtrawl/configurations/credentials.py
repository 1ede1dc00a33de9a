"""Sealing and opening mail-configuration credentials (never stored or shown in plain text)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from mailtrawl.configurations.schemas import (
    CertificateCredential,
    Credential,
    PfxCredential,
    SecretCredential,
)
from mailtrawl.errors import ConfigError
from mailtrawl.providers.graph.auth import ClientCertificate
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


def _from_pfx(cred: PfxCredential) -> ClientCertificate:
    try:
        data = base64.b64decode(cred.pfx_base64.get_secret_value(), validate=True)
    except binascii.Error:
        raise ConfigError("The PFX file must be sent base64-encoded.") from None
    password = cred.password.get_secret_value() if cred.password else None
    return ClientCertificate.from_pfx(data, password)


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
        certificate = ClientCertificate.from_pem(
            credential.private_key_pem.get_secret_value(), credential.certificate_pem
        )
    else:
        certificate = _from_pfx(credential)
    payload = {
        "kind": "certificate",
        "private_key_pem": certificate.private_key_pem,
        "certificate_pem": certificate.certificate_pem,
    }
    return SealedCredential(
        CredentialKind.CERTIFICATE,
        box.encrypt(json.dumps(payload), purpose=CREDENTIAL_PURPOSE),
        certificate.thumbprint[-4:].lower(),
        certificate.expires_at,
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
