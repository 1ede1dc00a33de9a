"""Attachment risk: executables, scripts, HTML (with forms or scripts), disk images, shortcuts,
OneNote, macro documents, encrypted archives, double extensions, a sniffed type that
contradicts the name or the declared type, bidirectional-text tricks in names, and archives
whose inspection stopped at a decompression-bomb limit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from mailtrawl.analysis import filetypes
from mailtrawl.analysis.engines.base import indicator, shorten
from mailtrawl.analysis.htmlscan import scan_html
from mailtrawl.analysis.model import (
    AnalysisContext,
    ExtractedAttachment,
    Indicator,
    ParsedReport,
    Verdict,
)
from mailtrawl.matching.attachments import extension

NAME = "attachments"
MAX_ATTACHMENTS = 300
MAX_HTML_SCAN = 2 * 1024 * 1024
# Right-to-left override and friends: "invoice\u202efdp.exe" displays as "invoiceexe.pdf".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_DECOY_EXTENSIONS = filetypes.DOCUMENT_EXTENSIONS - {"html", "htm", "zip"}
# The family a harmless-looking extension promises.
_CLAIMED_FAMILY = {
    "pdf": "pdf", "doc": "office", "docx": "office", "xls": "office", "xlsx": "office",
    "ppt": "office", "pptx": "office", "rtf": "office", "odt": "office", "ods": "office",
    "txt": "text", "csv": "text", "jpg": "image", "jpeg": "image", "png": "image",
    "gif": "image", "mp3": "media", "mp4": "media", "wav": "media",
}  # fmt: skip
_RUNNABLE = filetypes.EXECUTABLE_EXTENSIONS | filetypes.SCRIPT_EXTENSIONS | {"lnk", "hta"}


class AttachmentRiskEngine:
    """Offline checks of every attachment, archive member and attached email's files."""

    name = NAME
    online = False

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        found: list[Indicator] = []
        for attachment in report.attachments[:MAX_ATTACHMENTS]:
            found.extend(attachment_indicators(attachment))
        return found


def attachment_indicators(attachment: ExtractedAttachment) -> Iterator[Indicator]:
    """Every finding about one attachment."""
    name = attachment.name
    label = _label(attachment)
    ext = extension(name)
    sniffed = attachment.sniffed_type
    value = attachment.sha256 or name

    def found(kind: str, verdict: Verdict, score: int, evidence: str) -> Indicator:
        return indicator(NAME, kind, verdict, score, f"{label} {evidence}", value)

    if any(char in _BIDI_CONTROLS for char in name):
        yield found(
            "attachment.bidi_name",
            Verdict.MALICIOUS,
            85,
            "hides its real extension with a right-to-left override character",
        )
    stem_ext = extension(name[: -len(ext) - 1]) if ext else ""
    if ext in _RUNNABLE and stem_ext in _DECOY_EXTENSIONS:
        yield found(
            "attachment.double_extension",
            Verdict.MALICIOUS,
            90,
            f"poses as a .{stem_ext} file but is a .{ext}",
        )
    if sniffed in filetypes.EXECUTABLES:
        yield found(
            "attachment.executable",
            Verdict.MALICIOUS,
            85,
            f"is a program ({sniffed}) whatever its name says",
        )
    elif ext in filetypes.EXECUTABLE_EXTENSIONS:
        yield found(
            "attachment.executable_name",
            Verdict.SUSPICIOUS,
            50,
            f"has a program's extension (.{ext})",
        )
    if ext in filetypes.SCRIPT_EXTENSIONS or sniffed == filetypes.SHELL_SCRIPT:
        yield found(
            "attachment.script",
            Verdict.MALICIOUS,
            80,
            f"is a script (.{ext or 'shebang'}) that runs when opened",
        )
    if sniffed == filetypes.LNK or ext == "lnk":
        yield found(
            "attachment.shortcut",
            Verdict.MALICIOUS,
            80,
            "is a Windows shortcut (.lnk), a common malware launcher",
        )
    if sniffed in filetypes.DISK_IMAGES or ext in filetypes.DISK_IMAGE_EXTENSIONS:
        yield found(
            "attachment.disk_image",
            Verdict.SUSPICIOUS,
            50,
            "is a disk image, often used to slip malware past mark-of-the-web",
        )
    if sniffed == filetypes.ONENOTE or ext in ("one", "onepkg"):
        yield found(
            "attachment.onenote",
            Verdict.SUSPICIOUS,
            50,
            "is a OneNote notebook, often used to embed malware",
        )
    if attachment.has_macros:
        yield found(
            "attachment.macros", Verdict.SUSPICIOUS, 60, "is an Office document with VBA macros"
        )
    elif ext in filetypes.MACRO_EXTENSIONS:
        yield found(
            "attachment.macro_extension",
            Verdict.SUSPICIOUS,
            35,
            f"has a macro-enabled Office extension (.{ext})",
        )
    if attachment.encrypted:
        what = "an encrypted Office document" if "ms-" in sniffed else "an encrypted archive"
        yield found(
            "attachment.encrypted",
            Verdict.SUSPICIOUS,
            45,
            f"is {what}, which scanners cannot look into",
        )
    if sniffed in (filetypes.RAR, filetypes.SEVEN_ZIP, filetypes.CAB) or ext in (
        "ace",
        "arj",
        "7z",
        "rar",
    ):
        yield found(
            "attachment.uncommon_archive",
            Verdict.UNDETECTED,
            20,
            "is an archive that was not opened (7z, RAR, CAB, ACE)",
        )
    yield from _html(attachment, ext, found)
    yield from _mismatch(attachment, ext, found)
    if any("decompression bomb" in note for note in attachment.warnings):
        yield found(
            "attachment.archive_bomb",
            Verdict.SUSPICIOUS,
            30,
            "looks like a decompression bomb; reading stopped at the limit",
        )


class _Found(Protocol):
    def __call__(self, kind: str, verdict: Verdict, score: int, evidence: str) -> Indicator: ...


def _html(attachment: ExtractedAttachment, ext: str, found: _Found) -> Iterator[Indicator]:
    is_html = (
        attachment.sniffed_type in (filetypes.HTML, filetypes.SVG)
        or ext in filetypes.HTML_EXTENSIONS
    )
    if not is_html:
        return
    features = scan_html((attachment.content or b"")[:MAX_HTML_SCAN].decode("utf-8", "replace"))
    if features.password_inputs or features.forms:
        yield found(
            "attachment.html_form",
            Verdict.PHISHING,
            65,
            "is an HTML page with a form"
            + (" asking for a password" if features.password_inputs else ""),
        )
    elif features.scripts or features.meta_refresh:
        yield found(
            "attachment.html_script",
            Verdict.SUSPICIOUS,
            50,
            "is an HTML page that runs scripts or redirects when opened",
        )
    else:
        yield found(
            "attachment.html",
            Verdict.SUSPICIOUS,
            30,
            "is an HTML page, opened in the browser outside mail protection",
        )


def _mismatch(attachment: ExtractedAttachment, ext: str, found: _Found) -> Iterator[Indicator]:
    sniffed_family = filetypes.type_family(attachment.sniffed_type)
    if sniffed_family not in ("executable", "archive", "html", "disk-image", "shortcut"):
        return  # only a risky reality hiding behind a harmless claim matters
    declared_family = filetypes.type_family(attachment.declared_type)
    claims = []
    claimed_family = _CLAIMED_FAMILY.get(ext)
    if claimed_family and claimed_family != sniffed_family:
        claims.append(f"its name says .{ext}")
    if declared_family not in (sniffed_family, "other", "text") and attachment.declared_type:
        claims.append(f"it is declared as {attachment.declared_type}")
    if claims:
        yield found(
            "attachment.type_mismatch",
            Verdict.SUSPICIOUS,
            55 if sniffed_family == "executable" else 40,
            f"is really {attachment.sniffed_type} although {' and '.join(claims)}",
        )


def _label(attachment: ExtractedAttachment) -> str:
    where = f" in {shorten(attachment.container, 80)}" if attachment.container else ""
    return f"attachment {shorten(attachment.name or '(unnamed)', 100)!r}{where}"
