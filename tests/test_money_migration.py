"""The money migration (issue 12) on a database an earlier version filled.

Raw SQL on purpose: the rows are written in the schema before the migration, which no
query of today's code speaks, and read back as the migration left them."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiosqlite

from bot import db


async def test_upgrading_holds_kept_undelivered_results_and_keeps_measured_costs(
    tmp_path: Path,
) -> None:
    [money] = db.migrations_dir().glob("*_money.sql")
    number = int(money.name.split("_", 1)[0])
    earlier = tmp_path / "mig"
    earlier.mkdir()
    for path in sorted(db.migrations_dir().glob("*.sql"))[: number - 1]:
        shutil.copy(path, earlier)
    conn = await aiosqlite.connect(str(tmp_path / "old.db"), isolation_level=None)
    try:
        assert await db.migrate(conn, earlier) == number - 1
        for gen_id, message_id, path, cost_source in (
            (1, None, "/kept/1.png", "balance_drop"),  # paid, kept, never delivered
            (2, 99, None, "estimate"),  # delivered
            (3, None, None, "header"),  # lost before delivery: stays as it was
        ):
            await conn.execute(
                """INSERT INTO generations (id, channel_id, user_id, source, model, prompt,
                       seed, seed_explicit, guidance, steps, aspect_ratio, output_format,
                       quality, input_mode, input_url, status, cost, cost_source,
                       result_message_id, result_path, created_at, finished_at)
                   VALUES (?, 1, 5, 'slash', 'flux-kontext-dev', 'p', 1, 0, 7, 28,
                           'match_input_image', 'png', 90, 'url', 'u', 'succeeded', 0.04,
                           ?, ?, ?, 1.0, 2.0)""",
                (gen_id, cost_source, message_id, path),
            )
            await conn.execute(
                """INSERT INTO charges (guild_id, user_id, generation_id, state, reserved,
                       amount, cost_source, created_at, settled_at)
                   VALUES (7, 5, ?, 'committed', 0.04, 0.04, ?, 1.0, 2.0)""",
                (gen_id, cost_source),
            )
        shutil.copy(money, earlier)

        assert await db.migrate(conn, earlier) == number

        rows = await conn.execute_fetchall(
            "SELECT generation_id, state, amount, settled_at FROM charges ORDER BY id"
        )
        assert [tuple(r) for r in rows] == [
            (1, "held", 0.04, None),
            (2, "committed", 0.04, 2.0),
            (3, "committed", 0.04, 2.0),
        ]
        rows = await conn.execute_fetchall("SELECT id, measured_cost FROM generations ORDER BY id")
        assert [tuple(r) for r in rows] == [(1, 0.04), (2, None), (3, 0.04)]
        # The rebuilt table still takes every state, and its indexes are back.
        await conn.execute("UPDATE charges SET state = 'released' WHERE generation_id = 3")
        names = await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'charges'"
        )
        assert {r[0] for r in names} >= {"charges_member", "charges_state"}
    finally:
        await conn.close()
