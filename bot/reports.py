"""What the admins read: who spent what, what the account really paid, and the audit log.

Real spend comes from the balance Segmind reports after every billed call
(`credit_readings`): the drop between two readings is everything the key paid for in
between, including calls no member was charged for (a timed-out call that still ran,
a broken 200, a 5xx after the model ran, an admin's key check, a result never delivered,
another program using the same key).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.credits import TOP_UP_EPSILON
from bot.db import reports as queries
from bot.db.connection import Database
from bot.ledger import Ledger
from bot.periods import Window, period_window

PERIOD_LABELS = {"day": "today", "week": "this week", "month": "this month", "none": "all time"}
TREND_DAYS = 7
DAY_S = 86400.0


# -- usage per member -------------------------------------------------------------------


@dataclass(frozen=True)
class MemberUsage:
    user_id: int
    edits: int  # succeeded
    failed: int  # failed (never charged)
    credits: float  # charged
    last_at: float | None


@dataclass(frozen=True)
class UsageReport:
    period: str
    window: Window
    members: list[MemberUsage]  # biggest spenders first

    @property
    def label(self) -> str:
        return PERIOD_LABELS[self.period]

    @property
    def edits(self) -> int:
        return sum(m.edits for m in self.members)

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.members)

    @property
    def credits(self) -> float:
        return sum(m.credits for m in self.members)


async def usage(database: Database, guild_id: int, period: str, now: float) -> UsageReport:
    """Edits, failures and credits charged per member in the period containing `now`."""
    window = period_window(period, now)
    edits = await queries.edits_by_member(database, guild_id, window.start)
    credits = await queries.charged_by_member(database, guild_id, window.start)
    members = [MemberUsage(r[0], r[1], r[2], credits.pop(r[0], 0.0), r[3]) for r in edits]
    # Charges whose generation row is gone (or in another guild row) still count.
    members += [MemberUsage(uid, 0, 0, amount, None) for uid, amount in credits.items()]
    members.sort(key=lambda m: (-m.credits, -m.edits, m.user_id))
    return UsageReport(period, window, members)


def usage_csv(report: UsageReport, names: Mapping[int, str]) -> str:
    """The whole report as CSV (every member, not only the top)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["user_id", "name", "edits", "failed", "credits", "last_edit_utc"])
    for m in report.members:
        last = "" if m.last_at is None else _utc(m.last_at).isoformat(timespec="seconds")
        name = names.get(m.user_id, "")
        # A leading = + - @ would make a spreadsheet run the name as a formula.
        if name[:1] in ("=", "+", "-", "@"):
            name = "'" + name
        writer.writerow([m.user_id, name, m.edits, m.failed, f"{m.credits:.4f}", last])
    return out.getvalue()


# -- what the account paid --------------------------------------------------------------


@dataclass(frozen=True)
class DaySpend:
    start: float  # UTC midnight
    amount: float


@dataclass(frozen=True)
class SpendReport:
    balance: float | None  # the last balance Segmind reported
    balance_at: float | None
    today: float
    month: float
    charged_month: float  # charged to members, every server
    charged_month_here: float  # charged to members of this server
    held_month: float  # held for results not delivered yet: charged only once they are
    topped_up_month: float
    trend: list[DaySpend]  # the last TREND_DAYS days, oldest first
    rate_per_day: float | None  # average over the trend (or since the first reading)
    reserve: float

    @property
    def unattributed_month(self) -> float:
        """What the balance dropped by this month that no member was charged for (nor is
        held for a result awaiting delivery)."""
        return max(0.0, self.month - self.charged_month - self.held_month)

    @property
    def days_left(self) -> float | None:
        """Days until the balance reaches the reserve at the current rate."""
        if self.balance is None or not self.rate_per_day:
            return None
        return max(0.0, (self.balance - self.reserve) / self.rate_per_day)


async def spend(database: Database, guild_id: int, now: float, reserve: float) -> SpendReport:
    today = period_window("day", now).start
    month = period_window("month", now).start
    trend_start = today - (TREND_DAYS - 1) * DAY_S
    since = min(month, trend_start)
    rows = await queries.readings_since(database, since)
    spent: list[tuple[float, float]] = []
    topped_up = 0.0
    previous: float | None = None
    for at, remaining, cost in rows:
        if previous is None or remaining > previous + TOP_UP_EPSILON:
            # No earlier reading, or a top-up hid the drop: the call's own cost is all we know.
            amount = float(cost or 0.0)
            if previous is not None and at >= month:
                topped_up += remaining - previous + amount
        else:
            amount = previous - remaining
        previous = remaining
        if at >= since:
            spent.append((at, amount))

    charged_all, charged_here = await queries.charged_settled_since(database, guild_id, month)
    held = await queries.held_for_delivery(database, month)
    first = await queries.first_reading_at(database)
    trend = [
        DaySpend(start, sum(a for at, a in spent if start <= at < start + DAY_S))
        for start in (trend_start + i * DAY_S for i in range(TREND_DAYS))
    ]
    rate = None
    if first is not None:
        observed_days = max(1.0, (now - max(trend_start, first)) / DAY_S)
        rate = sum(d.amount for d in trend) / observed_days
    return SpendReport(
        balance=float(rows[-1][1]) if rows else None,
        balance_at=float(rows[-1][0]) if rows else None,
        today=sum(a for at, a in spent if at >= today),
        month=sum(a for at, a in spent if at >= month),
        charged_month=charged_all,
        charged_month_here=charged_here,
        held_month=held,
        topped_up_month=topped_up,
        trend=trend,
        rate_per_day=rate,
        reserve=reserve,
    )


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Reports:
    """The admins' reports, read at the ledger's clock."""

    def __init__(self, database: Database, ledger: Ledger, *, reserve: float) -> None:
        self._db = database
        self._ledger = ledger
        self._reserve = reserve

    async def usage(self, guild_id: int, period: str | None) -> UsageReport:
        """`period` None: the server's allowance period."""
        period = period or (await self._ledger.guild_default(guild_id)).period
        return await usage(self._db, guild_id, period, self._ledger.clock())

    async def spend(self, guild_id: int) -> SpendReport:
        return await spend(self._db, guild_id, self._ledger.clock(), self._reserve)
