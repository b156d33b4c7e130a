"""Queueing an edit for an interaction or a message: queue status shown to the member
while it waits, then the result posted where a reply can reach the bot.

The handler returns once the edit is queued: nothing waits on it. How it ended reaches the
member through the job's end hook: a failure, a cancel or a restart is told in the same
words the handler's own errors are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord

from bot.adapter.errors import report
from bot.adapter.posting import ChannelPoster, InteractionPoster, token_expired
from bot.adapter.views import cancel_view
from bot.queue import JobEnd, Progress
from bot.requests import EditRequest
from bot.service import Destination

if TYPE_CHECKING:
    from bot.client import KontextBot


def status_text(progress: Progress) -> str:
    if progress.state == "queued":
        ahead = "you're next" if progress.ahead == 0 else f"{progress.ahead} ahead"
        return (
            f"\N{HOURGLASS WITH FLOWING SAND} In the queue: {ahead}, about {progress.eta_s:.0f} s."
        )
    return f"\N{ARTIST PALETTE} Editing... {progress.elapsed_s:.0f} s"


class InteractionStatus:
    """Shows queue position, then elapsed time, in the interaction's placeholder."""

    def __init__(self, bot: KontextBot, interaction: discord.Interaction) -> None:
        self.bot, self.interaction = bot, interaction

    async def show(self, progress: Progress) -> None:
        if token_expired(self.interaction, self.bot.clock()):
            return  # the placeholder can no longer be edited; the result will ping instead
        view = cancel_view(progress.job_id) if progress.state == "queued" else None
        await self.interaction.edit_original_response(content=status_text(progress), view=view)


class MessageStatus:
    """The same for a reply: a small status reply, created only if the edit has to wait."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message
        self.status: discord.Message | None = None

    async def show(self, progress: Progress) -> None:
        view = cancel_view(progress.job_id) if progress.state == "queued" else None
        if self.status is None:
            self.status = await self.message.reply(
                status_text(progress),
                view=view or discord.utils.MISSING,
                mention_author=False,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        else:
            await self.status.edit(content=status_text(progress), view=view)

    async def clear(self) -> None:
        status, self.status = self.status, None
        if status is not None:
            with contextlib.suppress(discord.HTTPException):
                await status.delete()


def queue_for_interaction(
    bot: KontextBot,
    interaction: discord.Interaction,
    request: EditRequest,
    *,
    context: str,
    reply_to: discord.Message | None = None,
    note: str | None = None,
    private: bool = False,
) -> None:
    """Queue an edit for an interaction; its result is delivered however long it waits.
    The interaction is acknowledged ("thinking...", private with `private`) only once the
    edit is written down. A refusal or a failure is reported to the member as the
    command's own errors are (`context` names it in logs)."""

    async def acknowledge() -> None:
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True, ephemeral=private)

    async def ended(end: JobEnd) -> None:
        if end.error is not None:
            await report(interaction, end.error, context)

    poster = InteractionPoster(bot, interaction, reply_to=reply_to, private=private)
    bot.core.edits.submit(
        request,
        to=Destination(poster, note=note),
        on_end=ended,
        reply_to_message_id=reply_to.id if reply_to else None,
        on_progress=InteractionStatus(bot, interaction).show,
        acknowledge=acknowledge,
    )


class Working:
    """A reaction on the member's message while their edit is on (the typing indicator
    where reactions are denied): the acknowledgement of a reply or a mention."""

    REACTION = "\N{HOURGLASS WITH FLOWING SAND}"

    def __init__(self, bot: KontextBot, message: discord.Message) -> None:
        self.bot, self.message = bot, message
        self.reacted = False

    async def show(self) -> None:
        try:
            await self.message.add_reaction(self.REACTION)
            self.reacted = True
        except discord.HTTPException:
            with contextlib.suppress(discord.HTTPException):
                await self.message.channel.typing()

    async def clear(self) -> None:
        if self.reacted and self.bot.user is not None:
            self.reacted = False
            with contextlib.suppress(discord.HTTPException):
                await self.message.remove_reaction(self.REACTION, self.bot.user)


def queue_for_message(
    bot: KontextBot,
    message: discord.Message,
    request: EditRequest,
    *,
    answer: Callable[[BaseException], Awaitable[None]],
    note: str | None = None,
) -> None:
    """Queue an edit asked for by a reply or a mention; the result replies to it. The
    message gets its reaction only once the edit is written down. A refusal or a failure
    is told with `answer`, as the listener's own errors are."""
    status = MessageStatus(message)
    working = Working(bot, message)
    poster = ChannelPoster(
        message.channel, message.to_reference(fail_if_not_exists=False), before_post=status.clear
    )

    async def ended(end: JobEnd) -> None:
        await status.clear()
        await working.clear()
        if end.error is not None:
            await answer(end.error)

    bot.core.edits.submit(
        request,
        to=Destination(poster, note=note),
        on_end=ended,
        reply_to_message_id=message.id,
        on_progress=status.show,
        acknowledge=working.show,
    )
