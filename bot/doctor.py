"""What `kontext-bot doctor` finds: one line per check, and the checks that need no
Discord (the database, the results folder). Nothing here sends anything anywhere."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.db import offline
from bot.db.connection import latest_version, sqlite_too_old
from bot.in_use import database_in_use

OK = "ok"
WARN = "warn"
FAIL = "FAIL"
SKIP = "skip"


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # OK, WARN, FAIL or SKIP
    detail: str


def table(findings: list[Finding]) -> str:
    """The findings as a plain-text table, one row each."""
    width = max([len("check"), *(len(f.check) for f in findings)])
    rows = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    rows += [f"{f.check:<{width}}  {f.status:<6}  {f.detail}" for f in findings]
    return "\n".join(rows)


def sqlite_finding() -> Finding:
    """Whether this Python's SQLite can hold the bot's database."""
    too_old = sqlite_too_old()
    if too_old is not None:
        return Finding("sqlite", FAIL, too_old)
    return Finding("sqlite", OK, f"SQLite {sqlite3.sqlite_version}")


def database_findings(settings: Settings) -> tuple[list[Finding], dict[int, list[int]]]:
    """The database's health, and the channels edits were made in (for the permissions)."""
    path = settings.database_path
    if not path.exists():
        note = f"{path} does not exist yet: the bot creates it when it first starts"
        return [Finding("database", WARN, note)], {}
    try:
        with offline.read_only(path) as conn:
            problems = offline.integrity_problems(conn)
            version = offline.schema_version(conn)
            found = offline.summary(conn) if version >= 1 else None
            channels = offline.edit_channels(conn) if version >= 1 else {}
    except (offline.DatabaseProblem, sqlite3.DatabaseError) as exc:
        return [Finding("database", FAIL, f"{path} cannot be read ({exc})")], {}
    findings = [_schema_finding(path, version)]
    if problems:
        findings.append(Finding("database integrity", FAIL, "; ".join(problems[:3])))
    else:
        edits = f"edits recorded: {found.generations}" if found else "no tables yet"
        findings.append(Finding("database integrity", OK, f"integrity_check ok, {edits}"))
    holder = database_in_use(path)
    findings.append(Finding("running bot", OK, holder or "none holds the database now"))
    return findings, channels


def _schema_finding(path: Path, version: int) -> Finding:
    latest = latest_version()
    if version > latest:
        return Finding(
            "database schema",
            FAIL,
            f"version {version} is newer than this bot's {latest}: upgrade the bot",
        )
    if version < latest:
        return Finding(
            "database schema",
            WARN,
            f"version {version}: {latest - version} migration(s) to apply, "
            "which the bot does when it starts",
        )
    return Finding("database schema", OK, f"version {version} (up to date) at {path}")


def results_finding(settings: Settings) -> Finding:
    folder = settings.results_dir
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        return Finding("results folder", FAIL, f"{folder} cannot be written by this user")
    if not existing.is_dir():
        return Finding("results folder", FAIL, f"{existing} is not a folder")
    return Finding("results folder", OK, f"{folder} is writable")
