"""The quota ledger against a real SQLite file: atomic reservations under concurrency,
allowances and overrides, periods, admin changes with their audit rows, and reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import core as core_module
from bot import db, reports
from bot.administration import MemberBlocked, ServerAdmin
from bot.core import Core
from bot.db import audit, charges, generations, quotas
from bot.ledger import Ledger, QuotaExceeded
from bot.params import build_params
from bot.periods import period_window
from bot.requests import EditRequest
from tests.clock import StoppedClock as Clock
from tests.fake_segmind import FakeSegmind
from tests.helpers import (
    LocalServer,
    break_audit_log,
    forge_credit_reading,
    make_image,
    make_input_image,
    make_new_generation,
    record_success,
)
from tests.world import API_KEY, make_settings

GUILD = 4242
MEMBER = 5001
ADMIN = 5003
COST = 0.04


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock(ts("2030-03-15 12:00:00"))


@pytest.fixture
def ledger(conn: db.Database, clock: Clock) -> Ledger:
    return Ledger(conn, default_credits=0.40, default_period="day", clock=clock)


@pytest.fixture
def admin(conn: db.Database, ledger: Ledger) -> ServerAdmin:
    return ServerAdmin(conn, ledger, iterate_author_only_default=False)


async def charge_rows(conn: db.Database) -> list[charges.Charge]:
    return await charges.of_server(conn, GUILD)


async def audit_rows(conn: db.Database) -> list[audit.AuditEntry]:
    """Every audited change, oldest first."""
    return list(reversed(await audit.latest_everywhere(conn, limit=1000)))


async def spend_committed(ledger: Ledger, amount: float, *, user: int = MEMBER) -> None:
    reservation = await ledger.reserve(GUILD, user, (), amount)
    await ledger.commit(reservation, amount, "balance_drop")


# -- money under concurrency ------------------------------------------------------------


async def test_concurrent_reservations_never_exceed_the_allowance(
    ledger: Ledger, conn: db.Database
) -> None:
    results = await asyncio.gather(
        *(ledger.reserve(GUILD, MEMBER, (), COST) for _ in range(200)), return_exceptions=True
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert (len(granted), len(refused)) == (10, 190)
    status = await ledger.status(GUILD, MEMBER, ())
    assert status.held == pytest.approx(0.40) and status.left == pytest.approx(0.0, abs=1e-9)
    assert [c.state for c in await charge_rows(conn)] == ["reserved"] * 10
    assert "0.00 of your 0.40 credits left" in refused[0].message


@pytest.fixture
async def pipeline(
    tmp_path: Path, local_server: LocalServer
) -> AsyncIterator[tuple[Core, FakeSegmind]]:
    """The real pipeline, wired by the composition root, against FakeSegmind (which
    fetches the input from `local_server`)."""
    async with FakeSegmind(api_key=API_KEY, delay=0.05) as fake:
        settings = make_settings(
            tmp_path, segmind_base_url=fake.base_url, discord_cdn_hosts=(local_server.host,),
            quota_default_credits=0.40, segmind_cost_estimate=COST,
        )  # fmt: skip
        core = await core_module.build(settings)
        try:
            yield core, fake
        finally:
            await core.aclose()


async def test_200_concurrent_edits_against_10_edits_of_allowance_send_exactly_10(
    pipeline: tuple[Core, FakeSegmind], local_server: LocalServer
) -> None:
    core, fake = pipeline
    pipe, conn = core.pipeline, core.database
    url = local_server.serve_bytes("/photo.png", make_image())
    request = EditRequest(
        user_id=MEMBER,
        guild_id=GUILD,
        channel_id=1,
        source="slash",
        image=make_input_image(url=url),
        params=build_params("make it night", seed=1),
        seed_explicit=True,
    )
    results = await asyncio.gather(*(pipe.run(request) for _ in range(200)), return_exceptions=True)
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert (len(done), len(refused)) == (10, 190)
    assert len([r for r in fake.requests if r.method == "POST"]) == 10
    assert fake.calls_billed == 10 and fake.credits == pytest.approx(100 - 10 * COST)
    status = await pipe.ledger.status(GUILD, MEMBER, ())
    assert status.used == pytest.approx(0.40) and status.held == 0 and status.left >= 0
    rows = await charge_rows(conn)
    # Refusals never held money; the ten are charged once Discord has their results.
    assert [r.state for r in rows] == ["held"] * 10
    assert all(r.amount is not None and r.amount >= 0 for r in rows)
    assert await generations.count_by_status(conn) == {"succeeded": 10}
    assert min(o.quota_left for o in done) == pytest.approx(0.0, abs=1e-9)


# -- allowances -------------------------------------------------------------------------


async def test_member_override_beats_roles_and_the_highest_role_wins(
    admin: ServerAdmin, ledger: Ledger
) -> None:
    assert (await ledger.allowance(GUILD, MEMBER, ())).source == "default"
    await admin.set_guild_default(GUILD, ADMIN, 1.0, "week")
    await admin.set_role_quota(GUILD, ADMIN, 71, 2.0)
    await admin.set_role_quota(GUILD, ADMIN, 72, 3.0)
    allowance = await ledger.allowance(GUILD, MEMBER, (71, 72))
    assert (allowance.credits, allowance.period, allowance.source) == (3.0, "week", "role")
    await admin.set_member_quota(GUILD, ADMIN, MEMBER, 0.5)
    allowance = await ledger.allowance(GUILD, MEMBER, (71, 72))
    assert (allowance.credits, allowance.period, allowance.source) == (0.5, "week", "member")
    await admin.set_member_quota(GUILD, ADMIN, MEMBER, None)
    assert (await ledger.allowance(GUILD, MEMBER, (71,))).credits == 2.0
    await admin.set_role_quota(GUILD, ADMIN, 71, None)
    assert (await ledger.allowance(GUILD, MEMBER, (71,))).source == "server"
    assert (await ledger.allowance(9999, MEMBER, ())).source == "default"  # other servers


async def test_usage_starts_again_when_the_period_rolls_over(ledger: Ledger, clock: Clock) -> None:
    await spend_committed(ledger, 0.40)
    with pytest.raises(QuotaExceeded) as refused:
        await ledger.reserve(GUILD, MEMBER, (), COST)
    assert refused.value.resets_at == ts("2030-03-16 00:00:00")
    clock.now = ts("2030-03-15 23:59:59")
    assert (await ledger.status(GUILD, MEMBER, ())).left == 0
    clock.now = ts("2030-03-16 00:00:00")
    status = await ledger.status(GUILD, MEMBER, ())
    assert (status.used, status.left) == (0, 0.40)
    assert status.window.resets_at == ts("2030-03-17 00:00:00")
    await ledger.reserve(GUILD, MEMBER, (), COST)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", "2030-03-15 12:00", "2030-03-15", "2030-03-16"),
        ("week", "2030-03-17 23:00", "2030-03-11", "2030-03-18"),  # weeks start on Monday
        ("month", "2028-02-29 08:00", "2028-02-01", "2028-03-01"),  # a leap February
        ("month", "2030-12-31 23:59", "2030-12-01", "2031-01-01"),
    ],
)
def test_period_windows_follow_the_utc_calendar(
    period: str, now: str, start: str, end: str
) -> None:
    window = period_window(period, ts(now))
    assert (window.start, window.resets_at) == (ts(start), ts(end))
    assert period_window("none", ts(now)).resets_at is None


# -- admin changes and their audit rows -------------------------------------------------


async def test_every_admin_change_is_audited_with_before_and_after(
    admin: ServerAdmin, ledger: Ledger, conn: db.Database, clock: Clock
) -> None:
    await admin.set_member_quota(GUILD, ADMIN, MEMBER, 2.0)
    await admin.set_member_quota(GUILD, ADMIN, MEMBER, 3.0)
    await admin.set_role_quota(GUILD, ADMIN, 71, 1.5)
    await admin.set_guild_default(GUILD, ADMIN, 0.8, "month")
    await spend_committed(ledger, 0.12)
    await admin.reset_usage(GUILD, ADMIN, MEMBER)
    await admin.block(GUILD, ADMIN, MEMBER, "spam")
    await admin.unblock(GUILD, ADMIN, MEMBER)
    await admin.set_alerts_channel(GUILD, ADMIN, 4244)
    rows = await audit_rows(conn)
    assert [(r.action, r.target, r.before, r.after) for r in rows] == [
        ("quota.member", "member:5001", "none", "2.00"),
        ("quota.member", "member:5001", "2.00", "3.00"),
        ("quota.role", "role:71", "none", "1.50"),
        ("quota.default", "server", "0.40/day", "0.80/month"),
        ("quota.reset", "member:5001", "used 0.12", "used 0.00"),
        ("block", "member:5001", "not blocked", "blocked: spam"),
        ("unblock", "member:5001", "blocked: spam", "not blocked"),
        ("alerts.channel", "server", "off", "channel:4244"),
    ]
    assert {(r.guild_id, r.actor_id, r.at) for r in rows} == {(GUILD, ADMIN, clock.now)}
    entries = await admin.audit_log(GUILD, limit=3)
    assert [e.action for e in entries] == ["alerts.channel", "unblock", "block"]


async def test_a_change_whose_audit_row_fails_is_rolled_back(
    admin: ServerAdmin, ledger: Ledger, conn: db.Database
) -> None:
    await break_audit_log(conn)
    with pytest.raises(Exception, match="audit_log"):
        await admin.set_member_quota(GUILD, ADMIN, MEMBER, 5.0)
    assert await quotas.overrides(conn, "member", GUILD) == {}
    assert (await ledger.allowance(GUILD, MEMBER, ())).credits == 0.40


async def test_reset_clears_this_periods_usage_but_keeps_the_charges(
    admin: ServerAdmin, ledger: Ledger, conn: db.Database, clock: Clock
) -> None:
    await spend_committed(ledger, 0.36)
    clock.now += 60
    change = await admin.reset_usage(GUILD, ADMIN, MEMBER)
    assert change.before == "used 0.36"
    status = await ledger.status(GUILD, MEMBER, ())
    assert (status.used, status.left) == (0, 0.40)
    assert [(c.state, c.amount) for c in await charge_rows(conn)] == [("committed", 0.36)]


async def test_a_blocked_member_is_refused_with_the_reason_until_unblocked(
    admin: ServerAdmin, ledger: Ledger, conn: db.Database
) -> None:
    assert await admin.unblock(GUILD, ADMIN, MEMBER) is None  # nothing to undo
    await admin.block(GUILD, ADMIN, MEMBER, "spamming the channel")
    with pytest.raises(MemberBlocked, match="Reason: spamming the channel"):
        await admin.check_not_blocked(GUILD, MEMBER)
    await admin.check_not_blocked(9999, MEMBER)  # a block is per server
    await admin.unblock(GUILD, ADMIN, MEMBER)
    await admin.check_not_blocked(GUILD, MEMBER)
    assert await quotas.blocks(conn, GUILD) == {}
    assert [r.action for r in await audit_rows(conn)] == ["block", "unblock"]


# -- reports ----------------------------------------------------------------------------


async def add_reading(conn: db.Database, at: str, remaining: float, gen: int | None = None) -> None:
    await forge_credit_reading(conn, ts(at), remaining, gen)


async def test_spend_comes_from_balance_drops_and_top_ups_are_not_negative_spend(
    ledger: Ledger, conn: db.Database, clock: Clock
) -> None:
    gen = await generations.insert(conn, make_new_generation())
    await record_success(conn, gen, cost_source="estimate", remaining_credits=59.76)
    await add_reading(conn, "2030-02-27 10:00", 50.00)  # last month: only the baseline
    await add_reading(conn, "2030-03-14 10:00", 49.90)
    await add_reading(conn, "2030-03-15 09:00", 49.80)
    await add_reading(conn, "2030-03-15 10:00", 59.76, gen)  # +10 topped up, this call 0.04
    # Members were charged 0.16 here and 0.02 in another server this month.
    for guild, amount in ((GUILD, 0.10), (GUILD, 0.06), (9999, 0.02)):
        reservation = await ledger.reserve(guild, MEMBER, (), amount)
        await ledger.commit(reservation, amount, "balance_drop")

    report = await reports.spend(conn, GUILD, clock(), reserve=10.0)
    assert report.balance == 59.76 and report.balance_at == ts("2030-03-15 10:00")
    assert report.today == pytest.approx(0.14)
    assert report.month == pytest.approx(0.24)
    assert report.topped_up_month == pytest.approx(10.0)
    assert report.charged_month == pytest.approx(0.18)
    assert report.charged_month_here == pytest.approx(0.16)
    assert report.unattributed_month == pytest.approx(0.06)
    assert [round(d.amount, 2) for d in report.trend] == [0, 0, 0, 0, 0, 0.10, 0.14]
    assert report.trend[-1].start == ts("2030-03-15")
    observed_days = (clock() - ts("2030-03-09")) / 86400
    assert report.rate_per_day == pytest.approx(0.24 / observed_days)
    assert report.days_left == pytest.approx((59.76 - 10.0) / report.rate_per_day)


async def test_spend_with_no_readings_yet(conn: db.Database, clock: Clock) -> None:
    report = await reports.spend(conn, GUILD, clock(), reserve=0)
    assert report.balance is None and report.month == 0 and report.days_left is None


async def test_usage_csv_lists_every_member_and_defuses_formulas(
    ledger: Ledger, conn: db.Database
) -> None:
    for status in ("succeeded", "succeeded", "failed"):
        gen = await generations.insert(conn, make_new_generation(user_id=MEMBER))
        if status == "failed":
            await generations.mark_failed(conn, gen, "ServerError: 500")
        else:
            await record_success(conn, gen, cost=None, cost_source=None)
    await spend_committed(ledger, 0.08)
    ledger.clock = lambda: 0.0  # charges made "long ago" still count for all time
    await spend_committed(ledger, 0.04, user=5002)
    report = await reports.usage(conn, GUILD, "none", now=ts("2030-03-15 12:00"))
    assert [(m.user_id, m.edits, m.failed, m.credits) for m in report.members] == [
        (MEMBER, 2, 1, pytest.approx(0.08)),
        (5002, 0, 0, pytest.approx(0.04)),
    ]
    text = reports.usage_csv(report, {MEMBER: "=HYPERLINK(1)", 5002: "Bea"})
    lines = text.splitlines()
    assert lines[0] == "user_id,name,edits,failed,credits,last_edit_utc"
    assert lines[1].startswith("5001,'=HYPERLINK(1),2,1,0.0800,20")
    assert lines[2] == "5002,Bea,0,0,0.0400,"
