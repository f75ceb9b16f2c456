"""Where open streams' audio waits on local disk: one directory per worker process.

Why per process: a spill file is only a cache of what Kafka holds (a restarted worker rebuilds
every open stream from its first record), so nothing in it is ever read back after the process
that wrote it ends. Each process takes an exclusive ``flock`` on a lock file in its own
directory; at start it removes every sibling directory whose lock it can take (its process is
gone: a SIGKILL left it behind), so spill files never pile up, and two workers sharing one
root never touch each other's files.

Blocking file calls: use from a thread, or only for the small, page-cache bound calls (open,
create, unlink) on the loop.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

__all__ = ["SpillDir"]

log = logging.getLogger(__name__)
_LOCK = ".lock"
_LOCKING = ".lock.new"
# Per open stream: one frame of 100 ms at 8 kHz is 1.6 KB, so about 20 frames per write(2).
WRITE_BUFFER = 32 * 1024


class SpillDir:
    """This process's directory under ``root``; :meth:`open` before use, :meth:`close` after."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock_fd: int | None = None
        self._count = 0

    def open(self) -> int:
        """Create this process's directory and lock it; return how many stale ones were removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        removed = sum(1 for child in self.root.iterdir() if self._remove_if_abandoned(child))
        self.path.mkdir()
        # Locked under another name, then renamed (the lock stays on the inode): a sweeper never
        # sees a lock file that is not locked yet.
        self._lock_fd = os.open(self.path / _LOCKING, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(self.path / _LOCKING, self.path / _LOCK)
        if removed:
            log.info("removed %d spill directories left by stopped workers", removed)
        return removed

    def create(self, stem: str) -> tuple[Path, BinaryIO]:
        """A new, empty file whose name starts with ``stem`` (already a safe name), for writing."""
        self._count += 1
        path = self.path / f"{stem}.{self._count}.wav"
        return path, open(path, "xb", buffering=WRITE_BUFFER)  # noqa: SIM115 - the caller closes

    def close(self) -> None:
        """Remove this process's directory and everything in it."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @staticmethod
    def _remove_if_abandoned(child: Path) -> bool:
        if not child.is_dir():
            return False
        for name in (_LOCK, _LOCKING):  # _LOCKING: its worker died before the rename
            try:
                fd = os.open(child / name, os.O_RDWR)
                break
            except FileNotFoundError:
                continue
        else:
            return False  # being created right now, or not a worker's
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its worker is alive
        else:
            shutil.rmtree(child, ignore_errors=True)
            return True
        finally:
            os.close(fd)
