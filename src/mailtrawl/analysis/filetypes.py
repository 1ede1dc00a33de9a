"""What a file really is, from its first bytes (magic numbers), whatever its name claims.

A small table of our own for the types that matter when judging an attachment: executables,
archives and disk images, Office containers, PDF, HTML and scripts. Only the head of the data
is read (and, for ISO 9660 and VHD, two fixed offsets), so sniffing is constant-time.
"""

from __future__ import annotations

# Sniffed types, as MIME types where one is registered.
PE = "application/x-dosexec"
ELF = "application/x-elf"
MACHO = "application/x-mach-binary"
ZIP = "application/zip"
OOXML = "application/vnd.openxmlformats-officedocument"
OLE2 = "application/x-ole-storage"
PDF = "application/pdf"
RAR = "application/vnd.rar"
SEVEN_ZIP = "application/x-7z-compressed"
ISO = "application/x-iso9660-image"
VHD = "application/x-vhd"
VHDX = "application/x-vhdx"
HTML = "text/html"
SVG = "image/svg+xml"
SHELL_SCRIPT = "text/x-shellscript"
LNK = "application/x-ms-shortcut"
ONENOTE = "application/onenote"
CAB = "application/vnd.ms-cab-compressed"
GZIP = "application/gzip"
BZIP2 = "application/x-bzip2"
XZ = "application/x-xz"
TAR = "application/x-tar"
RTF = "text/rtf"
EMAIL = "message/rfc822"
PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
TEXT = "text/plain"
BINARY = "application/octet-stream"

EXECUTABLES = frozenset({PE, ELF, MACHO})
ARCHIVES = frozenset({ZIP, RAR, SEVEN_ZIP, CAB, GZIP, BZIP2, XZ, TAR})
DISK_IMAGES = frozenset({ISO, VHD, VHDX})

# Extensions Windows runs, or hands to a script host, when the file is opened.
EXECUTABLE_EXTENSIONS = frozenset(
    {"exe", "scr", "com", "pif", "dll", "cpl", "msi", "msp", "msix", "appx", "jar", "gadget",
     "application", "appref-ms", "reg", "sys", "drv", "ocx", "elf", "bin", "run", "apk", "app"}
)  # fmt: skip
SCRIPT_EXTENSIONS = frozenset(
    {"js", "jse", "vbs", "vbe", "ps1", "psm1", "psd1", "bat", "cmd", "hta", "wsf", "wsh",
     "wsc", "sct", "sh", "py", "pl", "vb", "mjs", "xll", "scf", "url", "iqy", "slk", "settingcontent-ms"}
)  # fmt: skip
HTML_EXTENSIONS = frozenset({"htm", "html", "xhtml", "shtml", "mht", "mhtml", "svg", "xht"})
DISK_IMAGE_EXTENSIONS = frozenset({"iso", "img", "vhd", "vhdx", "udf", "dmg"})
ARCHIVE_EXTENSIONS = frozenset(
    {"zip", "rar", "7z", "cab", "gz", "tgz", "bz2", "xz", "tar", "ace", "arj", "lzh", "z", "zipx"}
)
MACRO_EXTENSIONS = frozenset(
    {"docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppsm", "sldm"}
)
DOCUMENT_EXTENSIONS = frozenset(
    {"pdf", "doc", "docx", "docm", "xls", "xlsx", "xlsm", "ppt", "pptx", "rtf", "txt", "csv",
     "odt", "ods", "jpg", "jpeg", "png", "gif", "mp3", "mp4", "wav", "html", "htm", "zip"}
)  # fmt: skip

_ONENOTE_MAGIC = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3")
_LNK_MAGIC = bytes.fromhex("4c0000000114020000000000c000000000000046")
_HTML_OPENERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<form",
                 b"<meta", b"<iframe", b"<div", b"<table", b"<a ", b"<p>", b"<title")  # fmt: skip
_HEAD = 4_096


def sniff(data: bytes) -> str:
    """The type the bytes are, as a MIME type; BINARY when none of ours matches."""
    head = data[:_HEAD]
    if head.startswith(b"MZ"):
        return PE
    if head.startswith(b"\x7fELF"):
        return ELF
    if head[:4] in (
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
    ):
        return MACHO
    if head[:4] == b"\xca\xfe\xba\xbe" and len(head) >= 8 and head[7] < 40:
        return MACHO  # a fat binary; Java classes share the magic but have a version >= 45 here
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return ZIP
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return OLE2
    if b"%PDF-" in head[:1024]:
        return PDF  # readers accept the header anywhere in the first kilobyte
    if head.startswith(b"Rar!\x1a\x07"):
        return RAR
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return SEVEN_ZIP
    if head.startswith(b"MSCF"):
        return CAB
    if head.startswith(b"\x1f\x8b"):
        return GZIP
    if head.startswith(b"BZh"):
        return BZIP2
    if head.startswith(b"\xfd7zXZ\x00"):
        return XZ
    if head.startswith(_LNK_MAGIC):
        return LNK
    if head.startswith(_ONENOTE_MAGIC):
        return ONENOTE
    if head.startswith(b"{\\rt"):
        return RTF
    if head.startswith(b"\x89PNG"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith(b"vhdxfile"):
        return VHDX
    if head.startswith(b"conectix") or data[-512:].startswith(b"conectix"):
        return VHD  # a fixed VHD keeps its footer in the last sector
    if any(data[offset : offset + 5] == b"CD001" for offset in (0x8001, 0x8801, 0x9001)):
        return ISO
    if len(data) > 262 and data[257:262] == b"ustar":
        return TAR
    return _sniff_text(head)


def _sniff_text(head: bytes) -> str:
    if b"\x00" in head:
        return BINARY
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"#!"):
        return SHELL_SCRIPT
    if text.startswith(_HTML_OPENERS) or (text.startswith(b"<") and b"<html" in text):
        return HTML
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in text:
        return SVG
    if _looks_like_email(text):
        return EMAIL
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # the head may cut a character in two at its end
            return BINARY
    return TEXT


def _looks_like_email(text: bytes) -> bool:
    first_lines = text[:1024].split(b"\n", 8)[:8]
    names = {line.partition(b":")[0].strip() for line in first_lines if b":" in line}
    return len(names & {b"from", b"to", b"subject", b"received", b"date", b"message-id"}) >= 2


def type_family(mime_type: str) -> str:
    """A coarse family used to compare a declared type with a sniffed one."""
    mime_type = mime_type.lower().partition(";")[0].strip()
    if mime_type in EXECUTABLES or mime_type in {
        "application/x-msdownload", "application/x-msdos-program", "application/x-executable",
        "application/vnd.microsoft.portable-executable", "application/x-dosexec",
    }:  # fmt: skip
        return "executable"
    if mime_type in ARCHIVES or mime_type in {
        "application/x-zip-compressed", "application/x-rar-compressed", "application/x-rar",
        "application/x-gzip", "application/x-compressed", "application/x-zip",
    }:  # fmt: skip
        return "archive"
    if mime_type in DISK_IMAGES or mime_type in {
        "application/x-iso-image",
        "application/x-cd-image",
    }:
        return "disk-image"
    if mime_type in (LNK, "application/x-mslink"):
        return "shortcut"
    if mime_type in (HTML, "application/xhtml+xml", SVG):
        return "html"
    if mime_type == PDF:
        return "pdf"
    if mime_type.startswith("image/"):
        return "image"
    if mime_type.startswith(("audio/", "video/")):
        return "media"
    if mime_type in (OLE2, OOXML, RTF) or "officedocument" in mime_type or "ms-" in mime_type:
        return "office"
    if mime_type.startswith("text/"):
        return "text"
    if mime_type in (EMAIL, "message/global"):
        return "email"
    return "other"
