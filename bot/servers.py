"""The operator's view of the servers: which are served, what each may spend, and the
server alerts (budget 80 % and 100 % used). Every change is audited."""

from __future__ import annotations

from dataclasses import dataclass

from bot.administration import Change, ServerAdmin
from bot.db import servers
from bot.db.connection import Database
from bot.errors import BadInput
from bot.health import Incident, IncidentKind
from bot.ledger import BudgetStatus, Ledger

MSG_NOT_SERVED = "Kontext is not enabled on this server."
# Alert a server's admins when its spend this period first reaches these shares.
BUDGET_LEVELS = ((1.0, IncidentKind.BUDGET_SPENT), (0.8, IncidentKind.BUDGET_WARNING))
EPSILON = 1e-9


class NotServed(BadInput):
    """This server is not on the operator's list: nothing is done, nothing is spent."""

    def __init__(self) -> None:
        super().__init__(MSG_NOT_SERVED)


@dataclass(frozen=True)
class ServerSummary:
    guild_id: int
    allowed: bool
    members: int  # members charged this period
    budget: BudgetStatus


class Servers:
    def __init__(
        self,
        database: Database,
        ledger: Ledger,
        admin: ServerAdmin,
        *,
        allowed_guild_ids: tuple[int, ...],
    ) -> None:
        self._db = database
        self._ledger = ledger
        self._admin = admin  # writes the audit rows
        self._listed = frozenset(allowed_guild_ids)  # ALLOWED_GUILD_IDS; empty = every server
        self._choices: dict[int, bool] = {}  # the operator's allow/deny, read at start-up
        self._alerted: set[tuple[int, float, IncidentKind]] = set()

    async def load(self) -> None:
        self._choices = await servers.access(self._db)

    # -- access -------------------------------------------------------------------------

    def allowed(self, guild_id: int | None) -> bool:
        """The operator's choice for this server, else ALLOWED_GUILD_IDS (empty: all).
        Direct messages are never served (nothing in them is paid for)."""
        if guild_id is None:
            return False
        choice = self._choices.get(guild_id)
        if choice is not None:
            return choice
        return not self._listed or guild_id in self._listed

    def check_served(self, guild_id: int | None) -> None:
        if not self.allowed(guild_id):
            raise NotServed

    async def set_allowed(self, guild_id: int, actor_id: int, allowed: bool) -> Change:
        before = "allowed" if self.allowed(guild_id) else "denied"
        change = Change(before, "allowed" if allowed else "denied")
        async with self._db.transaction() as conn:
            await servers.set_access(conn, guild_id, allowed)
            await self._admin.audit(conn, guild_id, actor_id, "server.access", "server", change)
        self._choices[guild_id] = allowed
        return change

    # -- budgets ------------------------------------------------------------------------

    async def set_budget(self, guild_id: int, actor_id: int, credits: float | None) -> Change:
        """The server's budget per period; None: back to SERVER_BUDGET_CREDITS."""
        before = await self._ledger.budget(guild_id)
        async with self._db.transaction() as conn:
            await servers.set_budget(conn, guild_id, credits)
            after = self._ledger.server_budget if credits is None else credits
            source = "default" if credits is None else "operator"
            change = Change(
                _budget_text(before.credits, before.source), _budget_text(after, source)
            )
            await self._admin.audit(conn, guild_id, actor_id, "server.budget", "server", change)
        return change

    async def summaries(self, guild_ids: set[int]) -> list[ServerSummary]:
        """Every server given plus every one with a record, biggest spenders first."""
        found = []
        for guild_id in sorted(guild_ids | await servers.known(self._db)):
            budget = await self._ledger.budget(guild_id)
            members = await servers.members_charged(self._db, guild_id, budget.window.start)
            found.append(ServerSummary(guild_id, self.allowed(guild_id), members, budget))
        found.sort(key=lambda s: (-(s.budget.spent + s.budget.held), s.guild_id))
        return found

    async def budget_incident(self, guild_id: int) -> Incident | None:
        """After a charge: the budget level this server has just reached, once a period."""
        budget = await self._ledger.budget(guild_id)
        if budget.credits <= 0:
            return None
        used = budget.spent + budget.held
        for share, kind in BUDGET_LEVELS:
            if used + EPSILON >= share * budget.credits:
                key = (guild_id, budget.window.start, kind)
                if key in self._alerted:
                    return None
                self._alerted.add(key)
                return Incident(
                    kind,
                    f"{used:.2f} of {budget.credits:.2f} credits used",
                    balance=used,
                    threshold=budget.credits,
                    guild_id=guild_id,
                    resets_at=budget.window.resets_at,
                )
        return None


def _budget_text(credits: float, source: str) -> str:
    return f"{credits:.2f}" + (" (default)" if source == "default" else "")
