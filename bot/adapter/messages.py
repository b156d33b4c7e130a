"""Reading Discord messages for the core: the images on a message, Discord's current copy
of a result (URLs are re-signed on fetch), and edit requests built from interactions and
messages."""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import discord

from bot.images import DISCORD_UPLOAD_LIMIT, InputImage, format_of
from bot.params import EditParams
from bot.requests import EditRequest

if TYPE_CHECKING:
    from bot.client import KontextBot


def role_ids_of(user: discord.abc.User) -> tuple[int, ...]:
    return tuple(r.id for r in getattr(user, "roles", ()))


def age_restricted(channel: object) -> bool:
    """Discord's age-restricted (NSFW) mark; a thread follows its parent channel."""
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    return bool(getattr(channel, "nsfw", False))


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


def shown_image(message: discord.Message | None) -> InputImage | None:
    if message is None or not message.attachments:
        return None
    return input_from_attachment(message.attachments[0])


class Reader:
    """Discord's current copy of a message (attachment URLs are re-signed on fetch)."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    async def fetch(self, channel_id: int, message_id: int) -> discord.Message | None:
        try:
            return await self.bot.get_partial_messageable(channel_id).fetch_message(message_id)
        except discord.NotFound:
            await self.bot.core.delivery.message_gone(message_id)
            return None

    async def first_image(self, channel_id: int, message_id: int) -> InputImage | None:
        return shown_image(await self.fetch(channel_id, message_id))


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
        channel_nsfw=age_restricted(interaction.channel),
    )


def request_for_message(
    message: discord.Message,
    *,
    image: InputImage,
    params: EditParams,
    seed_explicit: bool,
    parent_id: int | None,
) -> EditRequest:
    """An edit asked for by a reply or a mention."""
    return EditRequest(
        user_id=message.author.id,
        guild_id=message.guild.id if message.guild else None,
        channel_id=message.channel.id,
        source="reply" if parent_id is not None else "mention",
        image=image,
        params=params,
        seed_explicit=seed_explicit,
        upload_limit=upload_limit_of(message.guild),
        parent_id=parent_id,
        role_ids=role_ids_of(message.author),
        channel_nsfw=age_restricted(message.channel),
    )
