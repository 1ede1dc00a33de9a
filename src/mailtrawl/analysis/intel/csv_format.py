"""CSV lists (`type,value[,description,source]`) and plain one-value-per-line lists.

A header row is optional; when present its column names (type, value, description, source, in
any order) are honoured. Lines starting with `#` are comments. Python's csv reader is a
forward-only state machine and its field size limit bounds every cell.
"""

from __future__ import annotations

import csv
import io

from mailtrawl.analysis.intel.collect import Collector
from mailtrawl.analysis.intel.values import (
    IntelFormatError,
    IntelType,
    infer_type,
    is_type_name,
    normalise_hash,
    parse_type,
)

_COLUMNS = ("type", "value", "description", "source")


def looks_like_csv(text: str) -> bool:
    """Whether the first data line is `type,value...` (else it is a one-value-per-line list)."""
    for line in io.StringIO(text):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        cells = [cell.strip().strip('"').lower() for cell in stripped.split(",")]
        return len(cells) > 1 and (_is_header(cells) or is_type_name(cells[0]))
    return False


def _is_header(cells: list[str]) -> bool:
    return {"type", "value"} <= {cell.lower() for cell in cells}


def parse_csv(text: str, collector: Collector) -> None:
    """Read `type,value[,description,source]` rows into `collector`."""
    columns = {name: index for index, name in enumerate(_COLUMNS)}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header_seen = False
    try:
        for row in reader:
            position = f"line {reader.line_num}"
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            cells = [cell.strip() for cell in row]
            if not header_seen and _is_header(cells):
                columns = _header(cells, position)
                header_seen = True
                continue
            header_seen = True
            _row(cells, columns, position, collector)
    except csv.Error as exc:
        raise IntelFormatError(f"malformed CSV: {exc}", f"line {reader.line_num}") from None


def _header(cells: list[str], position: str) -> dict[str, int]:
    columns = {name.lower(): index for index, name in enumerate(cells)}
    missing = [name for name in ("type", "value") if name not in columns]
    if missing:
        raise IntelFormatError(f"the header has no {' or '.join(missing)} column", position)
    return columns


def _row(cells: list[str], columns: dict[str, int], position: str, collector: Collector) -> None:
    def cell(name: str) -> str:
        index = columns.get(name)
        return cells[index] if index is not None and index < len(cells) else ""

    type_name, value = cell("type"), cell("value")
    if not value:
        collector.reject("the value is empty", position)
        return
    description, source = cell("description"), cell("source")
    if type_name.lower() == "hash":
        try:
            kind, _ = normalise_hash(value)
        except ValueError as exc:
            collector.reject(str(exc), position)
            return
    else:
        found = parse_type(type_name)
        if found is None:
            raise IntelFormatError(
                f"unknown type {type_name[:40]!r} (expected one of hash, md5, sha1, sha256, "
                "sha512, url, domain, ip, cidr, email)",
                position,
            )
        kind = found
    collector.add(kind, value, position, description=description, source=source)


def parse_lines(text: str, collector: Collector) -> None:
    """Read one value per line, inferring each type; `#` starts a comment line."""
    for number, line in enumerate(io.StringIO(text), start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        position = f"line {number}"
        kind: IntelType | None = infer_type(value)
        if kind is None:
            collector.reject(
                f"cannot tell what {value[:80]!r} is (expected a hash, URL, domain, IP, CIDR "
                "range or email address)",
                position,
            )
            continue
        collector.add(kind, value, position)
