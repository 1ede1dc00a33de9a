"""Dashboard figures the services do not offer yet: hits and actions per day, and their bars.

Both read small tables only: hits are summed from each investigation's own counter (never
from `investigation_hits`), actions from `remediation_actions`, over an indexed time window.
Days are UTC days; the bars are plain SVG rectangles (no script, no style attribute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtrawl.investigations.models import Investigation
from mailtrawl.remediation.models import RemediationAction

CHART_WIDTH = 300
CHART_HEIGHT = 80


@dataclass(frozen=True)
class Bar:
    day: date
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Series:
    """One count per day, oldest first, with its bars laid out for the SVG chart."""

    name: str
    days: list[date]
    values: list[int]
    bars: list[Bar]
    last_7: int
    last_30: int
    peak: int


def _as_day(value: datetime) -> date:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).date()


def _series(name: str, counts: dict[date, int], days: list[date]) -> Series:
    values = [counts.get(d, 0) for d in days]
    peak = max(values, default=0)
    slot = CHART_WIDTH / max(1, len(days))
    bars: list[Bar] = []
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        height = 0.0 if peak == 0 else max(1.0, CHART_HEIGHT * value / peak) if value else 0.0
        bars.append(
            Bar(
                day=day,
                value=value,
                x=round(index * slot + slot * 0.15, 2),
                y=round(CHART_HEIGHT - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
            )
        )
    return Series(
        name=name,
        days=days,
        values=values,
        bars=bars,
        last_7=sum(values[-7:]),
        last_30=sum(values[-30:]),
        peak=peak,
    )


def daily_activity(
    session: Session, *, days: int = 30, now: datetime | None = None
) -> tuple[Series, Series]:
    """(hits found, messages acted on) per UTC day over the last `days` days, today included.

    Hits count towards the day their investigation was created; actions count their
    messages towards the day they were requested.
    """
    today = _as_day(now or datetime.now(UTC))
    window = [today - timedelta(days=days - 1 - i) for i in range(days)]
    since = datetime.combine(window[0], datetime.min.time(), tzinfo=UTC)
    hits: dict[date, int] = {}
    for created, count in session.execute(
        select(Investigation.created_at, Investigation.hits).where(
            Investigation.created_at >= since
        )
    ):
        hits[_as_day(created)] = hits.get(_as_day(created), 0) + int(count or 0)
    acted: dict[date, int] = {}
    for created, total in session.execute(
        select(RemediationAction.created_at, RemediationAction.total).where(
            RemediationAction.created_at >= since
        )
    ):
        acted[_as_day(created)] = acted.get(_as_day(created), 0) + int(total or 0)
    return _series("Hits", hits, window), _series("Messages acted on", acted, window)
