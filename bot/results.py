"""Result images kept on disk until Discord has them: a paid-for edit is never lost to a
failed upload or a restart. Delivered files are removed; undelivered ones are pruned
after the retention period (by `bot.upkeep`, which refunds them too)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from bot.db import generations
from bot.db.connection import Database

log = logging.getLogger(__name__)


class ResultStore:
    def __init__(self, database: Database, directory: Path, *, retention_s: float) -> None:
        self._db = database
        self.directory = directory
        self.retention_s = retention_s

    async def save(self, generation_id: int, data: bytes, extension: str) -> Path:
        """Write the bytes, then point the generation at them. Cancelled half-way, it
        leaves no file behind (the write runs in a thread that a cancel cannot stop)."""
        path = self.directory / f"{generation_id}.{extension}"
        write = asyncio.ensure_future(asyncio.to_thread(_write_atomically, path, data))
        try:
            await asyncio.shield(write)
            await generations.set_result_path(self._db, generation_id, str(path))
        except BaseException:
            await asyncio.shield(self._discard(write, generation_id, path))
            raise
        return path

    async def _discard(self, write: asyncio.Future[None], generation_id: int, path: Path) -> None:
        with contextlib.suppress(BaseException):
            await write  # let the thread finish, so nothing is written after the cleanup
        await asyncio.to_thread(_remove, path)
        await generations.set_result_path(self._db, generation_id, None)

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

    async def prune(self, finished_before: float) -> list[int]:
        """Remove undelivered results that finished before `finished_before` (their
        retention is over). Returns their generations."""
        rows = await generations.kept_before(self._db, finished_before)
        for generation_id, path in rows:
            await asyncio.to_thread(Path(path).unlink, missing_ok=True)
            await generations.set_result_path(self._db, generation_id, None)
        if rows:
            log.info("Pruned %d undelivered result(s) past the retention period", len(rows))
        return [generation_id for generation_id, _ in rows]

    async def sweep_orphans(self) -> int:
        """At start-up (no save can be running): remove files no generation points at,
        such as a half-written `.tmp` a crash left."""
        kept = set(await generations.kept_paths(self._db))
        orphans = await asyncio.to_thread(_orphans, self.directory, kept)
        if orphans:
            log.warning("Removed %d result file(s) no edit points at", orphans)
        return orphans


def _orphans(directory: Path, kept: set[str]) -> int:
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.iterdir():
        if path.is_file() and str(path) not in kept:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    _tmp(path).unlink(missing_ok=True)


def _tmp(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".tmp")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_bytes(data)
    tmp.replace(path)
