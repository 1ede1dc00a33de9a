"""User-supplied regular expressions, compiled with RE2 so matching stays linear in the text.

Python's `re` backtracks, so a hostile pattern such as `(a+)+$` could take forever on a crafted
message; RE2 rejects the few features that need backtracking (back-references, look-around)
instead. Patterns are searched (not anchored) and case-insensitive unless asked otherwise.
"""

from __future__ import annotations

import re2

from mailtrawl.matching.text import scrub

MAX_PATTERN_LENGTH = 2_000
# RE2's own default; a pattern whose program outgrows it is rejected as too large.
_MAX_MEM = 8 << 20


class RegexError(ValueError):
    """A pattern RE2 cannot compile; `position` is a 0-based offset into the pattern, if known."""

    def __init__(self, reason: str, position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        where = "" if position is None else f" at position {position}"
        super().__init__(f"invalid regular expression{where}: {reason}")


class CompiledRegex:
    """A compiled pattern; `search` tells whether it occurs anywhere in a text."""

    __slots__ = ("_regexp", "pattern")

    def __init__(self, pattern: str, regexp: re2._Regexp[str]) -> None:
        self.pattern = pattern
        self._regexp = regexp

    def search(self, text: str) -> bool:
        return self._regexp.search(scrub(text)) is not None

    def __repr__(self) -> str:
        return f"CompiledRegex({self.pattern!r})"


def compile_regex(pattern: str, *, ignore_case: bool = True) -> CompiledRegex:
    """Compile `pattern` with RE2, raising RegexError with a readable reason."""
    if not pattern:
        raise RegexError("the pattern is empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.max_mem = _MAX_MEM
    options.never_capture = True  # only "does it match" is asked, which lets RE2 use its DFA
    options.log_errors = False  # errors are reported to the user, not to stderr
    try:
        return CompiledRegex(pattern, re2.compile(pattern, options))
    except re2.error as exc:
        raise _explain(pattern, exc) from None


def _explain(pattern: str, exc: re2.error) -> RegexError:
    """Turn RE2's "reason: fragment" message into a RegexError pointing into the pattern."""
    message = exc.args[0] if exc.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    reason, _, fragment = str(message).partition(": ")
    head, _, last = reason.rpartition(" ")
    if last in {")", "]", "\\"}:
        reason = f"{head} '{last}'"
    if last == ")":
        # RE2 quotes the whole pattern here; point at the parenthesis instead.
        return RegexError(reason, _paren_position(pattern, unexpected=head == "unexpected"))
    if last == "\\":
        return RegexError(reason, len(pattern) - 1)
    position = pattern.find(fragment) if fragment else -1
    if fragment and last != "]":
        reason = f"{reason} '{fragment}'"
    return RegexError(reason, position if position >= 0 else None)


def _paren_position(pattern: str, *, unexpected: bool) -> int | None:
    """The first unmatched ')' or, if `unexpected` is false, the last unclosed '('."""
    opened: list[int] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 2 if pattern.startswith("^", i + 1) else 1
            # A ']' straight after '[' or '[^' is a literal member of the class.
            i += pattern.startswith("]", i)
            continue
        elif char == "(":
            opened.append(i)
        elif char == ")":
            if not opened and unexpected:
                return i
            if opened:
                opened.pop()
        i += 1
    if unexpected:
        return None
    return opened[-1] if opened else None
