"""`load_intel_file`: read one list from a path or bytes, detecting its format when not given."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from mailtrawl.analysis.intel.collect import DEFAULT_MAX_INDICATORS, Collector
from mailtrawl.analysis.intel.csv_format import looks_like_csv, parse_csv, parse_lines
from mailtrawl.analysis.intel.misp import is_misp, parse_misp
from mailtrawl.analysis.intel.stix import is_stix, parse_stix
from mailtrawl.analysis.intel.values import IntelFormatError, IntelList

KINDS: tuple[str, ...] = ("csv", "lines", "stix", "misp")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def load_intel_file(
    source: str | os.PathLike[str] | bytes,
    kind: str | None = None,
    *,
    name: str | None = None,
    strict: bool = True,
    only_to_ids: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_indicators: int = DEFAULT_MAX_INDICATORS,
) -> IntelList:
    """Load a threat-intelligence list from a file path or its bytes.

    `kind` is "csv", "lines" (one value per line), "stix" or "misp"; None detects it from the
    content. `name` defaults to the file name ("intel" for bytes). With `strict` an invalid
    value is an IntelFormatError naming its line or object; otherwise it is skipped and noted
    in `IntelList.warnings`. `only_to_ids` keeps only MISP attributes flagged for detection.
    """
    if kind is not None and kind not in KINDS:
        raise IntelFormatError(f"unknown list format {kind!r} (expected one of {', '.join(KINDS)})")
    if isinstance(source, bytes):
        data, default_name = source, "intel"
        if len(data) > max_bytes:
            raise IntelFormatError(f"the list is larger than {max_bytes} bytes")
    else:
        path = Path(source)
        default_name = path.name
        data = _read_bounded(path, max_bytes)
    text = _decode(data)
    collector = Collector(strict=strict, max_indicators=max_indicators)
    document: Any = None
    if kind in ("stix", "misp") or (kind is None and text.lstrip()[:1] in ("{", "[")):
        document = _json(text)
    detected = kind or _detect(text, document)
    if detected in ("stix", "misp"):
        if detected == "stix":
            parse_stix(document, collector)
        else:
            parse_misp(document, collector, only_to_ids=only_to_ids)
    elif detected == "csv":
        parse_csv(text, collector)
    else:
        parse_lines(text, collector)
    return collector.result(name or default_name, detected)


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise IntelFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise IntelFormatError(f"{path.name} is larger than {max_bytes} bytes")
    return data


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise IntelFormatError("the list is not UTF-8 text", f"line {line}") from None


def _json(text: str) -> Any:
    try:
        # orjson bounds nesting (1024 levels) instead of recursing without limit.
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        line = text.count("\n", 0, exc.pos) + 1
        column = exc.pos - (text.rfind("\n", 0, exc.pos) + 1) + 1
        raise IntelFormatError(f"invalid JSON: {exc.msg}", f"line {line} column {column}") from None


def _detect(text: str, document: Any) -> str:
    if document is not None:
        if is_stix(document):
            return "stix"
        if is_misp(document):
            return "misp"
        raise IntelFormatError(
            "JSON that is neither a STIX bundle nor a MISP event export", "document"
        )
    return "csv" if looks_like_csv(text) else "lines"
