"""Posting for the core: result cards in a channel or through an interaction, and channels
reached after a restart. What Discord fails or refuses becomes the core's PostFailed."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
import discord

from bot.adapter.render import image_file, result_embed, safe_text
from bot.adapter.views import result_view
from bot.cards import ResultCard
from bot.ports import Posted, PostFailed

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

TOKEN_LIFETIME_S = 15 * 60
# Leave time for the upload itself before Discord's 15-minute token runs out.
TOKEN_MARGIN_S = 60


def ping_only(user_id: int) -> discord.AllowedMentions:
    """Mentions that ping this one member and nobody else."""
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(user_id)]
    )


def token_expired(interaction: discord.Interaction, now: float) -> bool:
    return now - interaction.created_at.timestamp() > TOKEN_LIFETIME_S - TOKEN_MARGIN_S


def posted(message: discord.Message) -> Posted:
    attachment = message.attachments[0] if message.attachments else None
    return Posted(
        channel_id=message.channel.id,
        message_id=message.id,
        attachment_id=attachment.id if attachment else None,
        url=attachment.url if attachment else None,
        jump_url=message.jump_url,
    )


async def send_card(
    channel: discord.abc.Messageable,
    card: ResultCard,
    image: bytes,
    *,
    reference: discord.MessageReference | None,
    ping: bool,
) -> Posted:
    """Post a card; what Discord fails or refuses becomes the core's PostFailed."""
    try:
        message = await channel.send(
            content=f"<@{card.requester_id}> your edit is ready." if ping else None,
            embed=result_embed(card),
            file=image_file(image, card.filename),
            view=result_view(card.generation_id),
            reference=reference,  # type: ignore[arg-type]
            allowed_mentions=ping_only(card.requester_id)
            if ping
            else discord.AllowedMentions.none(),
        )
    except discord.HTTPException as exc:
        retryable = exc.status >= 500 or exc.status == 429
        raise PostFailed(f"HTTP {exc.status}", retryable=retryable) from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise PostFailed(f"network: {type(exc).__name__}", retryable=True) from exc
    return posted(message)


class ChannelPoster:
    """Posts in a channel, optionally as a reply (used after restarts and for replies)."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        reference: discord.MessageReference | None = None,
        before_post: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.channel, self.reference, self.before_post = channel, reference, before_post

    async def post(self, card: ResultCard, image: bytes) -> Posted:
        if self.before_post is not None:
            await self.before_post()
        return await send_card(self.channel, card, image, reference=self.reference, ping=card.ping)


class InteractionPoster:
    """Posts an interaction's result in its channel, where a reply can reach the bot; then
    removes the public placeholder (or links a private one). Past the token's life the
    card pings the member. Without the right to post in the channel, the interaction's
    own webhook still works."""

    def __init__(
        self,
        bot: KontextBot,
        interaction: discord.Interaction,
        *,
        reply_to: discord.Message | None = None,
        private: bool = False,
    ) -> None:
        self.bot, self.interaction, self.reply_to, self.private = (
            bot,
            interaction,
            reply_to,
            private,
        )

    async def post(self, card: ResultCard, image: bytes) -> Posted:
        late = token_expired(self.interaction, self.bot.clock())
        channel = self.interaction.channel
        assert isinstance(channel, discord.abc.Messageable)
        reference = self.reply_to.to_reference(fail_if_not_exists=False) if self.reply_to else None
        try:
            result = await send_card(
                channel, card, image, reference=reference, ping=card.ping or late
            )
        except PostFailed as exc:
            if late or not isinstance(exc.__cause__, discord.Forbidden):
                raise
            try:
                message = await self.interaction.followup.send(
                    embed=result_embed(card),
                    file=image_file(image, card.filename),
                    view=result_view(card.generation_id),
                    allowed_mentions=discord.AllowedMentions.none(),
                    wait=True,
                )
            except discord.HTTPException as followup_exc:
                retryable = followup_exc.status >= 500 or followup_exc.status == 429
                raise PostFailed(f"HTTP {followup_exc.status}", retryable=retryable) from exc
            except (TimeoutError, aiohttp.ClientError, OSError) as followup_exc:
                name = type(followup_exc).__name__
                raise PostFailed(f"network: {name}", retryable=True) from exc
            return posted(message)
        if not late:
            await settle_placeholder(self.interaction, result.jump_url, private=self.private)
        return result


async def settle_placeholder(
    interaction: discord.Interaction, jump_url: str, *, private: bool
) -> None:
    """Remove a public "thinking..." message, or point a private one at the result."""
    with contextlib.suppress(discord.HTTPException):
        if private:
            await interaction.edit_original_response(content=f"Done: {jump_url}")
        else:
            await interaction.delete_original_response()


class DiscordChannels:
    """Channels reached without an interaction (after a restart): results ping."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    def poster(
        self, channel_id: int, guild_id: int | None, *, reply_to_message_id: int | None
    ) -> ChannelPoster:
        channel = self.bot.get_partial_messageable(channel_id, guild_id=guild_id)
        reference = (
            discord.MessageReference(
                message_id=reply_to_message_id, channel_id=channel_id, fail_if_not_exists=False
            )
            if reply_to_message_id
            else None
        )
        return ChannelPoster(channel, reference)

    async def tell(self, channel_id: int, guild_id: int | None, user_id: int, text: str) -> None:
        channel = self.bot.get_partial_messageable(channel_id, guild_id=guild_id)
        try:
            await channel.send(
                f"<@{user_id}> {safe_text(text)}", allowed_mentions=ping_only(user_id)
            )
        except discord.HTTPException:
            log.warning("Could not tell member %s in channel %s", user_id, channel_id)

    async def dm(self, user_id: int, text: str) -> bool:
        try:
            channel = await self.bot.create_dm(discord.Object(user_id))
            await channel.send(safe_text(text), allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            # DMs closed, or no server shared any more: nothing else can reach them.
            log.warning("Could not DM member %s (HTTP %s)", user_id, exc.status)
            return False
        return True
