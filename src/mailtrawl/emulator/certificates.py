"""App certificates as Entra keeps them: the public PEM and its SHA-1 and SHA-256 thumbprints."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mailtrawl.emulator.state import Certificate


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def certificate_from_pem(
    pem: str | bytes, *, cert_id: str | None = None, expires: datetime | None = None
) -> Certificate:
    """Raises ValueError when `pem` is not a PEM certificate."""
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    return Certificate(
        id=cert_id or str(uuid.uuid4()),
        pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        thumbprint_sha1=_b64url(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - Entra's x5t is SHA-1 by definition
        thumbprint_sha256=_b64url(cert.fingerprint(hashes.SHA256())),
        expires=expires or cert.not_valid_after_utc,
    )
