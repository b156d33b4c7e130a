"""After a crash or restart: finish what the last run left behind.

Edits that were waiting are queued again; edits that were running are either delivered
(the API had finished and the result was kept on disk) or their members are told they did
not finish and were not charged (start-up already released their reservations)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot import jobs
from bot.errors import UserError
from bot.pipeline import EditOutcome
from cogs import _flow
from cogs._render import safe_text

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

NOTE_RESUMED = "finished after the bot restarted"


class Recovery(commands.Cog):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self._tasks: set[asyncio.Task[None]] = set()

    async def cog_load(self) -> None:
        self._spawn(self._recover())

    async def cog_unload(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _spawn(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recover(self) -> None:
        await self.bot.wait_until_ready()
        left, self.bot.left_over = self.bot.left_over, []  # read at start-up, before connecting
        if left:
            log.warning("Recovering %d edit(s) left by the previous run", len(left))
        for job in left:
            try:
                if job.state == "running":
                    await self._settle_running(job)
                else:
                    self._spawn(self._resume(job))
            except Exception:
                log.exception("Could not recover job %s", job.id)

    async def _settle_running(self, job: jobs.StoredJob) -> None:
        gen = await jobs.generation_of_job(self.bot.database, job.id)
        if gen is not None and gen.status == "succeeded":
            if gen.result_message_id is not None:  # delivered just before the stop
                await jobs.mark_finished(self.bot.database, job.id, "done")
                return
            kept = await self.bot.results.load(gen.id)
            if kept is not None:
                await _flow.post_kept_result(
                    self.bot, gen, *kept, reply_to_message_id=job.reply_to_message_id,
                    note=NOTE_RESUMED,
                )  # fmt: skip
                await jobs.mark_finished(self.bot.database, job.id, "done")
                return
            # Paid for, but the image is gone: give the money back before saying so.
            await self.bot.ledger.refund_generation(gen.id)
        await jobs.mark_finished(self.bot.database, job.id, "failed")
        prompt = job.request.params.prompt
        short = prompt if len(prompt) <= 80 else prompt[:80] + "…"
        await self._tell(
            job,
            f"<@{job.request.user_id}> your edit “{safe_text(short)}” did not finish because "
            "the bot restarted. You were not charged; please try again.",
        )

    async def _resume(self, job: jobs.StoredJob) -> None:
        """Queue a waiting edit again; its result goes to the channel with a ping."""
        channel = self.bot.get_partial_messageable(
            job.request.channel_id, guild_id=job.request.guild_id
        )
        reply_to = (
            channel.get_partial_message(job.reply_to_message_id)
            if job.reply_to_message_id
            else None
        )

        async def deliver(outcome: EditOutcome) -> discord.Message:
            return await _flow.post_result(
                self.bot,
                channel,
                outcome,
                requester_id=job.request.user_id,
                reply_to=reply_to,  # type: ignore[arg-type]
                ping=True,
                note=NOTE_RESUMED,
            )

        try:
            queued = await self.bot.edits.submit(job.request, deliver=deliver, job_id=job.id)
            await self.bot.edits.wait(queued)
        except UserError as exc:
            await self._tell(job, f"<@{job.request.user_id}> {exc.message}")

    async def _tell(self, job: jobs.StoredJob, text: str) -> None:
        channel = self.bot.get_partial_messageable(
            job.request.channel_id, guild_id=job.request.guild_id
        )
        try:
            await channel.send(
                text,
                allowed_mentions=_flow.ping_only(job.request.user_id),
            )
        except discord.HTTPException:
            log.warning("Could not tell member %s about job %s", job.request.user_id, job.id)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(Recovery(bot))
