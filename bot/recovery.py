"""After a crash or restart: finish what the last run left behind.

Before Discord connects, `settle` reads the jobs left unfinished, fails generations that
were interrupted, settles stale reservations (a succeeded edit holds its cost until it is
delivered) and expires old kept results. Once Discord is ready, `finish` queues waiting
edits again and, for each edit that was running, delivers its kept result (the API had
answered) or refunds and tells its member it did not finish. A kept result Discord will
not take stays held, for /history's Deliver, until it expires and is refunded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot import jobs
from bot.db import generations
from bot.db import jobs as job_rows
from bot.db.connection import Database
from bot.delivery import Delivery, Undelivered
from bot.errors import UserError
from bot.ledger import Ledger
from bot.ports import Channels
from bot.queue import JobEnd
from bot.service import Destination, EditService
from bot.upkeep import Upkeep

log = logging.getLogger(__name__)

NOTE_RESUMED = "finished after the bot restarted"
PROMPT_PREVIEW = 80


def did_not_finish(prompt: str) -> str:
    short = prompt if len(prompt) <= PROMPT_PREVIEW else prompt[:PROMPT_PREVIEW] + "…"
    return (
        f"your edit “{short}” did not finish because the bot restarted. "
        "You were not charged; please try again."
    )


@dataclass(eq=False)
class Recovery:
    database: Database
    ledger: Ledger
    upkeep: Upkeep
    delivery: Delivery
    edits: EditService
    _left: list[jobs.StoredJob] = field(default_factory=list, init=False)

    async def settle(self) -> None:
        """Before anything new runs: no call of this process can be running yet, so every
        pending generation was interrupted and every open reservation is stale."""
        self._left = await jobs.unfinished(self.database)
        interrupted = await generations.fail_interrupted(self.database)
        if interrupted:
            log.warning("Marked %d interrupted generation(s) as failed", interrupted)
        await self.ledger.settle_stale(older_than_s=0)
        await self.upkeep.at_start_up()

    async def finish(self, channels: Channels) -> None:
        """Once Discord is ready: deliver or refund what was running, queue what waited."""
        left, self._left = self._left, []
        if left:
            log.warning("Recovering %d edit(s) left by the previous run", len(left))
        for job in left:
            try:
                if job.state == "running":
                    await self._settle_running(job, channels)
                else:
                    self._resume(job, channels)
            except Exception:
                log.exception("Could not recover job %s", job.id)

    async def aclose(self) -> None:
        """Nothing of its own runs on: resumed edits are the queue's (EditService)."""

    async def _settle_running(self, job: jobs.StoredJob, channels: Channels) -> None:
        req = job.request
        gen = await generations.of_job(self.database, job.id)
        posted = None
        if gen is not None and gen.status == "succeeded":
            if gen.result_message_id is None:
                try:
                    posted = await self.delivery.deliver_kept(
                        gen.id,
                        lambda g: channels.poster(
                            g.channel_id, g.guild_id, reply_to_message_id=job.reply_to_message_id
                        ),
                        NOTE_RESUMED,
                    )
                except Undelivered as exc:
                    # Still kept and held: Deliver in /history, or refunded when it expires.
                    await job_rows.mark_finished(self.database, job.id, "failed")
                    if not exc.refused:  # a refusing channel was not written to: a DM was
                        await channels.tell(req.channel_id, req.guild_id, req.user_id, exc.message)
                    return
                if posted is None and await self._delivered_elsewhere(gen.id):
                    await job_rows.mark_finished(self.database, job.id, "done")
                    return
                if posted is None:
                    # Paid for, but the image is gone: give the money back before saying so.
                    await self.ledger.refund_generation(gen.id)
            if gen.result_message_id is not None or posted is not None:
                await job_rows.mark_finished(self.database, job.id, "done")
                return
        await job_rows.mark_finished(self.database, job.id, "failed")
        await channels.tell(
            req.channel_id, req.guild_id, req.user_id, did_not_finish(req.params.prompt)
        )

    async def _delivered_elsewhere(self, generation_id: int) -> bool:
        """Whether the member's own Deliver (/history) is posting the result right now, or
        has posted it: that upload charges it once Discord has it (or keeps it held), so a
        refund now would make a delivered result free."""
        if self.delivery.delivering(generation_id):
            return True
        gen = await generations.get(self.database, generation_id)
        return gen is not None and gen.result_message_id is not None

    def _resume(self, job: jobs.StoredJob, channels: Channels) -> None:
        """Queue a waiting edit again; its result goes to the channel with a ping."""
        req = job.request
        poster = channels.poster(
            req.channel_id, req.guild_id, reply_to_message_id=job.reply_to_message_id
        )

        async def ended(end: JobEnd) -> None:
            if isinstance(end.error, UserError):
                await channels.tell(req.channel_id, req.guild_id, req.user_id, end.error.message)
            elif end.error is not None:
                log.error("Resumed job %s failed", job.id, exc_info=end.error)

        self.edits.submit(
            req, to=Destination(poster, note=NOTE_RESUMED, ping=True), on_end=ended, job_id=job.id
        )
