"""One running bot per database.

A second process on the same DATABASE_PATH would run start-up recovery over the first
one's live jobs: fail its rows, release its reservations, replay its queue (double calls,
free edits). So each process holds an exclusive lock on `<DATABASE_PATH>.lock` for its
whole life. The operating system drops the lock when the process ends, even on `kill -9`,
so a crash never leaves a stale lock behind; the file itself stays, naming the last holder.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

LOCK_SUFFIX = ".lock"
HOLDER_MAX_BYTES = 200


class AlreadyRunning(Exception):
    """Another process holds this database; `message` is one line for the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def lock_path(database_path: Path | str) -> Path:
    return Path(f"{database_path}{LOCK_SUFFIX}")


class InstanceLock:
    """The lock a running bot holds on its database; `release` is safe to call twice."""

    def __init__(self, path: Path | None, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, database_path: Path | str) -> InstanceLock:
        """Take the lock or raise AlreadyRunning naming the process that has it."""
        if str(database_path) == ":memory:":
            return cls(None, None)  # nothing on disk to share
        path = lock_path(database_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, HOLDER_MAX_BYTES, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(
                f"Another Kontext is already running on {database_path} "
                f"({holder or 'its pid is not written yet'}); stop it first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Closing the file drops the lock. The file stays: removing it could let two
        processes lock two different files of the same name."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
