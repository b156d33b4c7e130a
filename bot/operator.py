"""The operator's levers: who the operators are, a key check, pausing and resuming every
edit. Each is audited (as server 0: they concern the whole bot)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.administration import Change, ServerAdmin
from bot.credits import CreditMeter
from bot.db import servers
from bot.db.connection import Database
from bot.health import ServiceHealth
from bot.keycheck import KeyChecker, KeyCheckResult, run_key_check

BOT_WIDE = 0  # the audit log's server id for a change to the whole bot
PAUSE_KEY = "paused"


@dataclass(frozen=True)
class Resumed:
    """Edits may run again; `balance_under_reserve` warns that the next edit halts them."""

    balance: float | None
    reserve: float

    @property
    def balance_under_reserve(self) -> bool:
        return self.reserve > 0 and self.balance is not None and self.balance < self.reserve


@dataclass(eq=False)
class OperatorDesk:
    database: Database
    api: KeyChecker
    meter: CreditMeter
    health: ServiceHealth
    admin: ServerAdmin
    operator_ids: frozenset[int] = frozenset()

    def set_operators(self, user_ids: Iterable[int]) -> None:
        """OPERATOR_IDS, or the application's owner (or team) read from Discord."""
        self.operator_ids = frozenset(user_ids)

    def is_operator(self, user_id: int) -> bool:
        return user_id in self.operator_ids

    async def load(self) -> None:
        """A pause survives restarts."""
        reason = await servers.state(self.database, PAUSE_KEY)
        if reason is not None:
            self.health.pause(reason)

    async def check_key(self, actor_id: int) -> KeyCheckResult:
        before = self.health.halted_reason or "running"
        result = await run_key_check(self.api, self.meter, self.health)
        answer = f"HTTP {result.status}" if result.status else f"failed ({result.error})"
        after = f"{answer}: {result.halted_reason or 'running'}"
        await self.admin.record(BOT_WIDE, actor_id, "api.check", "api", Change(before, after))
        return result

    async def pause(self, actor_id: int, reason: str) -> Change:
        change = Change(self.health.halted_reason or "running", f"paused: {reason}")
        async with self.database.transaction() as conn:  # the pause and its audit row together
            await servers.set_state(conn, PAUSE_KEY, reason)
            await self.admin.audit(conn, BOT_WIDE, actor_id, "api.pause", "api", change)
        self.health.pause(reason)
        return change

    async def resume(self, actor_id: int) -> Resumed | None:
        """None when nothing was halted (nothing changed, nothing audited)."""
        halted = self.health.halted
        if halted is None and not self.health.needs_admin:
            return None
        change = Change(halted.detail if halted else "held", "running")
        async with self.database.transaction() as conn:  # the resume and its audit row together
            if self.health.paused:
                await servers.set_state(conn, PAUSE_KEY, None)
            await self.admin.audit(conn, BOT_WIDE, actor_id, "api.resume", "api", change)
        self.health.resume()
        return Resumed(self.meter.last_balance, self.health.reserve)
