"""Result images kept on disk until Discord has them: a paid-for edit is never lost to a
failed upload or a restart. Delivered files are removed; undelivered ones are pruned
after the retention period."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from bot.db import generations
from bot.db.connection import Database

log = logging.getLogger(__name__)


class ResultStore:
    def __init__(self, database: Database, directory: Path, *, retention_s: float) -> None:
        self._db = database
        self.directory = directory
        self._retention_s = retention_s
        self._claimed: set[int] = set()

    def claim(self, generation_id: int) -> bool:
        """Take the right to deliver a kept result; False when another delivery has it."""
        if generation_id in self._claimed:
            return False
        self._claimed.add(generation_id)
        return True

    def unclaim(self, generation_id: int) -> None:
        self._claimed.discard(generation_id)

    async def save(self, generation_id: int, data: bytes, extension: str) -> Path:
        path = self.directory / f"{generation_id}.{extension}"
        await asyncio.to_thread(_write_atomically, path, data)
        await generations.set_result_path(self._db, generation_id, str(path))
        return path

    async def load(self, generation_id: int) -> tuple[bytes, str] | None:
        """The kept bytes and file name of an undelivered result, if still on disk."""
        kept = await generations.result_path(self._db, generation_id)
        if not kept:
            return None
        path = Path(kept)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        return data, path.name

    async def forget(self, generation_id: int) -> None:
        """Delivered: the file is no longer needed."""
        kept = await generations.result_path(self._db, generation_id)
        if kept:
            await asyncio.to_thread(Path(kept).unlink, missing_ok=True)
            await generations.set_result_path(self._db, generation_id, None)

    async def prune(self) -> int:
        """Remove undelivered results older than the retention period."""
        cutoff = time.time() - self._retention_s
        rows = await generations.kept_before(self._db, cutoff)
        for generation_id, path in rows:
            await asyncio.to_thread(Path(path).unlink, missing_ok=True)
            await generations.set_result_path(self._db, generation_id, None)
        if rows:
            log.info("Pruned %d undelivered result(s) past the retention period", len(rows))
        return len(rows)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
