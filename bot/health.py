"""Operator health: the one place that decides when edits halt, when they resume, and
which incidents the operator is alerted to.

A halt has a kind (key rejected, out of credits, under the account reserve). While halted,
one request every `probe_interval_s` is let through as a probe and its success clears the
halt; after a rejected key nothing at all is sent until an admin's check succeeds or an
admin resumes. Incidents (halts, a low balance, a run of failures at the API) reach the
`incident_hooks` once each.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot import segmind

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 300.0
# Consecutive failed edits (after the client's own retries) that count as an outage.
FAILURE_STREAK = 3


class IncidentKind(enum.StrEnum):
    KEY_REJECTED = "key_rejected"
    OUT_OF_CREDITS = "out_of_credits"
    ACCOUNT_FLOOR = "account_floor"
    LOW_BALANCE = "low_balance"
    API_FAILURES = "api_failures"
    PAUSED = "paused"  # the operator paused every edit
    BUDGET_WARNING = "budget_warning"  # a server used 80 % of its budget
    BUDGET_SPENT = "budget_spent"  # a server used all of it


@dataclass(frozen=True)
class Incident:
    """Something the operator should know; `detail` is plain, safe text."""

    kind: IncidentKind
    detail: str
    balance: float | None = None
    threshold: float | None = None
    guild_id: int | None = None  # a server's own incident; None: the account's
    resets_at: float | None = None


# A halt: edits stop until a probe, a check or the operator clears it.
Halt = Incident
_OUTAGES = (
    segmind.ServerError,
    segmind.RateLimited,
    segmind.ConnectFailed,
    segmind.SegmindTimeout,
    segmind.InvalidResponse,
)


def floor_halt(balance: float, reserve: float) -> Halt:
    return Incident(
        IncidentKind.ACCOUNT_FLOOR,
        f"account balance {balance:.2f} is under the reserve {reserve:.2f}",
        balance=balance,
        threshold=reserve,
    )


@dataclass(kw_only=True, eq=False)
class ServiceHealth:
    """Whether the API may be called now, and every rule that changes it."""

    reserve: float = 0.0
    low_balance: float = 0.0
    streak: int = FAILURE_STREAK
    probe_interval_s: float = PROBE_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    halted: Halt | None = field(default=None, init=False)
    needs_admin: bool = field(default=False, init=False)
    incident_hooks: list[Callable[[Incident], object]] = field(default_factory=list, init=False)
    _halted_at: float = field(default=0.0, init=False)
    _probing: bool = field(default=False, init=False)
    _failures: int = field(default=0, init=False)
    _low: bool = field(default=False, init=False)

    @property
    def paused(self) -> bool:
        """The operator paused every edit (only their resume ends it)."""
        return self.halted is not None and self.halted.kind == IncidentKind.PAUSED

    @property
    def halted_reason(self) -> str | None:
        return None if self.halted is None else self.halted.detail

    # -- may a call go out? -------------------------------------------------------------

    def allow_call(self) -> bool:
        """True when a call may be sent now (normal operation, or this call is the probe)."""
        if self.needs_admin:
            return False
        if self.halted is None:
            return True
        if not self._probing and self.clock() - self._halted_at >= self.probe_interval_s:
            self._probing = True
            log.info("Sending a probe request while halted (%s)", self.halted.detail)
            return True
        return False

    def check_floor(self, balance: float | None) -> None:
        """Halt new edits while the last balance is under the operator's reserve."""
        under = self.reserve > 0 and balance is not None and balance < self.reserve
        if under and self.halted is None:
            assert balance is not None
            self.halt(floor_halt(balance, self.reserve))

    # -- what happened ------------------------------------------------------------------

    def halt(self, halt: Halt) -> None:
        if self.paused:
            return  # the operator's pause outranks whatever an in-flight call reports
        first = self.halted is None
        self.halted = halt
        self._halted_at = self.clock()
        self._probing = False
        if first:
            log.error("Edits halted: %s. Fix it, then edits resume after a probe.", halt.detail)
            self._tell(halt)

    def api_failed(
        self,
        exc: segmind.SegmindError,
        *,
        balance: float | None = None,
        edit_cost: float | None = None,
    ) -> bool:
        """A call failed: operator problems halt (True), a run of outages is reported.

        A 406 halts only when it means the account is empty: its answer says so, or the
        last `balance` seen is below one edit's cost. Any other 406 refused that request.
        """
        if isinstance(exc, segmind.AuthError):
            self.needs_admin = True  # a rejected key will not fix itself: no probes
            self.halt(Incident(IncidentKind.KEY_REJECTED, exc.message))
            return True
        broke = balance is not None and edit_cost is not None and balance < edit_cost
        if isinstance(exc, segmind.InsufficientCredits) or (exc.status == 406 and broke):
            self.halt(Incident(IncidentKind.OUT_OF_CREDITS, segmind.OUT_OF_CREDITS))
            return True
        self._probing = False
        if isinstance(exc, _OUTAGES):
            self._failures += 1
            if self._failures == self.streak:
                self._tell(
                    Incident(
                        IncidentKind.API_FAILURES,
                        f"The last {self._failures} edits failed at Segmind "
                        f"(latest: {exc.message}).",
                    )
                )
        else:
            self._failures = 0  # a refused request: the API itself is up
        return False

    def call_succeeded(self) -> None:
        self._failures = 0
        if self.paused:
            return  # a call that started before the pause; only the operator resumes
        self._clear()

    def _clear(self) -> None:
        if self.halted is not None:
            log.warning("Edits resumed: %s is over", self.halted.kind)
        self.halted = None
        self.needs_admin = False
        self._probing = False

    def call_failed_otherwise(self) -> None:
        """A probe that failed for a reason unrelated to the API frees the probe slot."""
        self._probing = False

    def balance_seen(self, balance: float) -> None:
        """Alert once when the balance falls under the alert level, again only after it
        was back above it (a top-up) and fell again."""
        if self.low_balance <= 0:
            return
        if balance >= self.low_balance:
            self._low = False
        elif not self._low:
            self._low = True
            self._tell(
                Incident(
                    IncidentKind.LOW_BALANCE,
                    f"balance {balance:.2f} is under {self.low_balance:.2f}",
                    balance=balance,
                    threshold=self.low_balance,
                )
            )

    def check_passed(self, balance: float | None) -> None:
        """An admin's key check got through: clear the halt unless the floor still holds
        (then keep that halt, without the admin hold a rejected key had set)."""
        if self.paused:
            return  # the key works, but the operator's pause stands until they resume
        if self.reserve > 0 and balance is not None and balance < self.reserve:
            self.needs_admin = False
            self.halt(floor_halt(balance, self.reserve))
        else:
            self._clear()

    def pause(self, reason: str) -> None:
        """The operator stops every new edit until they resume (no probes meanwhile)."""
        self.needs_admin = True
        self.halt(Incident(IncidentKind.PAUSED, reason))

    def resume(self) -> None:
        """The operator says the problem is fixed (or ends a pause)."""
        self._clear()

    def _tell(self, incident: Incident) -> None:
        for hook in self.incident_hooks:
            hook(incident)
