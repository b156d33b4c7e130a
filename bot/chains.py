"""The rules of edit chains: who may continue or delete a result, what the next step,
a Reroll and an Undo start from, and the images they use."""

from __future__ import annotations

import contextlib
import dataclasses
from urllib.parse import urlsplit

from bot import decoding, images
from bot.administration import ServerAdmin
from bot.db import generations, messages
from bot.db.connection import Database
from bot.db.generations import Generation
from bot.errors import UserError
from bot.images import InputImage
from bot.imagework import ImageWork
from bot.inputs import EditInputs
from bot.params import EditParams, next_step_params, random_seed, split_inline_options
from bot.ports import MessageReader

MSG_AUTHOR_ONLY = "On this server only the member who made a result can continue it."
MSG_DELETED_PARENT = (
    "That result was deleted, so I can't edit it any further. "
    "Reply to another result, or start again with /edit."
)
MSG_NOT_AUTHOR = "Only the member who made this edit (or an admin) can delete it."
MSG_FIRST_STEP = (
    "This is the first edit of its chain, so there is no earlier result to go back to. "
    "Use **Reroll** to try the original again, or **Edit again** to change this one."
)
MSG_UNKNOWN = "I have no record of that edit any more."
MSG_NO_RESULT = "That edit has no result image to work from."
MSG_IMAGE_GONE = "That image is no longer available on Discord, so I can't show it."
MSG_UNREADABLE = "One of the two images can no longer be read."
MSG_COMPARING = "Your last comparison is still being made; it will be here in a moment."


class Chains:
    def __init__(
        self, database: Database, admin: ServerAdmin, inputs: EditInputs, work: ImageWork
    ) -> None:
        self._db = database
        self._admin = admin
        self._inputs = inputs  # fetches from Discord's CDN only, at most MAX_INPUT_BYTES
        self._work = work
        self._comparing: set[int] = set()  # members whose Compare is being made

    async def generation(self, generation_id: int) -> Generation:
        gen = await generations.get(self._db, generation_id)
        if gen is None:
            raise UserError(MSG_UNKNOWN)
        return gen

    async def result_shown(self, image: InputImage) -> Generation | None:
        """The bot's result this image is, if it is one: the same Discord attachment,
        whether on the result's own message or pasted as a link to it."""
        attachment_id = image.attachment_id or self._attachment_in(image.url)
        if attachment_id is None:
            return None
        generation_id = await messages.generation_of_attachment(self._db, attachment_id)
        return None if generation_id is None else await generations.get(self._db, generation_id)

    async def continued_from(
        self, image: InputImage, user_id: int, guild_id: int | None
    ) -> Generation | None:
        """An edit of one of the bot's results continues that result's chain, whichever
        way it was asked for (a reply, the menu, a link): the iteration rule applies
        (UserError) and the result is the new step's parent. None for any other image,
        and for another server's result: a pasted link must not open that server's chain
        (its earlier steps, Undo) here."""
        gen = await self.result_shown(image)
        if gen is None or guild_id is None or gen.guild_id != guild_id:
            return None
        await self.check_may_iterate(gen, user_id)
        return gen

    def _attachment_in(self, url: str) -> int | None:
        """The attachment id in a Discord CDN URL (/attachments/<channel>/<id>/<name>)."""
        if not self._inputs.from_discord(url):
            return None
        parts = urlsplit(url).path.split("/")
        if len(parts) >= 4 and parts[1] == "attachments" and parts[3].isdigit():
            return int(parts[3])
        return None

    # -- permissions --------------------------------------------------------------------

    async def check_may_iterate(self, gen: Generation, user_id: int) -> None:
        """Anyone who sees a result may continue it (and pays), unless the server (or the
        operator's ITERATE_AUTHOR_ONLY default) keeps that to its author."""
        if gen.user_id == user_id or gen.guild_id is None:
            return
        if await self._admin.iterate_author_only(gen.guild_id):
            raise UserError(MSG_AUTHOR_ONLY)

    @staticmethod
    def check_may_delete(gen: Generation, user_id: int, *, is_staff: bool) -> None:
        """Its author, or server staff (message moderators and bot admins)."""
        if gen.user_id != user_id and not is_staff:
            raise UserError(MSG_NOT_AUTHOR)

    # -- what the next edit starts from -------------------------------------------------

    @staticmethod
    def next_step(gen: Generation, text: str) -> tuple[EditParams, bool]:
        """The next step's options: the parent's, with the member's inline changes; a new
        random seed unless the parent's was chosen on purpose. Returns (params, explicit)."""
        prompt, changes = split_inline_options(text)
        return next_step_params(gen.params, bool(gen.seed_explicit), prompt, changes)

    @staticmethod
    def reroll(gen: Generation) -> EditParams:
        """Same input, prompt and options, a new random seed; a sibling of `gen` (it costs
        what any edit costs)."""
        return dataclasses.replace(gen.params, seed=random_seed())

    async def undo_target(self, gen: Generation) -> Generation:
        """The previous step, which Undo shows again (free)."""
        if gen.parent_id is None:
            raise UserError(MSG_FIRST_STEP)
        return await self.generation(gen.parent_id)

    # -- images -------------------------------------------------------------------------

    async def result_image(self, gen: Generation, reader: MessageReader) -> InputImage:
        """A generation's result as a fresh input (Discord re-signs attachment URLs)."""
        if gen.result_message_id is None or gen.result_channel_id is None:
            raise UserError(MSG_NO_RESULT)
        image = await reader.first_image(gen.result_channel_id, gen.result_message_id)
        if image is None:
            raise UserError(MSG_DELETED_PARENT)
        return image

    async def input_of(self, gen: Generation, reader: MessageReader) -> InputImage:
        """The image a generation started from, as fresh as it can be had."""
        if gen.parent_id is not None:
            parent = await generations.get(self._db, gen.parent_id)
            if parent is not None:
                with contextlib.suppress(UserError):
                    return await self.result_image(parent, reader)
        return gen.input

    async def download(self, url: str) -> bytes:
        try:
            return await self._inputs.download(url)
        except UserError:
            raise UserError(MSG_IMAGE_GONE) from None

    async def compare(
        self, gen: Generation, shown: InputImage | None, reader: MessageReader, user_id: int
    ) -> bytes:
        """A labelled before/after picture of one step (free, no API call). Free and
        unlimited, so bounded: one at a time per member, and one lane for everyone (its
        downloads included), drawn from thumbnails decoded only as large as they are shown."""
        if user_id in self._comparing:
            raise UserError(MSG_COMPARING)
        self._comparing.add(user_id)
        try:
            after = shown or await self.result_image(gen, reader)
            before = await self.input_of(gen, reader)
            async with self._work.compare_lane():
                before_data = await self.download(before.url)
                after_data = await self.download(after.url)
                return await self._work.run(
                    images.side_by_side,
                    before_data,
                    after_data,
                    max_pixels=self._inputs.max_pixels_accepted,
                    cost=decoding.compare_cost(before_data, after_data),
                )
        except images.InvalidImage:
            raise UserError(MSG_UNREADABLE) from None
        finally:
            self._comparing.discard(user_id)
