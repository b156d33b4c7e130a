"""Reply to iterate: a reply to a result (or a mention with an image) edits again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot import db
from bot.errors import UserError
from bot.images import InputImage
from bot.params import EditParams, build_params, next_step_params, split_inline_options
from bot.pipeline import EditOutcome, EditRequest
from cogs import _flow
from cogs.errors import describe, incident_text

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

WORKING = "\N{HOURGLASS WITH FLOWING SAND}"
RECORD_WAIT_S = 2.0
RECORD_WAIT_STEPS = 20
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
        self._hinted: set[tuple[int, int]] = set()  # (guild, member) told about hidden text

    def _prompt_text(self, message: discord.Message) -> str:
        """The message's text without the bot's own mention."""
        assert self.bot.user is not None
        text = re.sub(rf"<@!?{self.bot.user.id}>", " ", message.content)
        return text.strip()

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
            parent = await self._result_replied_to(message, ref.message_id)
        if parent is None and self.bot.user not in message.mentions:
            return
        try:
            async with self._working(message):
                if parent is not None:
                    await self._continue_chain(message, parent)
                else:
                    await self._edit_mentioned(message)
        except UserError as exc:
            await self._answer(message, exc.message)
        except Exception as exc:  # noqa: BLE001 - a listener must never die on one message
            await self._answer(message, describe(exc) or incident_text(exc, "reply edit"))

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await db.mark_message_deleted(self.bot.database, payload.message_id)

    async def _result_replied_to(
        self, message: discord.Message, message_id: int
    ) -> db.ResultMessage | None:
        """The result a reply points at. A reply can beat the bot's own bookkeeping by a
        few milliseconds, so a reply to one of the bot's messages waits a moment for it."""
        parent = await db.result_message(self.bot.database, message_id)
        resolved = message.reference.resolved if message.reference else None
        ours = isinstance(resolved, discord.Message) and resolved.author == self.bot.user
        for _ in range(RECORD_WAIT_STEPS if ours and parent is None else 0):
            await asyncio.sleep(RECORD_WAIT_S / RECORD_WAIT_STEPS)
            parent = await db.result_message(self.bot.database, message_id)
            if parent is not None:
                break
        return parent

    async def _continue_chain(self, message: discord.Message, parent: db.ResultMessage) -> None:
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
        gen = await db.get_generation(self.bot.database, parent.generation_id)
        if gen is None:
            raise UserError(_flow.MSG_DELETED_PARENT)
        await _flow.check_may_iterate(self.bot, gen, message.author.id)
        source = await self._replied_image(message, parent)
        prompt, changes = split_inline_options(text)
        params, seed_explicit = next_step_params(
            gen.params, bool(gen.seed_explicit), prompt, changes
        )
        await self._run(message, source, params, seed_explicit, parent_id=gen.id)

    async def _replied_image(
        self, message: discord.Message, parent: db.ResultMessage
    ) -> InputImage:
        """The image of the result being replied to, from Discord's freshest copy."""
        if parent.deleted_at is not None:
            raise UserError(_flow.MSG_DELETED_PARENT)
        resolved = message.reference.resolved if message.reference else None
        if isinstance(resolved, discord.Message) and resolved.attachments:
            return _flow.input_from_attachment(resolved.attachments[0])
        fetched = await _flow.fetch_message(self.bot, parent.channel_id, parent.message_id)
        if fetched is None or not fetched.attachments:
            raise UserError(_flow.MSG_DELETED_PARENT)
        return _flow.input_from_attachment(fetched.attachments[0])

    async def _edit_mentioned(self, message: discord.Message) -> None:
        text = self._prompt_text(message)
        found = _flow.images_in(message)
        ref = message.reference
        if not found and ref is not None and ref.message_id is not None:
            target = ref.resolved
            if not isinstance(target, discord.Message):
                target = await _flow.fetch_message(
                    self.bot, ref.channel_id or message.channel.id, ref.message_id
                )
            if target is not None:
                found = _flow.images_in(target)
        if not found:
            raise UserError(HINT_NO_IMAGE)
        if not text:
            assert self.bot.user is not None
            raise UserError(HINT_EMPTY.format(name=self.bot.user.display_name))
        prompt, changes = split_inline_options(text)
        seed = changes.pop("seed", None)
        params = build_params(prompt, seed=seed, **changes)  # type: ignore[arg-type]
        note = f"used the first of {len(found)} images" if len(found) > 1 else None
        await self._run(message, found[0], params, seed is not None, parent_id=None, note=note)

    async def _run(
        self,
        message: discord.Message,
        source: InputImage,
        params: EditParams,
        seed_explicit: bool,
        *,
        parent_id: int | None,
        note: str | None = None,
    ) -> None:
        request = EditRequest(
            user_id=message.author.id,
            guild_id=message.guild.id if message.guild else None,
            channel_id=message.channel.id,
            source="reply" if parent_id is not None else "mention",
            image=source,
            params=params,
            seed_explicit=seed_explicit,
            upload_limit=_flow.upload_limit_of(message.guild),
            parent_id=parent_id,
            role_ids=_flow.role_ids_of(message.author),
        )
        status = _flow.MessageStatus(message)

        async def deliver(outcome: EditOutcome) -> discord.Message:
            await status.clear()
            return await _flow.post_result(
                self.bot,
                message.channel,
                outcome,
                requester_id=message.author.id,
                reply_to=message,
                note=note,
            )

        try:
            await self.bot.edits.run(
                request, deliver=deliver, reply_to_message_id=message.id, on_progress=status.show
            )
        finally:
            await status.clear()

    @contextlib.asynccontextmanager
    async def _working(self, message: discord.Message) -> AsyncIterator[None]:
        """Show a reaction while the edit runs (the typing indicator if reactions are denied)."""
        reacted = False
        try:
            await message.add_reaction(WORKING)
            reacted = True
        except discord.HTTPException:
            with contextlib.suppress(discord.HTTPException):
                await message.channel.typing()
        try:
            yield
        finally:
            if reacted and self.bot.user is not None:
                with contextlib.suppress(discord.HTTPException):
                    await message.remove_reaction(WORKING, self.bot.user)

    async def _answer(self, message: discord.Message, text: str) -> None:
        """A short answer in the member's reply thread."""
        try:
            await message.reply(
                text, mention_author=False, allowed_mentions=discord.AllowedMentions.none()
            )
        except Exception:  # e.g. shutting down; nothing more to do
            log.warning("Could not answer message %s", message.id, exc_info=True)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(Chains(bot))
