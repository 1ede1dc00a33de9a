"""Local threat-intelligence lists: import (CSV, one-per-line, STIX 2.x, MISP), index, engine.

intel_list = load_intel_file("feeds/phishing.csv")          # kind detected from content
index = IntelIndex([intel_list, other_list])                # build once per change
engine = IntelEngine(index)                                  # an offline analysis engine
"""

from mailtrawl.analysis.intel.engine import IntelEngine, IntelScores
from mailtrawl.analysis.intel.index import IntelHit, IntelIndex, LiteralHit
from mailtrawl.analysis.intel.loader import DEFAULT_MAX_BYTES, KINDS, load_intel_file
from mailtrawl.analysis.intel.stix import PatternError, parse_pattern
from mailtrawl.analysis.intel.values import (
    IntelFormatError,
    IntelIndicator,
    IntelList,
    IntelType,
    normalise_value,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "KINDS",
    "IntelEngine",
    "IntelFormatError",
    "IntelHit",
    "IntelIndex",
    "IntelIndicator",
    "IntelList",
    "IntelScores",
    "IntelType",
    "LiteralHit",
    "PatternError",
    "load_intel_file",
    "normalise_value",
    "parse_pattern",
]
