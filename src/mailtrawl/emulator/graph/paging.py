"""Opaque paging tokens: `$skiptoken` for the directory, signed so clients cannot forge them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from mailtrawl.emulator.errors import GraphError


def encode_token(secret: bytes, payload: dict[str, Any]) -> str:
    body = orjson.dumps(payload)
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def decode_token(secret: bytes, token: str) -> dict[str, Any] | None:
    """The payload of a token this server issued, or None when it is unknown or altered."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    mac, body = raw[:12], raw[12:]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()[:12]):
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def skiptoken_offset(secret: bytes, token: str | None) -> int:
    if token is None:
        return 0
    payload = decode_token(secret, token)
    if payload is None or not isinstance(payload.get("o"), int):
        raise GraphError(
            400,
            "Directory_ExpiredPageToken",
            "The specified page token value has expired and can no longer be included in your request.",
        )
    return int(payload["o"])
