"""Gathering indicators from an importer: normalising, de-duplicating, bounding and reporting.

Every importer feeds raw (type, value, position) triples into one `Collector`, so the rules for
bad values, duplicates and limits are the same for CSV, STIX and MISP.
"""

from __future__ import annotations

from mailtrawl.analysis.intel.values import (
    IntelFormatError,
    IntelIndicator,
    IntelList,
    IntelType,
    normalise_value,
)

DEFAULT_MAX_INDICATORS = 1_000_000
MAX_WARNINGS = 100  # kept in the list; the rest are counted in one closing line


class Collector:
    """Accumulates indicators; raises IntelFormatError on a bad value when `strict`."""

    def __init__(self, *, strict: bool = True, max_indicators: int = DEFAULT_MAX_INDICATORS):
        self.strict = strict
        self.max_indicators = max_indicators
        self._seen: dict[tuple[IntelType, str], IntelIndicator] = {}
        self._warnings: list[str] = []
        self._dropped_warnings = 0

    def add(
        self,
        kind: IntelType,
        value: str,
        position: str,
        *,
        description: str = "",
        source: str = "",
    ) -> None:
        """Normalise and keep one value; a duplicate keeps its first description."""
        try:
            kind, normalised = normalise_value(kind, value)
        except ValueError as exc:
            self.reject(str(exc), position)
            return
        key = (kind, normalised)
        if key in self._seen:
            return
        if len(self._seen) >= self.max_indicators:
            raise IntelFormatError(
                f"the list holds more than {self.max_indicators} indicators; split it or raise "
                "the limit",
                position,
            )
        self._seen[key] = IntelIndicator(kind, normalised, description[:500], source[:200])

    def reject(self, reason: str, position: str) -> None:
        """A value that is of a supported type but invalid: an error, or a warning if lenient."""
        if self.strict:
            raise IntelFormatError(reason, position)
        self.warn(f"{position}: {reason}")

    def warn(self, message: str) -> None:
        """Record a skipped entry (unsupported type, revoked, expired...)."""
        if len(self._warnings) < MAX_WARNINGS:
            self._warnings.append(message)
        else:
            self._dropped_warnings += 1

    def result(self, name: str, source_kind: str) -> IntelList:
        warnings = list(self._warnings)
        if self._dropped_warnings:
            warnings.append(f"... and {self._dropped_warnings} more skipped entries")
        return IntelList(name, source_kind, tuple(self._seen.values()), tuple(warnings))
