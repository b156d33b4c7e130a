"""The database: the connection and its migrations, then one module per group of tables.
All SQL lives here (and in `migrations/`)."""

from bot.db.connection import Database, connect, connect_read_only, migrate, migrations_dir

__all__ = ["Database", "connect", "connect_read_only", "migrate", "migrations_dir"]
