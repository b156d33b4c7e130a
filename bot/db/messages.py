"""Queries on `result_messages`: every message that shows a generation's image."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.db import charges
from bot.db.connection import Database


async def record_delivery(
    database: Database,
    generation_id: int,
    *,
    channel_id: int,
    message_id: int,
    attachment_id: int | None,
    url: str | None,
    is_result: bool = True,
) -> None:
    """Remember a message that shows this generation's image (the result, or a re-post).
    A result's held cost is charged in the same transaction: Discord has it now."""
    async with database.transaction() as conn:
        await conn.execute(
            """INSERT OR REPLACE INTO result_messages
                   (message_id, channel_id, generation_id, attachment_id, url, posted_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (message_id, channel_id, generation_id, attachment_id, url, time.time()),
        )
        if is_result:
            await conn.execute(
                """UPDATE generations SET result_channel_id = ?, result_message_id = ?,
                       result_attachment_id = ?, result_url = ?
                   WHERE id = ?""",
                (channel_id, message_id, attachment_id, url, generation_id),
            )
            await charges.commit_delivered(conn, generation_id, time.time())


@dataclass(frozen=True)
class ResultMessage:
    message_id: int
    channel_id: int
    generation_id: int
    url: str | None
    deleted_at: float | None


async def result_message(database: Database, message_id: int) -> ResultMessage | None:
    """The generation a bot message shows, if it is one of ours."""
    row = await database.fetchone(
        """SELECT message_id, channel_id, generation_id, url, deleted_at
           FROM result_messages WHERE message_id = ?""",
        (message_id,),
    )
    return ResultMessage(*row) if row else None


async def generation_of_attachment(database: Database, attachment_id: int) -> int | None:
    """The generation whose image this Discord attachment is (a result or a re-post)."""
    row = await database.fetchone(
        "SELECT generation_id FROM result_messages WHERE attachment_id = ? LIMIT 1",
        (attachment_id,),
    )
    return None if row is None else int(row[0])


async def mark_message_deleted(database: Database, message_id: int) -> bool:
    cur = await database.write(
        "UPDATE result_messages SET deleted_at = ? WHERE message_id = ? AND deleted_at IS NULL",
        (time.time(), message_id),
    )
    return cur.rowcount == 1
