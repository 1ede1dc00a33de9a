from __future__ import annotations

from pathlib import Path

import pytest

from mailtrawl.analysis.model import AnalysisContext, Verdict
from mailtrawl.analysis.yara_engine import YaraCompileError, YaraEngine, compile_yara_rules
from tests.analysis.intel.reports import attachment, make_report

pytestmark = pytest.mark.anyio

PHISH_RULE = """
rule Fake_O365_Login {
    meta:
        verdict = "phishing"
        score = 85
        description = "Office 365 credential form"
    strings:
        $title = "Sign in to your account" nocase
        $post = "passwd" ascii
    condition:
        all of them
}
"""
PLAIN_RULE = """
rule Macro_Autoopen {
    strings:
        $a = "AutoOpen" nocase
    condition:
        $a
}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_body_and_attachment_matches_use_rule_metadata(tmp_path: Path) -> None:
    (tmp_path / "phish.yar").write_text(PHISH_RULE)
    nested = tmp_path / "office"
    nested.mkdir()
    (nested / "macros.yara").write_text(PLAIN_RULE)
    (nested / "README.txt").write_text("not a rule")
    rules = compile_yara_rules(directories=[tmp_path])
    assert rules.sources == ("macros", "phish")  # sorted by path: office/ before phish.yar
    engine = YaraEngine(rules)
    assert (engine.name, engine.online) == ("yara", False)
    report = make_report(
        text="Sign in to your account",
        html='<form><input name="passwd"></form>',
        attachments=(
            attachment("report.docm", b"Sub AutoOpen()\nShell x\nEnd Sub"),
            attachment("clean.txt", b"hello"),
            attachment("big.bin", b"autoopen", keep_content=False),  # over the parser's bound
        ),
    )
    indicators = await engine.analyze(report, AnalysisContext())
    by_rule = {i.value: i for i in indicators}
    phish = by_rule["Fake_O365_Login"]
    assert (phish.kind, phish.verdict, phish.score) == ("yara.match", Verdict.PHISHING, 85)
    assert phish.evidence == (
        "YARA rule phish.Fake_O365_Login matched the message body: Office 365 credential form."
    )
    macro = by_rule["Macro_Autoopen"]
    assert (macro.verdict, macro.score) == (Verdict.SUSPICIOUS, 60)  # the defaults
    assert "attachment 'report.docm'" in macro.evidence
    assert "big.bin" not in macro.evidence
    assert len(indicators) == 2


async def test_one_indicator_per_rule_naming_where_it_matched() -> None:
    rules = compile_yara_rules(sources={"inline": PLAIN_RULE})
    report = make_report(
        text="autoopen",
        attachments=tuple(attachment(f"a{n}.docm", b"AutoOpen") for n in range(5)),
    )
    (indicator,) = await YaraEngine(rules).analyze(report, AnalysisContext())
    assert indicator.evidence.startswith(
        "YARA rule inline.Macro_Autoopen matched the message body, attachment 'a0.docm', "
        "attachment 'a1.docm' and 3 more"
    )


@pytest.mark.parametrize(
    ("meta", "verdict", "score"),
    [
        ('verdict = "MALICIOUS" score = 97', Verdict.MALICIOUS, 97),
        ('verdict = "nonsense" score = "40"', Verdict.SUSPICIOUS, 40),
        ("score = 250", Verdict.SUSPICIOUS, 100),
        ('score = "high"', Verdict.SUSPICIOUS, 60),
        ('verdict = "simulation" score = 0', Verdict.SIMULATION, 0),
    ],
)
async def test_metadata_mapping(meta: str, verdict: Verdict, score: int) -> None:
    rule = f'rule r {{ meta: {meta} strings: $a = "x" condition: $a }}'
    rules = compile_yara_rules(sources={"m": rule})
    (indicator,) = await YaraEngine(rules).analyze(make_report(text="x"), AnalysisContext())
    assert (indicator.verdict, indicator.score) == (verdict, score)


def test_compile_errors_name_every_source_and_line(tmp_path: Path) -> None:
    bad_file = tmp_path / "broken.yar"
    bad_file.write_text('rule a {\n  strings:\n    $x = "y"\n  condition:\n    $z\n}\n')
    with pytest.raises(YaraCompileError) as caught:
        compile_yara_rules(
            files=[bad_file],
            sources={"good": PLAIN_RULE, "inline": "rule b {\n condition: (\n}"},
        )
    errors = {(source, line) for source, line, _ in caught.value.errors}
    # YARA reports an undefined string where the condition ends.
    assert errors == {(str(bad_file), 6), ("inline", 3)}
    assert f'{bad_file} line 6: undefined string "$z"' in str(caught.value)


def test_includes_are_refused_by_default(tmp_path: Path) -> None:
    (tmp_path / "other.yar").write_text(PLAIN_RULE)
    source = f'include "{tmp_path / "other.yar"}"\nrule c {{ condition: true }}'
    with pytest.raises(YaraCompileError, match="includes are disabled"):
        compile_yara_rules(sources={"inc": source})


def test_missing_inputs_are_reported(tmp_path: Path) -> None:
    with pytest.raises(YaraCompileError, match="not a directory"):
        compile_yara_rules(directories=[tmp_path / "absent"])
    with pytest.raises(YaraCompileError, match="no rule sources"):
        compile_yara_rules()


async def test_truncation_and_timeout_are_reported_not_raised() -> None:
    slow = (
        "rule slow { condition: for all i in (0..filesize-1) : "
        "( for all j in (0..filesize-1) : ( uint8(i) != 0x100 ) ) }"
    )
    rules = compile_yara_rules(
        sources={"slow": slow, "tail": 'rule tail { strings: $a = "END" condition: $a }'}
    )
    report = make_report(text="", attachments=(attachment("x.bin", b"a" * 100_000 + b"END"),))
    engine = YaraEngine(rules, timeout_s=1, max_scan_bytes=100_000)
    indicators = await engine.analyze(report, AnalysisContext())
    kinds = sorted(i.kind for i in indicators)
    assert kinds == ["yara.timeout", "yara.truncated"]
    assert all(i.score == 0 and i.verdict is Verdict.UNDETECTED for i in indicators)
    assert "attachment 'x.bin'" in indicators[0].evidence


async def test_attachment_count_is_bounded() -> None:
    rules = compile_yara_rules(sources={"inline": PLAIN_RULE})
    report = make_report(
        text="", attachments=tuple(attachment(f"{n}.txt", b"clean") for n in range(4))
    )
    indicators = await YaraEngine(rules, max_attachments=2).analyze(report, AnalysisContext())
    assert [(i.kind, i.evidence) for i in indicators] == [
        ("yara.skipped", "2 attachments beyond the first 2 were not scanned with YARA.")
    ]
