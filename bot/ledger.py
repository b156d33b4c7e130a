"""The quota ledger: per-member allowances and per-server budgets in Segmind credits,
reserved before a call, held at the real cost after a 200, charged once Discord has the
result, and given back after any failure, or when a result that could never be delivered
expires."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from bot.db import charges, quotas, servers
from bot.db.connection import Database
from bot.errors import BadInput
from bot.periods import PERIODS, Window, period_window

log = logging.getLogger(__name__)

EPSILON = charges.EPSILON


@dataclass(frozen=True)
class Allowance:
    credits: float
    period: str
    source: str  # 'default', 'server', 'role' or 'member'


@dataclass(frozen=True)
class QuotaStatus:
    allowance: Allowance
    window: Window
    used: float  # charged this period, or held for results awaiting delivery
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
    guild_id: int = 0


@dataclass(frozen=True)
class BudgetStatus:
    """A server's budget this period (`source`: 'default' or 'operator')."""

    credits: float
    source: str
    window: Window
    spent: float  # committed this period
    held: float  # reserved by edits still running

    @property
    def left(self) -> float:
        return max(0.0, self.credits - self.spent - self.held)


class BudgetExceeded(BadInput):
    """The server's budget cannot cover another edit; `resets_at` None = never."""

    def __init__(self, status: BudgetStatus) -> None:
        super().__init__(
            "This server has used its editing budget for now, so no edit was started "
            "and nothing was charged."
        )
        self.resets_at = status.window.resets_at


class QuotaExceeded(BadInput):
    """The member's allowance cannot cover another edit; `resets_at` None = never."""

    def __init__(self, status: QuotaStatus, amount: float) -> None:
        super().__init__(
            f"You're out of edits for now: {status.left:.2f} of your "
            f"{status.allowance.credits:.2f} credits left, and an edit costs about {amount:.2f}."
        )
        self.resets_at = status.window.resets_at


class Ledger:
    """All quota state lives in SQLite; every money movement is one atomic statement."""

    def __init__(
        self,
        database: Database,
        *,
        default_credits: float,
        default_period: str,
        server_budget: float = float("inf"),
        budget_period: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if default_period not in PERIODS or (budget_period or default_period) not in PERIODS:
            raise ValueError(f"unknown period {default_period!r}")
        self._db = database
        self.default = Allowance(default_credits, default_period, "default")
        self.server_budget = server_budget  # SERVER_BUDGET_CREDITS
        self.budget_period = budget_period or default_period  # QUOTA_PERIOD
        self.clock = clock
        # Told of every charge, with (server id, amount), and of every refund of one.
        self.charge_hooks: list[Callable[[int, float], object]] = []
        self.refund_hooks: list[Callable[[], object]] = []

    # -- allowances ---------------------------------------------------------------------

    async def guild_default(self, guild_id: int) -> Allowance:
        """The server's own default, else the one from the settings."""
        return self._guild_default(await quotas.guild_default(self._db, guild_id))

    def _guild_default(self, own: tuple[float, str] | None) -> Allowance:
        return Allowance(*own, "server") if own is not None else self.default

    def _allowance(self, terms: quotas.Terms) -> Allowance:
        """`allowance`, from terms already read."""
        base = self._guild_default(terms.guild_default)
        if terms.member is not None:
            return Allowance(terms.member, base.period, "member")
        if terms.role is not None:
            return Allowance(terms.role, base.period, "role")
        return base

    async def allowance(self, guild_id: int, user_id: int, role_ids: Iterable[int]) -> Allowance:
        """Member override, else the highest of the member's roles, else the server default."""
        return self._allowance(await quotas.terms(self._db, guild_id, user_id, list(role_ids)))

    async def usage_start(self, guild_id: int, user_id: int, window: Window) -> float:
        """Usage counts from the period's start, or from an admin's reset if later."""
        return _usage_start(window, await quotas.usage_reset_at(self._db, guild_id, user_id))

    async def status(self, guild_id: int, user_id: int, role_ids: Iterable[int]) -> QuotaStatus:
        terms = await quotas.terms(self._db, guild_id, user_id, list(role_ids))
        return await self._status(guild_id, user_id, terms, self.clock())

    async def _status(
        self, guild_id: int, user_id: int, terms: quotas.Terms, now: float
    ) -> QuotaStatus:
        allowance = self._allowance(terms)
        window = period_window(allowance.period, now)
        since = _usage_start(window, terms.reset_at)
        usage = await charges.usage(self._db, guild_id, user_id, since)
        return QuotaStatus(allowance, window, used=usage.used, held=usage.held)

    async def budget(self, guild_id: int) -> BudgetStatus:
        """The server's budget this period: the operator's figure, else SERVER_BUDGET_CREDITS."""
        own = await servers.budget(self._db, guild_id)
        return await self._budget(guild_id, own, self.clock())

    def _budget_credits(self, own: float | None) -> tuple[float, str]:
        return (own, "operator") if own is not None else (self.server_budget, "default")

    async def _budget(self, guild_id: int, own: float | None, now: float) -> BudgetStatus:
        credits, source = self._budget_credits(own)
        window = period_window(self.budget_period, now)
        spent, held = await servers.spent_and_held(self._db, guild_id, window.start)
        return BudgetStatus(credits, source, window, spent, held)

    async def check_allowance(
        self, guild_id: int, user_id: int, role_ids: Iterable[int], amount: float
    ) -> None:
        """Refuse early (nothing held) when the server's budget or the member's allowance
        cannot cover `amount` now; `reserve` remains the exact, atomic check."""
        terms = await quotas.terms(self._db, guild_id, user_id, list(role_ids))
        now = self.clock()
        budget = await self._budget(guild_id, terms.budget, now)
        if budget.left + EPSILON < amount:
            raise BudgetExceeded(budget)
        status = await self._status(guild_id, user_id, terms, now)
        if status.left + EPSILON < amount:
            raise QuotaExceeded(status, amount)

    # -- money --------------------------------------------------------------------------

    async def reserve(
        self, guild_id: int, user_id: int, role_ids: Iterable[int], amount: float
    ) -> Reservation:
        """Hold `amount` against the member's allowance and the server's budget, or raise
        QuotaExceeded / BudgetExceeded. The checks and the insert are one statement:
        concurrent edits can never overspend either."""
        terms = await quotas.terms(self._db, guild_id, user_id, list(role_ids))
        allowance = self._allowance(terms)
        now = self.clock()
        charge_id = await charges.reserve(
            self._db,
            guild_id=guild_id,
            user_id=user_id,
            amount=amount,
            allowance=allowance.credits,
            since=_usage_start(period_window(allowance.period, now), terms.reset_at),
            budget=self._budget_credits(terms.budget)[0],
            budget_since=period_window(self.budget_period, now).start,
            now=now,
        )
        if charge_id is None:
            budget = await self._budget(guild_id, terms.budget, now)
            if budget.left + EPSILON < amount:
                raise BudgetExceeded(budget)
            raise QuotaExceeded(await self._status(guild_id, user_id, terms, now), amount)
        return Reservation(charge_id, amount, guild_id)

    async def attach(self, reservation: Reservation, generation_id: int) -> None:
        await charges.attach(self._db, reservation.id, generation_id)

    async def commit(self, reservation: Reservation, amount: float, source: str) -> bool:
        """Charge at once, with no result to deliver; False when already settled."""
        done = await charges.commit(self._db, reservation.id, amount, source, self.clock())
        self._spent(done, reservation, amount)
        return done

    async def hold(self, reservation: Reservation, amount: float, source: str) -> bool:
        """The API answered: hold the real cost (it counts as used) until Discord has the
        result (`bot.delivery` charges it then) or its kept copy expires (refunded)."""
        done = await charges.hold(self._db, reservation.id, amount, source)
        self._spent(done, reservation, amount)
        return done

    def _spent(self, done: bool, reservation: Reservation, amount: float) -> None:
        """The account paid for this edit: the spend metric hears it once."""
        if done:
            for hook in self.charge_hooks:
                hook(reservation.guild_id, amount)

    async def release(self, reservation: Reservation) -> bool:
        """Give the reservation back: the member pays nothing for an edit they did not get."""
        return await charges.release(self._db, reservation.id, self.clock())

    async def refund_generation(self, generation_id: int) -> bool:
        """Give back what an undelivered edit holds (its result was lost before delivery)."""
        changed = await charges.release_generation(self._db, generation_id, self.clock())
        if changed:
            log.warning(
                "Refunded generation %d: its result was lost before delivery", generation_id
            )
            for hook in self.refund_hooks:
                hook()
        return changed > 0

    async def refund_undelivered(
        self, finished_before: float, *, uploading: Collection[int] = ()
    ) -> list[int]:
        """Refund every result never delivered that finished before `finished_before`
        (its kept copy expired), except those `uploading` right now: Discord may take
        them, and a result it has is charged. Returns the generations refunded."""
        refunded = await charges.release_expired(
            self._db, finished_before, self.clock(), keep=uploading
        )
        if refunded:
            log.warning("Refunded %d result(s) never delivered before they expired", len(refunded))
        return refunded

    async def settle_stale(self, older_than_s: float) -> charges.Settled:
        """Settle reservations a crash left behind: an edit that succeeded holds its
        recorded cost until delivered (charged at once if Discord already had it), the
        rest are released."""
        now = self.clock()
        settled = await charges.settle_stale(self._db, now - older_than_s, now)
        if settled.held or settled.committed or settled.released:
            log.warning(
                "Settled money left by an interrupted run: %d held for delivery, "
                "%d charged (delivered), %d released",
                settled.held,
                settled.committed,
                settled.released,
            )
        return settled


def _usage_start(window: Window, reset_at: float | None) -> float:
    """Usage counts from the period's start, or from an admin's reset if later."""
    return window.start if reset_at is None else max(window.start, reset_at)
