"""Shared by every way to start an edit: finding the input image, running the pipeline
and posting the result where a reply can reach the bot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import discord

from bot import db
from bot.errors import UserError
from bot.images import DISCORD_UPLOAD_LIMIT, InputImage, format_of
from bot.params import EditParams
from bot.pipeline import EditOutcome, EditRequest
from bot.queue import Progress
from cogs._render import ResultCard, image_file, result_embed
from cogs._views import cancel_view, result_view

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

DELIVERY_ATTEMPTS = 4
DELIVERY_BACKOFF_S = 1.0
TOKEN_LIFETIME_S = 15 * 60
# Leave time for the upload itself before Discord's 15-minute token runs out.
TOKEN_MARGIN_S = 60
MSG_UNDELIVERED = (
    "Your edit is done, but Discord would not take the upload just now. It is kept for "
    "you: open /history and press Deliver."
)
MSG_ALREADY_DELIVERING = "That result is being posted right now."
MSG_AUTHOR_ONLY = "On this server only the member who made a result can continue it."
MSG_DELETED_PARENT = (
    "That result was deleted, so I can't edit it any further. "
    "Reply to another result, or start again with /edit."
)


def role_ids_of(user: discord.abc.User) -> tuple[int, ...]:
    return tuple(r.id for r in getattr(user, "roles", ()))


def request_for_interaction(
    interaction: discord.Interaction,
    *,
    source: str,
    image: InputImage,
    params: EditParams,
    seed_explicit: bool,
    parent_id: int | None = None,
) -> EditRequest:
    """An edit asked for through an interaction (command, button, menu or modal)."""
    return EditRequest(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        source=source,
        image=image,
        params=params,
        seed_explicit=seed_explicit,
        upload_limit=interaction.filesize_limit,
        parent_id=parent_id,
        interaction_id=interaction.id,
        role_ids=role_ids_of(interaction.user),
    )


def upload_limit_of(guild: discord.Guild | None) -> int:
    return guild.filesize_limit if guild is not None else DISCORD_UPLOAD_LIMIT


def input_from_attachment(attachment: discord.Attachment) -> InputImage:
    return InputImage(
        url=attachment.url,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        width=attachment.width,
        height=attachment.height,
        attachment_id=attachment.id,
    )


def _is_image(attachment: discord.Attachment) -> bool:
    return format_of(attachment.content_type, attachment.filename) is not None


def images_in(message: discord.Message) -> list[InputImage]:
    """Every image on a message: attachments first, then embed images."""
    found = [input_from_attachment(a) for a in message.attachments if _is_image(a)]
    # An embed showing an attachment (`attachment://`) points at that same file.
    seen = {urlsplit(a.url).path for a in message.attachments}
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail):
            url = media.proxy_url or media.url
            if url and urlsplit(media.url or url).path in seen:
                continue
            if url and media.width and media.height:
                name = urlsplit(url).path.rsplit("/", 1)[-1] or "image"
                found.append(
                    InputImage(
                        url=url,
                        filename=name,
                        content_type=mimetypes.guess_type(name)[0],
                        size=0,  # embeds do not say; the API or the download cap decides
                        width=media.width,
                        height=media.height,
                    )
                )
    return found


async def fetch_message(
    bot: KontextBot, channel_id: int, message_id: int
) -> discord.Message | None:
    try:
        return await bot.get_partial_messageable(channel_id).fetch_message(message_id)
    except discord.NotFound:
        await db.mark_message_deleted(bot.database, message_id)
        return None


async def result_image(bot: KontextBot, gen: db.Generation) -> InputImage:
    """A generation's result as a fresh input (Discord re-signs attachment URLs on fetch)."""
    if gen.result_message_id is None or gen.result_channel_id is None:
        raise UserError("That edit has no result image to work from.")
    message = await fetch_message(bot, gen.result_channel_id, gen.result_message_id)
    if message is None or not message.attachments:
        raise UserError(MSG_DELETED_PARENT)
    return input_from_attachment(message.attachments[0])


async def input_of(bot: KontextBot, gen: db.Generation) -> InputImage:
    """The image a generation started from, as fresh as it can be had."""
    if gen.parent_id is not None:
        parent = await db.get_generation(bot.database, gen.parent_id)
        if parent is not None:
            with contextlib.suppress(UserError):
                return await result_image(bot, parent)
    return gen.input


async def check_may_iterate(bot: KontextBot, gen: db.Generation, user_id: int) -> None:
    """Anyone who sees a result may continue it, unless the server (or the operator's
    ITERATE_AUTHOR_ONLY default) keeps that to its author."""
    if gen.user_id == user_id or gen.guild_id is None:
        return
    author_only = await bot.ledger.iterate_author_only(gen.guild_id)
    if author_only is None:
        author_only = bot.settings.iterate_author_only
    if author_only:
        raise UserError(MSG_AUTHOR_ONLY)


def token_expired(interaction: discord.Interaction, now: float) -> bool:
    return now - interaction.created_at.timestamp() > TOKEN_LIFETIME_S - TOKEN_MARGIN_S


async def post_result(
    bot: KontextBot,
    channel: discord.abc.Messageable,
    outcome: EditOutcome,
    *,
    requester_id: int,
    reply_to: discord.Message | None = None,
    ping: bool = False,
    note: str | None = None,
) -> discord.Message:
    """Post a result as a regular channel message (replies to it can mention the bot).
    `ping`: a late result, the member may have stopped watching."""
    step = await db.chain_step(bot.database, outcome.generation_id)
    card = ResultCard.from_outcome(outcome, requester_id=requester_id, step=step, note=note)
    reference = reply_to.to_reference(fail_if_not_exists=False) if reply_to else None
    return await _post_card(
        bot, channel, card, outcome.image, reference=reference, ping=ping, claim=True
    )


async def _post_card(
    bot: KontextBot,
    channel: discord.abc.Messageable,
    card: ResultCard,
    data: bytes,
    *,
    reference: discord.MessageReference | None,
    ping: bool,
    claim: bool,
) -> discord.Message:
    """Upload a result card with its image and buttons, retried, and remember it.
    `claim`: take the delivery claim here (False when the caller already holds it)."""
    async with delivering(bot, card.generation_id) if claim else contextlib.nullcontext():
        message = await send_with_retries(
            lambda: channel.send(
                content=f"<@{card.requester_id}> your edit is ready." if ping else None,
                embed=result_embed(card),
                file=image_file(data, card.filename),
                view=result_view(card.generation_id),
                reference=reference,  # type: ignore[arg-type]
                allowed_mentions=ping_only(card.requester_id)
                if ping
                else discord.AllowedMentions.none(),
            )
        )
        await remember(bot, card.generation_id, message)
    return message


def ping_only(user_id: int) -> discord.AllowedMentions:
    """Mentions that ping this one member and nobody else."""
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(user_id)]
    )


@contextlib.asynccontextmanager
async def delivering(bot: KontextBot, generation_id: int) -> AsyncIterator[None]:
    """One upload of a result at a time (the job, /history's Deliver, start-up)."""
    if not bot.results.claim(generation_id):
        raise UserError(MSG_ALREADY_DELIVERING)
    try:
        yield
    finally:
        bot.results.unclaim(generation_id)


async def send_with_retries(
    send: Callable[[], Awaitable[discord.Message]],
) -> discord.Message:
    """Retry what Discord failed to take (5xx, 429, network), beyond discord.py's own
    retries: a paid-for result must arrive. The bytes stay on disk until it does."""
    for attempt in range(1, DELIVERY_ATTEMPTS + 1):
        try:
            return await send()
        except discord.HTTPException as exc:
            if exc.status < 500 and exc.status != 429:
                raise
            log.warning("Posting a result failed (%s); attempt %d", exc.status, attempt)
        except (TimeoutError, aiohttp.ClientError, OSError):
            log.warning("Posting a result failed (network); attempt %d", attempt)
        if attempt < DELIVERY_ATTEMPTS:
            await asyncio.sleep(DELIVERY_BACKOFF_S * 2 ** (attempt - 1))
    raise UserError(MSG_UNDELIVERED)


async def remember(
    bot: KontextBot, generation_id: int, message: discord.Message, *, is_result: bool = True
) -> None:
    attachment = message.attachments[0] if message.attachments else None
    await db.record_delivery(
        bot.database,
        generation_id,
        channel_id=message.channel.id,
        message_id=message.id,
        attachment_id=attachment.id if attachment else None,
        url=attachment.url if attachment else None,
        is_result=is_result,
    )
    if is_result:
        await bot.results.forget(generation_id)


async def run_for_interaction(
    bot: KontextBot,
    interaction: discord.Interaction,
    request: EditRequest,
    *,
    reply_to: discord.Message | None = None,
    note: str | None = None,
    private: bool = False,
) -> discord.Message:
    """Run an edit for a deferred interaction and deliver it, however long it took.

    The result goes to the channel; the interaction's placeholder is then removed (public)
    or turned into a link (private). Past the token's life the result still arrives, with
    a ping for the member.
    """

    async def deliver(outcome: EditOutcome) -> discord.Message:
        return await deliver_for_interaction(bot, interaction, outcome, reply_to, note, private)

    return await bot.edits.run(
        request,
        deliver=deliver,
        reply_to_message_id=reply_to.id if reply_to else None,
        on_progress=InteractionStatus(bot, interaction).show,
    )


async def deliver_for_interaction(
    bot: KontextBot,
    interaction: discord.Interaction,
    outcome: EditOutcome,
    reply_to: discord.Message | None,
    note: str | None,
    private: bool,
) -> discord.Message:
    late = token_expired(interaction, bot.clock())
    channel = interaction.channel
    assert isinstance(channel, discord.abc.Messageable)
    try:
        message = await post_result(
            bot,
            channel,
            outcome,
            requester_id=interaction.user.id,
            reply_to=reply_to,
            ping=late,
            note=note,
        )
    except discord.Forbidden:
        if late:
            raise
        # No right to post in the channel: the interaction's own webhook still works.
        step = await db.chain_step(bot.database, outcome.generation_id)
        card = ResultCard.from_outcome(outcome, requester_id=interaction.user.id, step=step)
        message = await interaction.followup.send(
            embed=result_embed(card),
            file=image_file(outcome.image, outcome.filename),
            view=result_view(outcome.generation_id),
            allowed_mentions=discord.AllowedMentions.none(),
            wait=True,
        )
        await remember(bot, outcome.generation_id, message)
        return message
    if not late:
        await settle_placeholder(interaction, message, private=private)
    return message


async def settle_placeholder(
    interaction: discord.Interaction, message: discord.Message, *, private: bool
) -> None:
    """Remove a public "thinking..." message, or point a private one at the result."""
    with contextlib.suppress(discord.HTTPException):
        if private:
            await interaction.edit_original_response(content=f"Done: {message.jump_url}")
        else:
            await interaction.delete_original_response()


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


async def post_kept_result(
    bot: KontextBot,
    gen: db.Generation,
    data: bytes,
    filename: str,
    *,
    reply_to_message_id: int | None,
    note: str,
    claimed: bool = False,
) -> discord.Message:
    """Deliver a result kept on disk (after a restart or a failed upload), pinging its
    member. `claimed`: the caller already holds the right to deliver it."""
    assert gen.channel_id is not None
    channel = bot.get_partial_messageable(gen.channel_id, guild_id=gen.guild_id)
    step = await db.chain_step(bot.database, gen.id)
    card = ResultCard.from_generation(gen, step=step, filename=filename, note=note)
    reference = (
        discord.MessageReference(
            message_id=reply_to_message_id, channel_id=gen.channel_id, fail_if_not_exists=False
        )
        if reply_to_message_id
        else None
    )
    return await _post_card(
        bot, channel, card, data, reference=reference, ping=True, claim=not claimed
    )
