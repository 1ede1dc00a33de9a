"""Test messages built in code: MIME with given headers, bodies and attachments, and archives."""

from __future__ import annotations

import io
import zipfile
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"
PE_HEAD = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200


def message(
    *,
    sender: str = "Alice Example <alice@partner.example>",
    to: str = "bob@contoso.com",
    subject: str = "Hello",
    text: str | None = "Hello Bob",
    html: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    attached_emails: tuple[bytes, ...] = (),
) -> bytes:
    """A MIME message; attachments are (file name, content type, bytes)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    for name, value in (headers or {}).items():
        msg[name] = value
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    for name, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    for raw in attached_emails:
        inner = message_from_bytes(raw, policy=policy.SMTP)
        msg.add_attachment(inner, filename="original.eml")
    return msg.as_bytes()


def zip_bytes(files: dict[str, bytes], *, encrypted: set[str] | None = None) -> bytes:
    """A zip archive; members named in `encrypted` get the encryption flag (as tools set it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    for name in encrypted or set():
        _flag_encrypted(data, name.encode())
    return bytes(data)


def _flag_encrypted(data: bytearray, name: bytes) -> None:
    # Set bit 0 of the general-purpose flags in the local and central headers for `name`.
    for signature, flag_offset, name_offset in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            if data[start + name_offset : start + name_offset + len(name)] == name:
                data[start + flag_offset] |= 1
            start += 4
