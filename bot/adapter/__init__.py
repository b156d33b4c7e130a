"""The Discord adapter: everything that speaks discord.py apart from the cogs themselves.

It implements the core's ports (posters, a message reader, channels after a restart),
draws result cards and reports, and answers errors. With `bot/client.py`, `bot/cli.py`
and `cogs/`, it is the only code allowed to import `discord` (ruff TID251)."""
