"""Streaming exports (CSV, a JSON array, JSON lines) that are safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import orjson

# Spreadsheets run cells that start with these as formulas: hostile values must not.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

ExportFormat = Literal["csv", "json", "jsonl"]


def spreadsheet_safe(text: str) -> str:
    """`text`, prefixed with a quote when a spreadsheet would read it as a formula."""
    return "'" + text if text[:1] in _FORMULA_STARTS else text


def plain_cell(value: Any) -> str:
    return spreadsheet_safe("" if value is None else str(value))


def stream_rows(
    rows: Iterable[dict[str, Any]],
    fields: Sequence[str],
    fmt: ExportFormat,
    *,
    cell: Callable[[Any], str] = plain_cell,
) -> Iterator[bytes]:
    """`rows` (only `fields`, in that order) as CSV, a JSON array or JSON lines, in chunks."""
    if fmt == "csv":
        yield _csv_line(fields)
    elif fmt == "json":
        yield b"["
    first = True
    for row in rows:
        if fmt == "csv":
            yield _csv_line([cell(row[name]) for name in fields])
        elif fmt == "json":
            picked = {name: row[name] for name in fields}
            yield (b"" if first else b",") + b"\n" + orjson.dumps(picked)
        else:
            yield orjson.dumps(row) + b"\n"
        first = False
    if fmt == "json":
        yield b"\n]\n"


def _csv_line(values: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode()
