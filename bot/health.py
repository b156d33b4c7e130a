"""Whether the API can be called at all, so doomed requests are not sent."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 300.0


class ServiceHealth:
    """Halts edits after an operator problem (bad key, no credits) until a probe succeeds.

    Every `probe_interval_s` one request is let through as a health check; its success
    clears the halt. `on_incident` is called once per incident, not once per request.
    After `hold_for_admin` (a rejected key) no probe is sent: only an admin clears it.
    """

    def __init__(
        self,
        *,
        probe_interval_s: float = PROBE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = probe_interval_s
        self._clock = clock
        self.halted_reason: str | None = None
        self._halted_at = 0.0
        self._probing = False
        self.needs_admin = False
        self.incident_hooks: list[Callable[[str], object]] = []

    def allow_call(self) -> bool:
        """True when a call may be sent now (normal operation, or this call is the probe)."""
        if self.needs_admin:
            return False
        if self.halted_reason is None:
            return True
        if not self._probing and self._clock() - self._halted_at >= self._interval:
            self._probing = True
            log.info("Sending a probe request while halted (%s)", self.halted_reason)
            return True
        return False

    def halt(self, reason: str) -> None:
        first = self.halted_reason is None
        self.halted_reason = reason
        self._halted_at = self._clock()
        self._probing = False
        if first:
            log.error("Edits halted: %s. Fix it, then edits resume after a probe.", reason)
            for hook in self.incident_hooks:
                hook(reason)

    def hold_for_admin(self) -> None:
        """A problem that will not fix itself (a rejected key): send nothing, probes
        included, until an admin's check succeeds or an admin resumes."""
        self.needs_admin = True

    def call_succeeded(self) -> None:
        if self.halted_reason is not None:
            log.warning("Edits resumed: the API accepted a request again")
        self.halted_reason = None
        self.needs_admin = False
        self._probing = False

    def call_failed_otherwise(self) -> None:
        """A probe that failed for an unrelated reason frees the probe slot."""
        self._probing = False

    def resume(self) -> None:
        """An admin says the problem is fixed."""
        self.call_succeeded()
