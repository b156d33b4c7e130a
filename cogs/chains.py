"""Reply to iterate: a reply to a result (or a mention with an image) edits again."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.adapter import flow
from bot.adapter.errors import describe, incident_text
from bot.adapter.messages import Reader, images_in, input_from_attachment, request_for_message
from bot.chains import MSG_DELETED_PARENT
from bot.db.messages import ResultMessage
from bot.errors import UserError
from bot.images import InputImage
from bot.params import build_params, split_inline_options

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

REFUSED = "\N{CROSS MARK}"
HINT_HIDDEN_TEXT = (
    "I can't read replies that don't mention me. To keep editing, reply **with ping** "
    "(leave the @ on) and say what to change, or use the buttons under the result."
)
HINT_EMPTY = "Tell me what to change, e.g. `@{name} make it night`."
HINT_NO_IMAGE = "Attach an image (or reply to a message with one) and tell me what to change."


class Chains(commands.Cog):
    """Listens for replies to results and for mentions with an image."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.core = bot.core
        self.reader = Reader(bot)
        self._hinted: set[tuple[int, int]] = set()  # (guild, member) told about hidden text

    def _prompt_text(self, message: discord.Message) -> str:
        """The message's text without the bot's own mention."""
        assert self.bot.user is not None
        return re.sub(rf"<@!?{self.bot.user.id}>", " ", message.content).strip()

    def _text_visible(self, message: discord.Message) -> bool:
        """Without the Message Content intent Discord blanks text that does not mention us."""
        assert self.bot.user is not None
        return self.bot.intents.message_content or self.bot.user in message.mentions

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.bot.user is None:
            return
        parent = None
        ref = message.reference
        if ref is not None and ref.message_id is not None:
            resolved = ref.resolved
            ours = isinstance(resolved, discord.Message) and resolved.author == self.bot.user
            parent = await self.core.delivery.recorded(ref.message_id, wait=ours)
        if parent is None and self.bot.user not in message.mentions:
            return
        try:
            self.core.servers.check_served(message.guild.id)
            if parent is not None:
                await self._continue_chain(message, parent)
            else:
                await self._edit_mentioned(message)
        except Exception as exc:  # noqa: BLE001 - a listener must never die on one message
            await self._answer_error(message, exc)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.core.delivery.message_gone(payload.message_id)

    async def _continue_chain(self, message: discord.Message, parent: ResultMessage) -> None:
        text = self._prompt_text(message)
        if not text:
            if self._text_visible(message):
                assert self.bot.user is not None
                raise UserError(HINT_EMPTY.format(name=self.bot.user.display_name))
            key = (message.guild.id if message.guild else 0, message.author.id)
            if key not in self._hinted:
                self._hinted.add(key)
                raise UserError(HINT_HIDDEN_TEXT)
            return
        gen = await self.core.chains.generation(parent.generation_id)
        await self.core.chains.check_may_iterate(gen, message.author.id)
        source = await self._replied_image(message, parent)
        params, seed_explicit = self.core.chains.next_step(gen, text)
        request = request_for_message(
            message, image=source, params=params, seed_explicit=seed_explicit, parent_id=gen.id
        )
        flow.queue_for_message(
            self.bot, message, request, answer=lambda exc: self._answer_error(message, exc)
        )

    async def _replied_image(self, message: discord.Message, parent: ResultMessage) -> InputImage:
        """The image of the result being replied to, from Discord's freshest copy."""
        if parent.deleted_at is not None:
            raise UserError(MSG_DELETED_PARENT)
        resolved = message.reference.resolved if message.reference else None
        if isinstance(resolved, discord.Message) and resolved.attachments:
            return input_from_attachment(resolved.attachments[0])
        image = await self.reader.first_image(parent.channel_id, parent.message_id)
        if image is None:
            raise UserError(MSG_DELETED_PARENT)
        return image

    async def _edit_mentioned(self, message: discord.Message) -> None:
        text = self._prompt_text(message)
        found = images_in(message)
        ref = message.reference
        if not found and ref is not None and ref.message_id is not None:
            target = ref.resolved
            if not isinstance(target, discord.Message):
                target = await self.reader.fetch(
                    ref.channel_id or message.channel.id, ref.message_id
                )
            if target is not None:
                found = images_in(target)
        if not found:
            raise UserError(HINT_NO_IMAGE)
        if not text:
            assert self.bot.user is not None
            raise UserError(HINT_EMPTY.format(name=self.bot.user.display_name))
        # An image that is one of the bot's results (a link to it, a reply to a message
        # showing it) continues that result's chain, under the same rule as a reply.
        parent = await self.core.chains.continued_from(
            found[0], message.author.id, message.guild.id if message.guild else None
        )
        if parent is not None:
            params, seed_explicit = self.core.chains.next_step(parent, text)
        else:
            prompt, changes = split_inline_options(text)
            seed = changes.pop("seed", None)
            params = build_params(prompt, seed=seed, **changes)  # type: ignore[arg-type]
            seed_explicit = seed is not None
        note = f"used the first of {len(found)} images" if len(found) > 1 else None
        request = request_for_message(
            message,
            image=found[0],
            params=params,
            seed_explicit=seed_explicit,
            parent_id=parent.id if parent is not None else None,
        )
        flow.queue_for_message(
            self.bot,
            message,
            request,
            answer=lambda exc: self._answer_error(message, exc),
            note=note,
        )

    async def _answer_error(self, message: discord.Message, error: BaseException) -> None:
        """What went wrong, in the member's words (an incident id for our own faults)."""
        await self._answer(message, describe(error) or incident_text(error, "reply edit"))

    async def _answer(self, message: discord.Message, text: str) -> None:
        """A short answer in the member's reply thread; a reaction only when they were
        answered in public moments ago (a member cannot make the bot flood a channel)."""
        member = (message.guild.id if message.guild else 0, message.author.id)
        if not self.core.answers.may_answer(member):
            with contextlib.suppress(discord.HTTPException):
                await message.add_reaction(REFUSED)
            return
        try:
            await message.reply(
                text, mention_author=False, allowed_mentions=discord.AllowedMentions.none()
            )
        except Exception:  # e.g. shutting down; nothing more to do
            log.warning("Could not answer message %s", message.id, exc_info=True)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(Chains(bot))
