"""The operator's levers on the API itself: a key check and resuming after a halt.
Both are audited."""

from __future__ import annotations

from dataclasses import dataclass

from bot.administration import Change, ServerAdmin
from bot.credits import CreditMeter
from bot.health import ServiceHealth
from bot.keycheck import KeyChecker, KeyCheckResult, run_key_check


@dataclass(frozen=True)
class Resumed:
    """Edits may run again; `balance_under_reserve` warns that the next edit halts them."""

    balance: float | None
    reserve: float

    @property
    def balance_under_reserve(self) -> bool:
        return self.reserve > 0 and self.balance is not None and self.balance < self.reserve


class OperatorDesk:
    def __init__(
        self, api: KeyChecker, meter: CreditMeter, health: ServiceHealth, admin: ServerAdmin
    ) -> None:
        self._api = api
        self._meter = meter
        self._health = health
        self._admin = admin

    async def check_key(self, guild_id: int, actor_id: int) -> KeyCheckResult:
        before = self._health.halted_reason or "running"
        result = await run_key_check(self._api, self._meter, self._health)
        answer = f"HTTP {result.status}" if result.status else f"failed ({result.error})"
        after = f"{answer}: {result.halted_reason or 'running'}"
        await self._admin.record(guild_id, actor_id, "api.check", "api", Change(before, after))
        return result

    async def resume(self, guild_id: int, actor_id: int) -> Resumed | None:
        """None when nothing was halted (nothing changed, nothing audited)."""
        reason = self._health.halted_reason
        if reason is None and not self._health.needs_admin:
            return None
        self._health.resume()
        await self._admin.record(
            guild_id, actor_id, "api.resume", "api", Change(reason or "held", "running")
        )
        return Resumed(self._meter.last_balance, self._health.reserve)
