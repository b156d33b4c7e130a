"""Whether a bot holds a database. A running bot holds an exclusive flock on
`<DATABASE_PATH>.lock` for its whole life (one instance per database); a tool that must
not run beside a bot (`kontext-bot restore`) takes the same lock, or is refused."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class DatabaseInUse(Exception):
    """Another process holds the database's lock; the text says who, where known."""


def lock_path(database_path: Path) -> Path:
    return database_path.with_name(database_path.name + ".lock")


def _holder(fd: int, path: Path) -> str:
    # The holder may have written its process id into the lock file.
    with contextlib.suppress(OSError):
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"a bot (process {text}) is running on this database ({path} is locked)"
    return f"a bot is running on this database ({path} is locked)"


@contextlib.contextmanager
def held(database_path: Path) -> Iterator[None]:
    """Hold the database's lock for the block, or raise DatabaseInUse at once."""
    path = lock_path(database_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No O_TRUNC: the holder's process id, if written, stays readable.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseInUse(_holder(fd, path)) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def database_in_use(database_path: Path) -> str | None:
    """Why the database is in use (a bot holds its lock), or None when it is free."""
    try:
        with held(database_path):
            return None
    except DatabaseInUse as exc:
        return str(exc)
