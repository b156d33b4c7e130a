"""A server's budget against a real SQLite file: what it shows as spent and held is what
its charges add up to after every kind of money move, over every period (and after an
existing database upgrades), and concurrent reservations from many members never pass it."""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from bot import db
from bot.db import charges, generations, messages
from bot.ledger import BudgetExceeded, BudgetStatus, Ledger, Reservation
from bot.periods import PERIODS, period_window
from tests.clock import StoppedClock as Clock
from tests.helpers import make_new_generation, record_success

GUILD = 4242
OTHER_GUILD = 4343
MEMBER = 5001
COST = 0.04
EPSILON = 1e-9
DAY_S = 86400.0


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock(ts("2030-03-15 12:00:00"))


def budget_ledger(conn: db.Database, clock: Clock, *, budget: float, period: str = "day") -> Ledger:
    """Members may spend up to the whole budget: only the server's limit is under test."""
    return Ledger(
        conn,
        default_credits=budget,
        default_period="day",
        server_budget=budget,
        budget_period=period,
        clock=clock,
    )


async def budget_in(conn: db.Database, clock: Clock, guild_id: int, period: str) -> BudgetStatus:
    return await budget_ledger(conn, clock, budget=100.0, period=period).budget(guild_id)


async def summed_from_charges(
    conn: db.Database, guild_id: int, since: float
) -> tuple[float, float]:
    """(spent, held) added up from the server's charges themselves."""
    rows = [c for c in await charges.of_server(conn, guild_id) if c.created_at >= since]
    spent = math.fsum(c.amount or 0.0 for c in rows if c.state in ("committed", "held"))
    held = math.fsum(c.reserved for c in rows if c.state == "reserved")
    return spent, held


async def assert_budgets_match_charges(conn: db.Database, clock: Clock) -> None:
    """Every server's spend and holds, in every period, agree with its charges."""
    for guild_id in (GUILD, OTHER_GUILD):
        for period in PERIODS:
            budget = await budget_in(conn, clock, guild_id, period)
            since = period_window(period, clock()).start
            spent, held = await summed_from_charges(conn, guild_id, since)
            assert budget.spent == pytest.approx(spent, abs=EPSILON), (guild_id, period)
            assert budget.held == pytest.approx(held, abs=EPSILON), (guild_id, period)


async def succeeded_generation(conn: db.Database, cost: float | None) -> int:
    gen_id = await generations.insert(conn, make_new_generation())
    await record_success(conn, gen_id, cost=cost, cost_source="balance_drop")
    return gen_id


async def test_a_servers_spend_and_holds_match_its_charges_after_every_kind_of_move(
    conn: db.Database, clock: Clock
) -> None:
    ledger = budget_ledger(conn, clock, budget=100.0)

    async def reserve(amount: float, guild_id: int = GUILD) -> Reservation:
        return await ledger.reserve(guild_id, MEMBER, (), amount)

    async def checked() -> None:
        await assert_budgets_match_charges(conn, clock)

    # Last month, and the last instant of the day before the one under test.
    clock.now = ts("2030-02-27 08:00:00")
    await ledger.commit(await reserve(0.3), 0.25, "balance_drop")
    await checked()
    clock.now = ts("2030-03-15 00:00:00") - 0.001
    await ledger.commit(await reserve(0.1), 0.2, "balance_drop")
    await checked()
    clock.now = ts("2030-03-15 00:00:00")
    await ledger.commit(await reserve(1 / 3), 1 / 3, "header")
    await checked()

    clock.now = ts("2030-03-15 12:00:00")
    released = await reserve(0.07)
    await checked()
    await ledger.release(released)
    await checked()
    # A result held, then delivered: charged in the delivery's own transaction.
    delivered = await reserve(COST)
    delivered_gen = await succeeded_generation(conn, 0.055)
    await ledger.attach(delivered, delivered_gen)
    await ledger.hold(delivered, 0.055, "balance_drop")
    await checked()
    await messages.record_delivery(
        conn, delivered_gen, channel_id=1, message_id=77, attachment_id=None, url=None
    )
    await checked()
    # A result held whose kept copy expires undelivered: refunded.
    expired = await reserve(COST)
    expired_gen = await succeeded_generation(conn, 0.06)
    await ledger.attach(expired, expired_gen)
    await ledger.hold(expired, 0.06, "balance_drop")
    # A result held, then lost before delivery: refunded at once.
    lost = await reserve(COST, OTHER_GUILD)
    lost_gen = await succeeded_generation(conn, 0.05)
    await ledger.attach(lost, lost_gen)
    await ledger.hold(lost, 0.05, "header")
    await checked()
    assert await ledger.refund_generation(lost_gen)
    await checked()

    # A crash leaves two reservations: one whose edit succeeded, one that never finished.
    clock.now = ts("2030-03-16 09:00:00")
    finished = await reserve(0.2)
    await ledger.attach(finished, await succeeded_generation(conn, None))  # its estimate held
    unfinished = await reserve(0.3)
    await ledger.attach(unfinished, await generations.insert(conn, make_new_generation()))
    await reserve(0.15, OTHER_GUILD)
    await checked()
    settled = await ledger.settle_stale(older_than_s=0)
    assert (settled.held, settled.committed, settled.released) == (1, 0, 2)
    await checked()
    refunded = await ledger.refund_undelivered(time.time() + 1)
    assert expired_gen in refunded and len(refunded) == 2
    await checked()

    budget = await budget_in(conn, clock, GUILD, "month")
    assert (budget.spent, budget.held) == (pytest.approx(0.2 + 1 / 3 + 0.055), 0)


async def test_a_servers_holds_come_back_to_exactly_nothing_whatever_the_amounts(
    conn: db.Database, clock: Clock
) -> None:
    ledger = budget_ledger(conn, clock, budget=1000.0)
    amounts = [0.1, 0.2, 0.3, 1 / 3, 0.055, 0.07, 2 / 7] * 30
    reservations = await asyncio.gather(*(ledger.reserve(GUILD, MEMBER, (), a) for a in amounts))
    for reservation in reservations[::2]:
        await ledger.release(reservation)
    for reservation in reservations[1::2]:
        await ledger.commit(reservation, reservation.amount, "header")

    budget = await ledger.budget(GUILD)
    assert budget.held == 0
    assert budget.spent == pytest.approx(math.fsum(amounts[1::2]), abs=EPSILON)
    assert budget.left == pytest.approx(1000.0 - math.fsum(amounts[1::2]), abs=EPSILON)


async def test_concurrent_reservations_from_many_members_never_pass_the_servers_budget(
    conn: db.Database, clock: Clock
) -> None:
    ledger = budget_ledger(conn, clock, budget=1.0)

    async def rush(count: int) -> list[Reservation]:
        results = await asyncio.gather(
            *(ledger.reserve(GUILD, 6000 + i % 40, (), COST) for i in range(count)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, BudgetExceeded)]
        granted = [r for r in results if isinstance(r, Reservation)]
        assert len(refused) + len(granted) == count
        return granted

    granted = await rush(200)
    assert len(granted) == 25  # 25 x 0.04 = 1.00
    budget = await ledger.budget(GUILD)
    assert budget.held == pytest.approx(1.0) and budget.left == pytest.approx(0, abs=EPSILON)

    # Ten cost more than reserved, ten are given back, five still run: 0.30 left.
    for reservation in granted[:10]:
        await ledger.commit(reservation, 0.05, "balance_drop")
    for reservation in granted[10:20]:
        await ledger.release(reservation)
    assert len(await rush(100)) == 7  # 0.28 of the 0.30
    budget = await ledger.budget(GUILD)
    assert budget.spent + budget.held == pytest.approx(0.98)
    assert budget.spent + budget.held <= 1.0 + EPSILON

    # The next day the budget is whole again; yesterday's running edits stay yesterday's.
    clock.advance(DAY_S)
    assert len(await rush(100)) == 25


# -- upgrading ---------------------------------------------------------------------------


async def test_an_existing_database_upgrades_with_each_servers_spend_from_its_charges(
    tmp_path: Path, clock: Clock
) -> None:
    [spend] = db.migrations_dir().glob("*_server_spend.sql")
    number = int(spend.name.split("_", 1)[0])
    earlier = tmp_path / "mig"
    earlier.mkdir()
    for path in sorted(db.migrations_dir().glob("*.sql"))[: number - 1]:
        shutil.copy(path, earlier)
    path = tmp_path / "old.db"
    raw = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        assert await db.migrate(raw, earlier) == number - 1
        # Written in the schema before, which no query of today's code speaks: raw SQL.
        await raw.executemany(
            """INSERT INTO charges (guild_id, user_id, state, reserved, amount, created_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            [
                (GUILD, MEMBER, "committed", 0.3, 0.25, ts("2030-02-27 08:00:00")),
                (GUILD, MEMBER, "committed", COST, 1 / 3, ts("2030-03-15 00:00:00") - 0.001),
                (GUILD, MEMBER, "committed", COST, 0.055, ts("2030-03-15 00:00:00")),
                (GUILD, 5002, "held", COST, 0.05, ts("2030-03-15 11:00:00")),
                (GUILD, MEMBER, "reserved", COST, None, ts("2030-03-15 11:30:00")),
                (GUILD, MEMBER, "released", COST, 0, ts("2030-03-15 11:45:00")),
                (OTHER_GUILD, MEMBER, "committed", 0.1, 0.1, ts("2030-03-15 09:00:00")),
            ],
        )
    finally:
        await raw.close()

    conn = await db.connect(path)  # what start-up does
    try:
        expected = {  # (server, period): (spent, held)
            (GUILD, "day"): (0.105, COST),
            (GUILD, "week"): (0.105 + 1 / 3, COST),  # the week began on Monday the 11th
            (GUILD, "month"): (0.105 + 1 / 3, COST),
            (GUILD, "none"): (0.355 + 1 / 3, COST),
            (OTHER_GUILD, "day"): (0.1, 0),
        }
        for (guild_id, period), (spent, held) in expected.items():
            budget = await budget_in(conn, clock, guild_id, period)
            assert (budget.spent, budget.held) == (
                pytest.approx(spent, abs=EPSILON),
                pytest.approx(held, abs=EPSILON),
            ), (guild_id, period)
        await assert_budgets_match_charges(conn, clock)
        # What upgraded counts against the budget of today's reservations.
        ledger = budget_ledger(conn, clock, budget=0.2)
        with pytest.raises(BudgetExceeded):
            await ledger.reserve(GUILD, MEMBER, (), 0.06)
        await ledger.reserve(GUILD, MEMBER, (), 0.055)
        await assert_budgets_match_charges(conn, clock)
    finally:
        await conn.close()
