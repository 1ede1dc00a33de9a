"""Office documents: which kind an OLE2 container is, and whether it carries VBA macros.

OLE2 (compound file) documents keep macros in a `VBA` storage (Word: `Macros/VBA`, Excel:
`_VBA_PROJECT_CUR/VBA`); OOXML documents in a `vbaProject.bin` part. An OLE2 file holding an
`EncryptedPackage` stream is a password-protected OOXML document. Parsing uses `olefile`
(BSD), always on an in-memory stream: handed a short `bytes` value, olefile would take it
for a path and open that file.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import olefile

from mailtrawl.analysis import filetypes

_MACRO_STORAGES = frozenset({"vba", "_vba_project_cur", "macros", "_vba_project"})


@dataclass(frozen=True, slots=True)
class OleInfo:
    sniffed_type: str  # refined: Word, Excel, PowerPoint, Outlook item, encrypted OOXML
    has_macros: bool
    encrypted: bool
    warning: str | None = None


def inspect_ole(data: bytes) -> OleInfo:
    """Classify an OLE2 compound file and look for macros; never raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # olefile warns about its own defects
            ole = olefile.OleFileIO(io.BytesIO(data))
            try:
                entries = [[part.lower() for part in path] for path in ole.listdir(True, True)]
            finally:
                ole.close()
    except Exception as exc:  # olefile raises OSError and others on malformed containers
        return OleInfo(
            filetypes.OLE2, False, False, f"OLE2 container could not be read ({type(exc).__name__})"
        )
    names = {part for path in entries for part in path}
    has_macros = bool(names & _MACRO_STORAGES)
    if "encryptedpackage" in names:
        return OleInfo("application/x-ms-encrypted-ooxml", has_macros, True)
    if any(name.startswith("__substg1.0_") for name in names):
        return OleInfo("application/vnd.ms-outlook", has_macros, False)
    if "worddocument" in names:
        return OleInfo("application/msword", has_macros, False)
    if "workbook" in names or "book" in names:
        return OleInfo("application/vnd.ms-excel", has_macros, False)
    if "powerpoint document" in names:
        return OleInfo("application/vnd.ms-powerpoint", has_macros, False)
    return OleInfo(filetypes.OLE2, has_macros, False)


def ooxml_type(member_names: list[str]) -> str | None:
    """The OOXML type of a zip from its member names, or None if it is a plain zip."""
    lowered = {name.lower() for name in member_names}
    if "[content_types].xml" not in lowered:
        return None
    if any(name.startswith("word/") for name in lowered):
        return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    if any(name.startswith("xl/") for name in lowered):
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    if any(name.startswith("ppt/") for name in lowered):
        return "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    return filetypes.OOXML


def ooxml_has_macros(member_names: list[str]) -> bool:
    return any(name.lower().endswith("vbaproject.bin") for name in member_names)
