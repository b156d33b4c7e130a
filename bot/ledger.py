"""The quota ledger: per-member allowances in Segmind credits, reserved before a call,
committed at the real cost after a 200 and released after any failure."""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite
from aiosqlite import Row

from bot.db import Database
from bot.errors import BadInput

log = logging.getLogger(__name__)

PERIODS = ("day", "week", "month", "none")
EPSILON = 1e-9


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


@dataclass(frozen=True)
class Allowance:
    credits: float
    period: str
    source: str  # 'default', 'server', 'role' or 'member'


@dataclass(frozen=True)
class QuotaStatus:
    allowance: Allowance
    window: Window
    used: float  # committed this period
    held: float  # reserved by edits still running

    @property
    def left(self) -> float:
        return max(0.0, self.allowance.credits - self.used - self.held)

    def edits_left(self, cost: float) -> int:
        """About how many more edits `left` pays for at `cost` each."""
        return int(self.left / cost + EPSILON) if cost > 0 else 0


@dataclass(frozen=True)
class Reservation:
    id: int
    amount: float


@dataclass(frozen=True)
class Block:
    reason: str | None
    blocked_by: int
    at: float


@dataclass(frozen=True)
class Change:
    """What an admin action changed, as the audit log records it."""

    before: str
    after: str


def amount_text(amount: float | None) -> str:
    return "none" if amount is None else f"{amount:.2f}"


async def _one(conn: aiosqlite.Connection, sql: str, params: tuple[object, ...]) -> Row | None:
    return await (await conn.execute(sql, params)).fetchone()


class QuotaExceeded(BadInput):
    """The member's allowance cannot cover another edit."""


class MemberBlocked(BadInput):
    """An admin blocked this member from editing."""


def describe_reset(window: Window) -> str:
    if window.resets_at is None:
        return "This is a fixed allowance that does not reset; ask an admin for more."
    return f"It resets <t:{int(window.resets_at)}:R>."


def _out_of_edits(status: QuotaStatus, amount: float) -> QuotaExceeded:
    return QuotaExceeded(
        f"You're out of edits for now: {status.left:.2f} of your "
        f"{status.allowance.credits:.2f} credits left, and an edit costs about {amount:.2f}. "
        + describe_reset(status.window)
    )


class Ledger:
    """All quota state lives in SQLite; every money movement is one atomic statement."""

    def __init__(
        self,
        database: Database,
        *,
        default_credits: float,
        default_period: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if default_period not in PERIODS:
            raise ValueError(f"unknown period {default_period!r}")
        self._db = database
        self._default = Allowance(default_credits, default_period, "default")
        self.clock = clock

    # -- allowances ---------------------------------------------------------------------

    async def allowance(self, guild_id: int, user_id: int, role_ids: Iterable[int]) -> Allowance:
        """Member override, else the highest of the member's roles, else the server default."""
        server = await self._db.fetchone(
            "SELECT credits, period FROM guild_quotas WHERE guild_id = ?", (guild_id,)
        )
        base = Allowance(server[0], server[1], "server") if server else self._default
        member = await self._db.fetchone(
            "SELECT credits FROM member_quotas WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        )
        if member:
            return Allowance(member[0], base.period, "member")
        roles = list(role_ids)
        if roles:
            marks = ",".join("?" * len(roles))
            row = await self._db.fetchone(
                f"SELECT MAX(credits) FROM role_quotas WHERE guild_id = ? AND role_id IN ({marks})",  # noqa: S608 - placeholders only
                (guild_id, *roles),
            )
            if row and row[0] is not None:
                return Allowance(row[0], base.period, "role")
        return base

    async def _usage_start(self, guild_id: int, user_id: int, window: Window) -> float:
        row = await self._db.fetchone(
            "SELECT reset_at FROM usage_resets WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        )
        return max(window.start, row[0]) if row else window.start

    async def status(self, guild_id: int, user_id: int, role_ids: Iterable[int]) -> QuotaStatus:
        allowance = await self.allowance(guild_id, user_id, role_ids)
        window = period_window(allowance.period, self.clock())
        since = await self._usage_start(guild_id, user_id, window)
        row = await self._db.fetchone(
            """SELECT COALESCE(SUM(CASE WHEN state = 'committed' THEN amount END), 0),
                      COALESCE(SUM(CASE WHEN state = 'reserved' THEN reserved END), 0)
               FROM charges WHERE guild_id = ? AND user_id = ? AND created_at >= ?""",
            (guild_id, user_id, since),
        )
        assert row is not None
        return QuotaStatus(allowance, window, used=row[0], held=row[1])

    # -- money --------------------------------------------------------------------------

    async def reserve(
        self, guild_id: int, user_id: int, role_ids: Iterable[int], amount: float
    ) -> Reservation:
        """Hold `amount` against the member's allowance, or raise QuotaExceeded.

        The check and the insert are one statement, so concurrent requests can never
        together reserve more than the allowance.
        """
        roles = list(role_ids)
        allowance = await self.allowance(guild_id, user_id, roles)
        now = self.clock()
        window = period_window(allowance.period, now)
        since = await self._usage_start(guild_id, user_id, window)
        cur = await self._db.write(
            """INSERT INTO charges (guild_id, user_id, state, reserved, created_at)
               SELECT ?, ?, 'reserved', ?, ?
               WHERE (SELECT COALESCE(SUM(CASE WHEN state = 'committed' THEN amount
                                               ELSE reserved END), 0)
                      FROM charges
                      WHERE guild_id = ? AND user_id = ? AND state != 'released'
                        AND created_at >= ?) + ? <= ? + ?""",
            (
                guild_id,
                user_id,
                amount,
                now,
                guild_id,
                user_id,
                since,
                amount,
                allowance.credits,
                EPSILON,
            ),
        )
        if cur.rowcount != 1 or cur.lastrowid is None:
            raise _out_of_edits(await self.status(guild_id, user_id, roles), amount)
        return Reservation(cur.lastrowid, amount)

    async def check_allowance(
        self, guild_id: int, user_id: int, role_ids: Iterable[int], amount: float
    ) -> None:
        """Refuse early (nothing held) when the allowance cannot cover `amount` now;
        `reserve` remains the exact, atomic check."""
        status = await self.status(guild_id, user_id, role_ids)
        if status.left + EPSILON < amount:
            raise _out_of_edits(status, amount)

    async def attach(self, reservation: Reservation, generation_id: int) -> None:
        await self._db.write(
            "UPDATE charges SET generation_id = ? WHERE id = ?", (generation_id, reservation.id)
        )

    async def commit(self, reservation: Reservation, amount: float, source: str) -> bool:
        """Charge the real cost; False when the reservation was already settled."""
        cur = await self._db.write(
            """UPDATE charges SET state = 'committed', amount = ?, cost_source = ?,
                   settled_at = ? WHERE id = ? AND state = 'reserved'""",
            (max(0.0, amount), source, self.clock(), reservation.id),
        )
        return cur.rowcount == 1

    async def release(self, reservation: Reservation) -> bool:
        """Give the reservation back: the member pays nothing for an edit they did not get."""
        cur = await self._db.write(
            """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
               WHERE id = ? AND state = 'reserved'""",
            (self.clock(), reservation.id),
        )
        return cur.rowcount == 1

    async def refund_generation(self, generation_id: int) -> bool:
        """Give back what an edit was charged (its result was lost before delivery)."""
        cur = await self._db.write(
            """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
               WHERE generation_id = ? AND state IN ('reserved', 'committed')""",
            (self.clock(), generation_id),
        )
        if cur.rowcount:
            log.warning(
                "Refunded generation %d: its result was lost before delivery", generation_id
            )
        return cur.rowcount > 0

    async def settle_stale(self, older_than_s: float) -> tuple[int, int]:
        """Settle reservations a crash left behind: commit the edits that succeeded
        (at their recorded cost), release the rest. Returns (committed, released)."""
        cutoff = self.clock() - older_than_s
        now = self.clock()
        committed = await self._db.write(
            """UPDATE charges SET state = 'committed', settled_at = ?,
                   amount = (SELECT COALESCE(g.cost, charges.reserved) FROM generations g
                             WHERE g.id = charges.generation_id),
                   cost_source = (SELECT COALESCE(g.cost_source, 'estimate') FROM generations g
                                  WHERE g.id = charges.generation_id)
               WHERE state = 'reserved' AND created_at <= ? AND generation_id IN
                     (SELECT id FROM generations WHERE status = 'succeeded')""",
            (now, cutoff),
        )
        released = await self._db.write(
            """UPDATE charges SET state = 'released', amount = 0, settled_at = ?
               WHERE state = 'reserved' AND created_at <= ?""",
            (now, cutoff),
        )
        if committed.rowcount or released.rowcount:
            log.warning(
                "Settled reservations left by an interrupted run: %d committed, %d released",
                committed.rowcount,
                released.rowcount,
            )
        return committed.rowcount, released.rowcount

    # -- blocks -------------------------------------------------------------------------

    async def check_not_blocked(self, guild_id: int, user_id: int) -> None:
        block = await self.block_of(guild_id, user_id)
        if block is not None:
            why = f" Reason: {block.reason}" if block.reason else ""
            raise MemberBlocked(f"The server admins have blocked you from editing images.{why}")

    async def block_of(self, guild_id: int, user_id: int) -> Block | None:
        row = await self._db.fetchone(
            "SELECT reason, blocked_by, at FROM blocks WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        )
        return Block(row[0], row[1], row[2]) if row else None

    # -- admin changes, each audited in the same transaction ----------------------------

    async def _audit(
        self,
        conn: aiosqlite.Connection,
        guild_id: int,
        actor_id: int,
        action: str,
        target: str | None,
        change: Change,
    ) -> None:
        await conn.execute(
            """INSERT INTO audit_log (guild_id, actor_id, action, target, before, after, at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (guild_id, actor_id, action, target, change.before, change.after, self.clock()),
        )

    async def record(
        self, guild_id: int, actor_id: int, action: str, target: str | None, change: Change
    ) -> None:
        """Audit an admin action that changed nothing in the database (e.g. a key check)."""
        async with self._db.transaction() as conn:
            await self._audit(conn, guild_id, actor_id, action, target, change)

    async def set_member_quota(
        self, guild_id: int, actor_id: int, user_id: int, credits: float | None
    ) -> Change:
        """Give a member their own allowance (None removes it: roles and default apply)."""
        return await self._set_override("member", guild_id, actor_id, user_id, credits)

    async def set_role_quota(
        self, guild_id: int, actor_id: int, role_id: int, credits: float | None
    ) -> Change:
        """Allowance for a role's members (the highest of a member's roles wins)."""
        return await self._set_override("role", guild_id, actor_id, role_id, credits)

    async def _set_override(
        self, kind: str, guild_id: int, actor_id: int, key: int, credits: float | None
    ) -> Change:
        table, column = _OVERRIDES[kind]
        where = f"FROM {table} WHERE guild_id = ? AND {column} = ?"
        async with self._db.transaction() as conn:
            row = await _one(conn, f"SELECT credits {where}", (guild_id, key))
            if credits is None:
                await conn.execute(f"DELETE {where}", (guild_id, key))
            else:
                await conn.execute(
                    f"""INSERT INTO {table} (guild_id, {column}, credits) VALUES (?, ?, ?)
                        ON CONFLICT (guild_id, {column})
                        DO UPDATE SET credits = excluded.credits""",  # noqa: S608
                    (guild_id, key, credits),
                )
            change = Change(amount_text(row[0] if row else None), amount_text(credits))
            action = f"quota.{kind}" + (".clear" if credits is None else "")
            await self._audit(conn, guild_id, actor_id, action, f"{kind}:{key}", change)
        return change

    async def guild_default(self, guild_id: int) -> Allowance:
        """The server's own default, else the one from the settings."""
        row = await self._db.fetchone(
            "SELECT credits, period FROM guild_quotas WHERE guild_id = ?", (guild_id,)
        )
        return Allowance(row[0], row[1], "server") if row else self._default

    async def set_guild_default(
        self, guild_id: int, actor_id: int, credits: float, period: str | None = None
    ) -> Change:
        """Every member's allowance unless a role or member override says otherwise."""
        if period is not None and period not in PERIODS:
            raise ValueError(f"unknown period {period!r}")
        async with self._db.transaction() as conn:
            current = await self.guild_default(guild_id)
            period = period or current.period
            await conn.execute(
                """INSERT INTO guild_quotas (guild_id, credits, period) VALUES (?, ?, ?)
                   ON CONFLICT (guild_id) DO UPDATE
                   SET credits = excluded.credits, period = excluded.period""",
                (guild_id, credits, period),
            )
            change = Change(f"{current.credits:.2f}/{current.period}", f"{credits:.2f}/{period}")
            await self._audit(conn, guild_id, actor_id, "quota.default", "server", change)
        return change

    async def reset_usage(self, guild_id: int, actor_id: int, user_id: int) -> Change:
        """Forget the member's usage so far this period (the charges stay for reports)."""
        async with self._db.transaction() as conn:
            allowance = await self.guild_default(guild_id)
            now = self.clock()
            since = await self._usage_start(guild_id, user_id, period_window(allowance.period, now))
            row = await _one(
                conn,
                """SELECT COALESCE(SUM(amount), 0) FROM charges WHERE guild_id = ?
                   AND user_id = ? AND state = 'committed' AND created_at >= ?""",
                (guild_id, user_id, since),
            )
            await conn.execute(
                """INSERT INTO usage_resets (guild_id, user_id, reset_at) VALUES (?, ?, ?)
                   ON CONFLICT (guild_id, user_id) DO UPDATE SET reset_at = excluded.reset_at""",
                (guild_id, user_id, now),
            )
            change = Change(f"used {row[0] if row else 0:.2f}", "used 0.00")
            await self._audit(conn, guild_id, actor_id, "quota.reset", f"member:{user_id}", change)
        return change

    async def block(self, guild_id: int, actor_id: int, user_id: int, reason: str | None) -> Change:
        async with self._db.transaction() as conn:
            before = await self.block_of(guild_id, user_id)
            await conn.execute(
                """INSERT INTO blocks (guild_id, user_id, reason, blocked_by, at)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason,
                       blocked_by = excluded.blocked_by, at = excluded.at""",
                (guild_id, user_id, reason, actor_id, self.clock()),
            )
            change = Change(_block_text(before), _block_text(Block(reason, actor_id, 0)))
            await self._audit(conn, guild_id, actor_id, "block", f"member:{user_id}", change)
        return change

    async def unblock(self, guild_id: int, actor_id: int, user_id: int) -> Change | None:
        """None when the member was not blocked (nothing changed, nothing audited)."""
        async with self._db.transaction() as conn:
            before = await self.block_of(guild_id, user_id)
            if before is None:
                return None
            await conn.execute(
                "DELETE FROM blocks WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
            )
            change = Change(_block_text(before), _block_text(None))
            await self._audit(conn, guild_id, actor_id, "unblock", f"member:{user_id}", change)
        return change

    # -- where alerts go ----------------------------------------------------------------

    async def _set_server_setting(
        self,
        guild_id: int,
        actor_id: int,
        column: str,
        value: object,
        describe: Callable[[Any], str],
        action: str,
    ) -> Change:
        """Change one column of `guild_settings` and audit it, in one transaction."""
        if column not in _SERVER_SETTINGS:
            raise ValueError(f"unknown server setting {column!r}")
        async with self._db.transaction() as conn:
            row = await _one(
                conn,
                f"SELECT {column} FROM guild_settings WHERE guild_id = ?",  # noqa: S608 - fixed names
                (guild_id,),
            )
            await conn.execute(
                f"""INSERT INTO guild_settings (guild_id, {column}) VALUES (?, ?)
                    ON CONFLICT (guild_id) DO UPDATE SET {column} = excluded.{column}""",  # noqa: S608
                (guild_id, value),
            )
            change = Change(describe(row[0] if row else None), describe(value))
            await self._audit(conn, guild_id, actor_id, action, "server", change)
        return change

    async def _server_setting(self, guild_id: int, column: str) -> Any:
        if column not in _SERVER_SETTINGS:
            raise ValueError(f"unknown server setting {column!r}")
        row = await self._db.fetchone(
            f"SELECT {column} FROM guild_settings WHERE guild_id = ?",  # noqa: S608 - fixed names
            (guild_id,),
        )
        return row[0] if row else None

    async def set_alerts_channel(
        self, guild_id: int, actor_id: int, channel_id: int | None
    ) -> Change:
        return await self._set_server_setting(
            guild_id, actor_id, "alerts_channel_id", channel_id, _channel_text, "alerts.channel"
        )

    async def alerts_channel(self, guild_id: int) -> int | None:
        return await self._server_setting(guild_id, "alerts_channel_id")

    async def set_iterate_author_only(self, guild_id: int, actor_id: int, value: bool) -> Change:
        return await self._set_server_setting(
            guild_id, actor_id, "iterate_author_only", int(value), _who_iterates, "iteration"
        )

    async def iterate_author_only(self, guild_id: int) -> bool | None:
        """The server's choice, or None when it left it to the bot-wide setting."""
        value = await self._server_setting(guild_id, "iterate_author_only")
        return None if value is None else bool(value)

    async def alerts_channels(self) -> list[tuple[int, int]]:
        """(guild id, channel id) for every server that chose an alerts channel."""
        rows = await self._db.fetchall(
            """SELECT guild_id, alerts_channel_id FROM guild_settings
               WHERE alerts_channel_id IS NOT NULL ORDER BY guild_id"""
        )
        return [(r[0], r[1]) for r in rows]


# Fixed table and column names for the two kinds of override (never user input).
_OVERRIDES = {"member": ("member_quotas", "user_id"), "role": ("role_quotas", "role_id")}


# Columns of guild_settings that admins change (never user input).
_SERVER_SETTINGS = ("alerts_channel_id", "iterate_author_only")


def _who_iterates(author_only: object) -> str:
    if author_only is None:
        return "default"
    return "only the author" if author_only else "anyone"


def _block_text(block: Block | None) -> str:
    if block is None:
        return "not blocked"
    return f"blocked: {block.reason}" if block.reason else "blocked"


def _channel_text(channel_id: int | None) -> str:
    return "off" if channel_id is None else f"channel:{channel_id}"
