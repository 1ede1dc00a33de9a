"""Several hunts judged together on one message, as the watcher judges active investigations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailtrawl.core.mail import EmailAddress
from mailtrawl.investigations.matcher import CompiledHunt, KeywordPool, MessageView, compile_hunts
from mailtrawl.investigations.query import parse_query

NOW = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


def _hunt(match: object) -> CompiledHunt:
    return CompiledHunt(parse_query({"match": match}, now=NOW))


def _view(text: str, sender: str = "billing@fabrikam.example") -> MessageView:
    return MessageView(
        subject="Invoice",
        from_=EmailAddress(sender, "Billing"),
        body_text=text,
        body_known=True,
        has_attachments=False,
        attachments=(),
    )


def _pooled(*matches: object) -> list[CompiledHunt]:
    return compile_hunts([parse_query({"match": m}, now=NOW) for m in matches])


def test_hunts_compiled_together_decide_each_on_its_own_keywords() -> None:
    wire, gift, both = _pooled(
        {"body": "wire transfer"},
        {"body": ["gift cards", "itunes"]},
        {"all": [{"body": "wire transfer"}, {"from_domain": "fabrikam.example"}]},
    )
    view = _view("Please make the wire transfer before noon.")
    assert [h.evaluate(view)[0] for h in (wire, gift, both)] == [True, False, True]
    other = _view("Buy five gift cards and send the codes.", sender="ceo@contoso.example")
    assert [h.evaluate(other)[0] for h in (wire, gift, both)] == [False, True, False]


def test_one_view_shared_by_separately_compiled_hunts_keeps_their_findings_apart() -> None:
    # Each separately compiled hunt has its own pool: findings are kept per pool on the view.
    wire = _hunt({"body": "wire transfer"})
    gift = _hunt({"body": "gift cards"})
    view = _view("gift cards only")
    assert wire.evaluate(view)[0] is False
    assert gift.evaluate(view)[0] is True
    assert wire.evaluate(view)[0] is False


def test_the_text_is_scanned_once_for_every_hunt_of_a_pool() -> None:
    hunts = _pooled(*({"body": f"kw{i}x"} for i in range(50)))
    view = _view("nothing but kw7x and kw42x here")
    results = [h.evaluate(view)[0] for h in hunts]
    assert [i for i, r in enumerate(results) if r] == [7, 42]
    pools = [key for key in view._cache if isinstance(key, KeywordPool)]
    assert len(pools) == 1  # one scan, one finding set, for all fifty hunts


def test_a_pool_in_use_takes_no_more_keywords() -> None:
    pool = KeywordPool()
    CompiledHunt(parse_query({"match": {"body": "first"}}, now=NOW), keywords=pool)
    pool.found(_view("first"))
    with pytest.raises(RuntimeError):
        pool.add(["second"])
