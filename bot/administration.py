"""What a server's admins change: allowances, usage resets, blocks and server settings.
Every change is written to the audit log in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from bot.db import audit, charges, quotas, server_settings
from bot.db.connection import Database
from bot.errors import BadInput
from bot.ledger import Ledger
from bot.periods import PERIODS, period_window


@dataclass(frozen=True)
class Change:
    """What an admin action changed, as the audit log records it."""

    before: str
    after: str


@dataclass(frozen=True)
class Block:
    reason: str | None
    blocked_by: int
    at: float


class MemberBlocked(BadInput):
    """An admin blocked this member from editing."""


class AboveBudget(BadInput):
    """An allowance larger than the server's whole budget (the operator sets that)."""


def amount_text(amount: float | None) -> str:
    return "none" if amount is None else f"{amount:.2f}"


def _block_text(block: Block | quotas.BlockRow | None) -> str:
    if block is None:
        return "not blocked"
    return f"blocked: {block.reason}" if block.reason else "blocked"


def _channel_text(channel_id: int | None) -> str:
    return "off" if channel_id is None else f"channel:{channel_id}"


def _who_iterates(author_only: object) -> str:
    if author_only is None:
        return "default"
    return "only the author" if author_only else "anyone"


class ServerAdmin:
    """Audited changes to one server's rules, and the reads that go with them."""

    def __init__(
        self, database: Database, ledger: Ledger, *, iterate_author_only_default: bool
    ) -> None:
        self._db = database
        self._ledger = ledger
        self._iterate_author_only_default = iterate_author_only_default

    @property
    def clock(self) -> Callable[[], float]:
        return self._ledger.clock

    async def audit(
        self,
        conn: aiosqlite.Connection,
        guild_id: int,
        actor_id: int,
        action: str,
        target: str | None,
        change: Change,
    ) -> None:
        """Write an audit row inside the change's own transaction (`conn`)."""
        await audit.insert(
            conn,
            guild_id=guild_id,
            actor_id=actor_id,
            action=action,
            target=target,
            before=change.before,
            after=change.after,
            at=self.clock(),
        )

    async def record(
        self, guild_id: int, actor_id: int, action: str, target: str | None, change: Change
    ) -> None:
        """Audit an admin action that changed nothing in the database (e.g. a key check)."""
        async with self._db.transaction() as conn:
            await self.audit(conn, guild_id, actor_id, action, target, change)

    async def audit_log(self, guild_id: int, limit: int) -> list[audit.AuditEntry]:
        return await audit.latest(self._db, guild_id, limit)

    # -- allowances ---------------------------------------------------------------------

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

    async def _check_within_budget(self, guild_id: int, credits: float | None) -> None:
        """No allowance may exceed what the whole server may spend in a period."""
        if credits is None:
            return
        budget = await self._ledger.budget(guild_id)
        if credits > budget.credits + 1e-9:
            raise AboveBudget(
                f"That is more than this server's whole budget of {budget.credits:.2f} credits "
                "per period, which the bot's operator sets. Nothing was changed."
            )

    async def _set_override(
        self, kind: str, guild_id: int, actor_id: int, key: int, credits: float | None
    ) -> Change:
        await self._check_within_budget(guild_id, credits)
        async with self._db.transaction() as conn:
            before = await quotas.override(self._db, kind, guild_id, key)
            await quotas.set_override(conn, kind, guild_id, key, credits)
            change = Change(amount_text(before), amount_text(credits))
            action = f"quota.{kind}" + (".clear" if credits is None else "")
            await self.audit(conn, guild_id, actor_id, action, f"{kind}:{key}", change)
        return change

    async def set_guild_default(
        self, guild_id: int, actor_id: int, credits: float, period: str | None = None
    ) -> Change:
        """Every member's allowance unless a role or member override says otherwise."""
        if period is not None and period not in PERIODS:
            raise ValueError(f"unknown period {period!r}")
        await self._check_within_budget(guild_id, credits)
        async with self._db.transaction() as conn:
            current = await self._ledger.guild_default(guild_id)
            period = period or current.period
            await quotas.set_guild_default(conn, guild_id, credits, period)
            change = Change(f"{current.credits:.2f}/{current.period}", f"{credits:.2f}/{period}")
            await self.audit(conn, guild_id, actor_id, "quota.default", "server", change)
        return change

    async def reset_usage(self, guild_id: int, actor_id: int, user_id: int) -> Change:
        """Forget the member's usage so far this period (the charges stay for reports)."""
        async with self._db.transaction() as conn:
            allowance = await self._ledger.guild_default(guild_id)
            now = self.clock()
            window = period_window(allowance.period, now)
            since = await self._ledger.usage_start(guild_id, user_id, window)
            used = await charges.spent_since(self._db, guild_id, user_id, since)
            await quotas.set_usage_reset(conn, guild_id, user_id, now)
            change = Change(f"used {used:.2f}", "used 0.00")
            await self.audit(conn, guild_id, actor_id, "quota.reset", f"member:{user_id}", change)
        return change

    # -- blocks -------------------------------------------------------------------------

    async def block_of(self, guild_id: int, user_id: int) -> Block | None:
        row = await quotas.block_of(self._db, guild_id, user_id)
        return None if row is None else Block(row.reason, row.blocked_by, row.at)

    async def check_not_blocked(self, guild_id: int, user_id: int) -> None:
        block = await self.block_of(guild_id, user_id)
        if block is not None:
            why = f" Reason: {block.reason}" if block.reason else ""
            raise MemberBlocked(f"The server admins have blocked you from editing images.{why}")

    async def block(self, guild_id: int, actor_id: int, user_id: int, reason: str | None) -> Change:
        async with self._db.transaction() as conn:
            before = await self.block_of(guild_id, user_id)
            await quotas.set_block(conn, guild_id, user_id, reason, actor_id, self.clock())
            change = Change(_block_text(before), _block_text(Block(reason, actor_id, 0)))
            await self.audit(conn, guild_id, actor_id, "block", f"member:{user_id}", change)
        return change

    async def unblock(self, guild_id: int, actor_id: int, user_id: int) -> Change | None:
        """None when the member was not blocked (nothing changed, nothing audited)."""
        async with self._db.transaction() as conn:
            before = await self.block_of(guild_id, user_id)
            if before is None:
                return None
            await quotas.delete_block(conn, guild_id, user_id)
            change = Change(_block_text(before), _block_text(None))
            await self.audit(conn, guild_id, actor_id, "unblock", f"member:{user_id}", change)
        return change

    # -- server settings ----------------------------------------------------------------

    async def _set_setting(
        self,
        guild_id: int,
        actor_id: int,
        column: str,
        value: object,
        describe: Callable[[Any], str],
        action: str,
    ) -> Change:
        async with self._db.transaction() as conn:
            before = await server_settings.get(self._db, guild_id, column)
            await server_settings.put(conn, guild_id, column, value)
            change = Change(describe(before), describe(value))
            await self.audit(conn, guild_id, actor_id, action, "server", change)
        return change

    async def set_alerts_channel(
        self, guild_id: int, actor_id: int, channel_id: int | None
    ) -> Change:
        return await self._set_setting(
            guild_id, actor_id, "alerts_channel_id", channel_id, _channel_text, "alerts.channel"
        )

    async def alerts_channel(self, guild_id: int) -> int | None:
        return await server_settings.get(self._db, guild_id, "alerts_channel_id")

    async def alerts_channels(self) -> list[tuple[int, int]]:
        """(guild id, channel id) for every server that chose an alerts channel."""
        return await server_settings.alerts_channels(self._db)

    async def set_iterate_author_only(self, guild_id: int, actor_id: int, value: bool) -> Change:
        return await self._set_setting(
            guild_id, actor_id, "iterate_author_only", int(value), _who_iterates, "iteration"
        )

    async def iterate_author_only(self, guild_id: int) -> bool:
        """Whether only a result's author may continue it here: the server's choice,
        else the operator's ITERATE_AUTHOR_ONLY."""
        value = await server_settings.get(self._db, guild_id, "iterate_author_only")
        return self._iterate_author_only_default if value is None else bool(value)

    async def set_safety_filter_off(self, guild_id: int, actor_id: int, value: bool) -> Change:
        return await self._set_setting(
            guild_id, actor_id, "safety_filter_off", int(value), _filter_text, "safety"
        )

    async def safety_filter_off(self, guild_id: int) -> bool:
        """Whether this server's admins turned the safety filter off (it only ever applies
        in age-restricted channels, and only when the operator allows it)."""
        return bool(await server_settings.get(self._db, guild_id, "safety_filter_off"))


def _filter_text(off: object) -> str:
    return "filter off in age-restricted channels" if off else "filter on"
