"""YARA rules over a report's body (text and HTML) and its attachments' contents.

Rules come from files, directories (`*.yar`, `*.yara`) or strings, each compiled in its own
namespace. Each source is compiled alone first so a syntax error names its file and line;
`include` is off unless asked for, so a rule cannot read other files. Scans run in a worker
thread with YARA's own timeout and on at most `max_scan_bytes` of each item.

Rule metadata chooses what a match means:

    rule Fake_O365_Login {
        meta:
            verdict = "phishing"        // undetected | suspicious | phishing | malicious | simulation
            score = 85                  // 0-100
            description = "Office 365 credential form"
        ...
    }

Without metadata a match is SUSPICIOUS with score 60.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import re2
import yara  # type: ignore[import-not-found]  # ships no type information

from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict
from mailtrawl.errors import MailtrawlError

DEFAULT_VERDICT = Verdict.SUSPICIOUS
DEFAULT_SCORE = 60
RULE_SUFFIXES = (".yar", ".yara")
MAX_RULE_FILE_BYTES = 10 * 1024 * 1024
MAX_TARGETS_NAMED = 3
_LOCATION = re2.compile(r"^(?:line (\d+)|.*\((\d+)\)): (.*)$")


class YaraCompileError(MailtrawlError, ValueError):
    """One or more rule sources failed to compile; `errors` holds (source, line, reason)."""

    def __init__(self, errors: Sequence[tuple[str, int | None, str]]) -> None:
        self.errors = tuple(errors)
        lines = [
            f"{source}{f' line {line}' if line is not None else ''}: {reason}"
            for source, line, reason in self.errors
        ]
        super().__init__("YARA rules do not compile: " + "; ".join(lines))


@dataclass(frozen=True)
class YaraRuleSet:
    """Compiled rules and the names of the sources they came from."""

    rules: Any  # yara.Rules
    sources: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def compile_yara_rules(
    *,
    files: Iterable[str | os.PathLike[str]] = (),
    directories: Iterable[str | os.PathLike[str]] = (),
    sources: Mapping[str, str] | None = None,
    allow_includes: bool = False,
) -> YaraRuleSet:
    """Compile rules from files, directories (recursively, *.yar and *.yara) and named strings.

    Every source gets its own namespace (its file name or key), so two files may both define
    a rule called `phish`. Raises YaraCompileError listing every failing source with its line.
    """
    named: dict[str, str] = {}
    shown: dict[str, str] = {}  # namespace -> what to call it in an error (the file path)
    errors: list[tuple[str, int | None, str]] = []
    paths = [Path(path) for path in files]
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            errors.append((str(root), None, "not a directory"))
            continue
        paths.extend(
            sorted(p for p in root.rglob("*") if p.suffix.lower() in RULE_SUFFIXES and p.is_file())
        )
    for path in paths:
        try:
            if path.stat().st_size > MAX_RULE_FILE_BYTES:
                errors.append((str(path), None, f"larger than {MAX_RULE_FILE_BYTES} bytes"))
                continue
            namespace = _namespace(named, path.stem)
            named[namespace] = path.read_text("utf-8")
            shown[namespace] = str(path)
        except (OSError, UnicodeDecodeError) as exc:
            errors.append((str(path), None, f"cannot read: {exc}"))
    for key, text in (sources or {}).items():
        named[_namespace(named, key)] = text
    if not named and not errors:
        errors.append(("rules", None, "no rule sources given"))
    for namespace, text in named.items():
        try:
            yara.compile(source=text, includes=allow_includes)
        except yara.SyntaxError as exc:
            line, reason = _locate(str(exc))
            errors.append((shown.get(namespace, namespace), line, reason))
    if errors:
        raise YaraCompileError(errors)
    rules = yara.compile(sources=named, includes=allow_includes)
    return YaraRuleSet(rules, tuple(named), tuple(str(w) for w in getattr(rules, "warnings", ())))


def _namespace(taken: Mapping[str, str], wanted: str) -> str:
    name, counter = wanted or "rules", 2
    while name in taken:
        name = f"{wanted}_{counter}"
        counter += 1
    return name


def _locate(message: str) -> tuple[int | None, str]:
    match = _LOCATION.match(message)
    if match is None:
        return None, message
    return int(match.group(1) or match.group(2)), match.group(3)


@dataclass(frozen=True)
class _Target:
    label: str  # "the message body", "attachment 'a.doc'"
    data: bytes
    truncated: bool


class YaraEngine:
    """Scans the body and attachment contents with compiled YARA rules."""

    online = False

    def __init__(
        self,
        rules: YaraRuleSet,
        *,
        name: str = "yara",
        timeout_s: int = 10,
        max_scan_bytes: int = 32 * 1024 * 1024,
        max_attachments: int = 50,
    ) -> None:
        self.name = name
        self.rules = rules
        self.timeout_s = max(1, int(timeout_s))
        self.max_scan_bytes = max_scan_bytes
        self.max_attachments = max_attachments

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        """One indicator per matching rule (naming where it matched), plus scan notes."""
        return await anyio.to_thread.run_sync(self.scan, report)

    def scan(self, report: ParsedReport) -> list[Indicator]:
        """The synchronous scan behind `analyze`."""
        matches: dict[tuple[str, str], tuple[Any, list[str]]] = {}
        notes: list[Indicator] = []
        for target in self._targets(report):
            if target.truncated:
                notes.append(
                    self._note(
                        "yara.truncated",
                        f"Only the first {self.max_scan_bytes} bytes of {target.label} were "
                        "scanned with YARA.",
                    )
                )
            try:
                found = self.rules.rules.match(data=target.data, timeout=self.timeout_s)
            except yara.TimeoutError:
                notes.append(
                    self._note(
                        "yara.timeout",
                        f"The YARA scan of {target.label} stopped after {self.timeout_s} s; "
                        "rules may have missed it.",
                    )
                )
                continue
            except yara.Error as exc:
                notes.append(
                    self._note("yara.error", f"The YARA scan of {target.label} failed: {exc}.")
                )
                continue
            for match in found:
                key = (match.namespace, match.rule)
                matches.setdefault(key, (match, []))[1].append(target.label)
        skipped = len(report.attachments) - self.max_attachments
        if skipped > 0:
            notes.append(
                self._note(
                    "yara.skipped",
                    f"{skipped} attachments beyond the first {self.max_attachments} were not "
                    "scanned with YARA.",
                )
            )
        return [self._indicator(match, labels) for match, labels in matches.values()] + notes

    def _targets(self, report: ParsedReport) -> Iterable[_Target]:
        body = "\n".join(part for part in (report.text, report.html) if part)
        if body:
            # Lone surrogates (undecodable bytes) become U+FFFD rather than failing the encode.
            yield self._target("the message body", body.encode("utf-8", "replace"))
        for attachment in report.attachments[: self.max_attachments]:
            if attachment.content is None:
                continue
            yield self._target(f"attachment {attachment.name!r}", attachment.content)

    def _target(self, label: str, data: bytes) -> _Target:
        truncated = len(data) > self.max_scan_bytes
        return _Target(label, data[: self.max_scan_bytes] if truncated else data, truncated)

    def _indicator(self, match: Any, labels: list[str]) -> Indicator:
        meta: Mapping[str, object] = match.meta
        verdict = _verdict(meta.get("verdict"))
        score = _score(meta.get("score"))
        description = str(meta.get("description", "")).strip()
        where = ", ".join(labels[:MAX_TARGETS_NAMED])
        if len(labels) > MAX_TARGETS_NAMED:
            where += f" and {len(labels) - MAX_TARGETS_NAMED} more"
        rule = f"{match.namespace}.{match.rule}" if match.namespace != "default" else match.rule
        about = f": {description}" if description else ""
        return Indicator(
            self.name,
            "yara.match",
            verdict,
            score,
            f"YARA rule {rule} matched {where}{about}.",
            match.rule,
        )

    def _note(self, kind: str, evidence: str) -> Indicator:
        return Indicator(self.name, kind, Verdict.UNDETECTED, 0, evidence)


def _verdict(value: object) -> Verdict:
    try:
        return Verdict(str(value).strip().lower())
    except ValueError:
        return DEFAULT_VERDICT


def _score(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return DEFAULT_SCORE
    try:
        score = int(value)
    except ValueError:
        return DEFAULT_SCORE
    return max(0, min(100, score))
