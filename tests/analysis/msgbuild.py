"""Builds genuine (minimal) Outlook .msg files: the MAPI property streams extract-msg reads,
inside a compound file from `cfb.build_cfb`."""

from __future__ import annotations

import struct

from tests.analysis.cfb import build_cfb


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def _properties(header: bytes, fixed: dict[int, int], variable: dict[int, int]) -> bytes:
    """A __properties_version1.0 stream: fixed-size values inline, variable ones by size."""
    out = bytearray(header)
    for tag, value in fixed.items():
        out += struct.pack("<IIQ", tag, 0x6, value)
    for tag, size in variable.items():
        out += struct.pack("<IIII", tag, 0x6, size, 0)
    return bytes(out)


def build_msg(
    *,
    subject: str,
    sender: str,
    to: str,
    body: str,
    headers: str = "",
    html: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
) -> bytes:
    """An Outlook message (IPM.Note) with optional transport headers and attachments."""
    strings = {
        0x001A001F: "IPM.Note",
        0x0037001F: subject,
        0x0C1F001F: sender,
        0x0042001F: sender,
        0x0E04001F: to,
        0x1000001F: body,
    }
    if headers:
        strings[0x007D001F] = headers
    files: dict[str, bytes] = {}
    variable: dict[int, int] = {}
    for tag, text in strings.items():
        data = _utf16(text)
        files[f"__substg1.0_{tag:08X}"] = data
        variable[tag] = len(data) + 2
    if html is not None:
        files["__substg1.0_10130102"] = html.encode("utf-8")
        variable[0x10130102] = len(html.encode("utf-8"))
    for index, (name, mimetype, data) in enumerate(attachments):
        storage = f"__attach_version1.0_#{index:08X}"
        files[f"{storage}/__substg1.0_37010102"] = data
        files[f"{storage}/__substg1.0_3707001F"] = _utf16(name)
        files[f"{storage}/__substg1.0_3704001F"] = _utf16(name[:8])
        files[f"{storage}/__substg1.0_370E001F"] = _utf16(mimetype)
        files[f"{storage}/__properties_version1.0"] = _properties(
            b"\0" * 8,
            {0x37050003: 1, 0x0E200003: len(data)},
            {0x37010102: len(data), 0x3707001F: len(_utf16(name)) + 2},
        )
    header = struct.pack("<8xIIII8x", 0, len(attachments), 0, len(attachments))
    files["__properties_version1.0"] = _properties(header, {}, variable)
    files["__nameid_version1.0/__substg1.0_00020102"] = b"\0" * 16
    files["__nameid_version1.0/__substg1.0_00030102"] = b""
    files["__nameid_version1.0/__substg1.0_00040102"] = b""
    return build_cfb(files)
