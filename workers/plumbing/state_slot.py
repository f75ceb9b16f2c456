"""A worker process's own folder for its stores on disk, under a state directory it may share.

Two workers of one group may run on one host with the same settings: each takes the first free
``slot-N`` folder, held with an exclusive ``flock`` on ``slot-N.lock`` for as long as it runs.
The kernel lets go of the lock when the process dies, however it dies, so a worker started
again after a crash takes its old slot back, with the checkpointed state in it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["StateSlot", "StateSlotsTaken"]


class StateSlotsTaken(RuntimeError):
    """Every slot of the state directory is held by a running worker."""


class StateSlot:
    def __init__(self, root: Path, slots: int = 64) -> None:
        self.root = root
        self.slots = slots
        self.path: Path | None = None
        self._fd: int | None = None

    def acquire(self) -> Path:
        """Take the first free slot and return its folder (created if missing)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for number in range(self.slots):
            fd = os.open(self.root / f"slot-{number}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fd = fd
            self.path = self.root / f"slot-{number}"
            self.path.mkdir(exist_ok=True)
            return self.path
        raise StateSlotsTaken(f"all {self.slots} state slots under {self.root} are in use")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
            self.path = None
