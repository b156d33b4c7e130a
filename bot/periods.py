"""Quota periods: UTC calendar days, weeks and months, or none (never resets)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PERIODS = ("day", "week", "month", "none")


@dataclass(frozen=True)
class Window:
    """The current quota period: usage counts from `start`; `resets_at` None = never."""

    period: str
    start: float
    resets_at: float | None


def period_window(period: str, now: float) -> Window:
    """The UTC calendar period containing `now`."""
    moment = datetime.fromtimestamp(now, UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = midnight
        end = start + timedelta(days=1)
    elif period == "week":
        start = midnight - timedelta(days=moment.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = midnight.replace(day=1)
        days = calendar.monthrange(start.year, start.month)[1]
        end = start + timedelta(days=days)
    elif period == "none":
        return Window(period, 0.0, None)
    else:
        raise ValueError(f"unknown period {period!r}")
    return Window(period, start.timestamp(), end.timestamp())
