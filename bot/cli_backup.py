"""`kontext-bot backup PATH` and `kontext-bot restore PATH`.

A backup is taken with SQLite's online backup API, so it is consistent even while the
bot is writing, then verified (integrity, schema version) before it gets its name. A
restore refuses while a bot holds the database, and keeps the database it replaces.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.config import StorageSettings
from bot.db.offline import DatabaseProblem, Summary, backup, restore
from bot.in_use import DatabaseInUse, held

EXIT_FAILED = 1


def _describe(found: Summary) -> str:
    return (
        f"schema version {found.schema_version}, integrity ok: {found.generations} edits, "
        f"{found.committed_charges} charges ({found.committed_credits:.4f} credits)"
    )


def run_backup(settings: StorageSettings, target: Path) -> int:
    """Copy the database to `target`; returns the exit status."""
    try:
        found = backup(settings.database_path, target)
    except DatabaseProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"backup written to {target} ({_describe(found)})")
    return 0


def run_restore(settings: StorageSettings, source: Path) -> int:
    """Replace the database with the backup `source`; returns the exit status."""
    target = settings.database_path
    if source.resolve() == target.resolve():
        print("error: that is the database itself, not a backup of it", file=sys.stderr)
        return EXIT_FAILED
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    keep_as = target.with_name(f"{target.name}.before-restore-{stamp}")
    try:
        # Held throughout, so a bot cannot start on a half-restored database.
        with held(target):
            existed = target.exists()
            found = restore(source, target, keep_as if existed else None)
    except DatabaseInUse as exc:
        print(f"error: not restoring: {exc}. Stop the bot first.", file=sys.stderr)
        return EXIT_FAILED
    except DatabaseProblem as exc:
        print(f"error: not restoring: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"restored {target} from {source} ({_describe(found)})")
    if existed:
        print(f"the database it replaced is kept as {keep_as}")
    return 0
