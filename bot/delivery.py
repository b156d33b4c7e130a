"""Delivery: a paid-for result reaches Discord exactly once.

claim (one upload of a result at a time) -> post through a `Poster`, retrying what
Discord failed to take -> record the message (the chain finds it there), charge what the
edit held, and drop the copy kept on disk. Replies that arrive before the record is
written wait on it in memory.

A result Discord will not take stays kept, its cost held (not charged): the member may
press Deliver in /history; if it is never delivered it is refunded when the kept copy
expires. When the channel refuses it (no permission, channel gone) the member is told by
a DM, since a reply in that channel would be refused too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from bot.cards import ResultCard
from bot.db import generations, messages
from bot.db.connection import Database
from bot.errors import UserError
from bot.ports import DirectMessages, Posted, Poster, PostFailed
from bot.requests import EditOutcome
from bot.results import ResultStore

log = logging.getLogger(__name__)

DELIVERY_ATTEMPTS = 4
DELIVERY_BACKOFF_S = 1.0
RECORD_WAIT_S = 2.0
MSG_UNDELIVERED = (
    "Your edit is done, but Discord would not take the upload just now. It is kept for "
    "you: open /history and press Deliver."
)
MSG_REFUSED = (
    "Your edit is done, but Discord refused to take it in this channel (the bot may lack the "
    "right to post or attach files here, or the channel is gone). It is kept for you: open "
    "/history and press Deliver once the bot may post. If it is never delivered, you are not "
    "charged."
)
MSG_ALREADY_DELIVERING = "That result is being posted right now."
PROMPT_PREVIEW = 80


class Undelivered(UserError):
    """A paid-for result Discord did not take: kept on disk, its cost held, not charged.
    `refused`: the channel refused it (retrying the same post cannot help)."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


def refused_dm(prompt: str, channel_id: int, hours: float) -> str:
    short = prompt if len(prompt) <= PROMPT_PREVIEW else prompt[:PROMPT_PREVIEW] + "…"
    return (
        f"Your edit “{short}” is done, but Discord would not let me post it in <#{channel_id}>. "
        f"It is kept for {hours:g} hours: once I may post there, open /history in that server "
        "and press Deliver. If it is never delivered, you are not charged."
    )


class Delivery:
    def __init__(
        self,
        database: Database,
        results: ResultStore,
        *,
        dms: DirectMessages | None = None,
        attempts: int = DELIVERY_ATTEMPTS,
        backoff_s: float = DELIVERY_BACKOFF_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = database
        self._results = results
        self._dms = dms  # None: nobody to tell privately (the benchmark)
        self.attempts = attempts
        self.backoff_s = backoff_s  # tests shorten it
        self._sleep = sleep
        self._claimed: set[int] = set()
        self._waiters: dict[int, asyncio.Event] = {}

    def delivering(self, generation_id: int) -> bool:
        """Whether this result is being posted right now (its upload is claimed)."""
        return generation_id in self._claimed

    def uploading(self) -> frozenset[int]:
        """The results being posted right now: their money is that upload's to settle."""
        return frozenset(self._claimed)

    async def step_of(self, generation_id: int) -> int:
        return await generations.chain_step(self._db, generation_id)

    async def deliver(
        self,
        outcome: EditOutcome,
        poster: Poster,
        *,
        requester_id: int,
        note: str | None = None,
        ping: bool = False,
    ) -> Posted:
        """Post a fresh result and record it."""
        step = await self.step_of(outcome.generation_id)
        card = ResultCard.from_outcome(
            outcome, requester_id=requester_id, step=step, note=note, ping=ping
        )
        async with self._claim(card.generation_id):
            return await self._post_and_record(card, outcome.image, poster, is_result=True)

    async def deliver_kept(
        self, generation_id: int, poster_for: Callable[[generations.Generation], Poster], note: str
    ) -> Posted | None:
        """Post a paid-for result from the copy kept on disk (a failed upload, a restart),
        pinging its member. None when it was delivered already, is no longer kept, or is
        being posted right now (a second press of Deliver). Raises Undelivered when Discord
        still does not take it."""
        if generation_id in self._claimed:
            return None
        async with self._claim(generation_id):
            gen = await generations.get(self._db, generation_id)
            kept = await self._results.load(generation_id)
            if gen is None or kept is None or gen.result_message_id is not None:
                return None
            data, filename = kept
            step = await self.step_of(gen.id)
            card = ResultCard.from_generation(
                gen, step=step, filename=filename, note=note, ping=True
            )
            return await self._post_and_record(card, data, poster_for(gen), is_result=True)

    async def repost(
        self, gen: generations.Generation, image: bytes, filename: str, poster: Poster, note: str
    ) -> Posted:
        """Show an earlier result again (Undo): replies and buttons on the re-post branch
        from it. Nothing is paid, so nothing is claimed or kept."""
        step = await self.step_of(gen.id)
        card = ResultCard.from_generation(
            gen, step=step, filename=filename, note=note.format(step=step), ping=False
        )
        return await self._post_and_record(card, image, poster, is_result=False)

    async def recorded(self, message_id: int, *, wait: bool) -> messages.ResultMessage | None:
        """The generation a bot message shows. `wait`: the message is the bot's own and a
        reply may have beaten its record by milliseconds, so wait briefly for it."""
        event = self._waiters.setdefault(message_id, asyncio.Event()) if wait else None
        try:
            found = await messages.result_message(self._db, message_id)
            if found is None and event is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), RECORD_WAIT_S)
                found = await messages.result_message(self._db, message_id)
            return found
        finally:
            if event is not None and self._waiters.get(message_id) is event:
                del self._waiters[message_id]

    async def message_gone(self, message_id: int) -> None:
        await messages.mark_message_deleted(self._db, message_id)

    @contextlib.asynccontextmanager
    async def _claim(self, generation_id: int) -> AsyncIterator[None]:
        """One upload of a result at a time (the job, /history's Deliver, start-up)."""
        if generation_id in self._claimed:
            raise UserError(MSG_ALREADY_DELIVERING)
        self._claimed.add(generation_id)
        try:
            yield
        finally:
            self._claimed.discard(generation_id)

    async def _post_and_record(
        self, card: ResultCard, image: bytes, poster: Poster, *, is_result: bool
    ) -> Posted:
        try:
            posted = await self._post_with_retries(card, image, poster)
        except PostFailed as exc:
            if not is_result:
                raise
            log.warning("Discord refused result %d (%s); it stays kept", card.generation_id, exc)
            await self._tell_refused(card)
            raise Undelivered(MSG_REFUSED, refused=True) from exc
        await messages.record_delivery(
            self._db,
            card.generation_id,
            channel_id=posted.channel_id,
            message_id=posted.message_id,
            attachment_id=posted.attachment_id,
            url=posted.url,
            is_result=is_result,
        )
        if is_result:
            await self._results.forget(card.generation_id)
        event = self._waiters.get(posted.message_id)
        if event is not None:
            event.set()
        return posted

    async def _post_with_retries(self, card: ResultCard, image: bytes, poster: Poster) -> Posted:
        """Retry what Discord failed to take, beyond discord.py's own retries: a paid-for
        result must arrive. The bytes stay on disk until it does."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await poster.post(card, image)
            except PostFailed as exc:
                if not exc.retryable:
                    raise
                log.warning(
                    "Posting result %d failed (%s); attempt %d", card.generation_id, exc, attempt
                )
            if attempt < self.attempts:
                await self._sleep(self.backoff_s * 2 ** (attempt - 1))
        raise Undelivered(MSG_UNDELIVERED, refused=False)

    async def _tell_refused(self, card: ResultCard) -> None:
        """A DM: the channel that refused the result would refuse a reply too."""
        gen = await generations.get(self._db, card.generation_id)
        if self._dms is None or gen is None:
            return
        hours = self._results.retention_s / 3600
        await self._dms.dm(card.requester_id, refused_dm(gen.prompt, gen.channel_id, hours))
