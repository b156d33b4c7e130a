"""A member's recent edits in one server, newest first, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass

from bot.db import charges, generations
from bot.db.connection import Database
from bot.db.generations import Generation

PAGE_SIZE = 5


@dataclass(frozen=True)
class HistoryEntry:
    generation: Generation
    step: int
    charge: str | None = None  # its charge's state: 'held' until delivered, 'released'...

    @property
    def undelivered(self) -> bool:
        """Paid for, kept on disk, never posted: the member may ask for it."""
        gen = self.generation
        return gen.status == "succeeded" and gen.result_message_id is None and bool(gen.result_path)


@dataclass(frozen=True)
class HistoryPage:
    entries: list[HistoryEntry]
    page: int  # from 0
    pages: int
    total: int


class History:
    def __init__(self, database: Database, *, page_size: int = PAGE_SIZE) -> None:
        self._db = database
        self.page_size = page_size

    async def page(self, guild_id: int, user_id: int, page: int) -> HistoryPage:
        total = await generations.history_count(self._db, guild_id, user_id)
        pages = max(1, -(-total // self.page_size))
        page = min(max(page, 0), pages - 1)
        rows = await generations.history(
            self._db, guild_id, user_id, limit=self.page_size, offset=page * self.page_size
        )
        states = await charges.states_of(self._db, [g.id for g in rows])
        entries = [
            HistoryEntry(g, await generations.chain_step(self._db, g.id), states.get(g.id))
            for g in rows
        ]
        return HistoryPage(entries, page, pages, total)
