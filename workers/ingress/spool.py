"""The durable local spool: webhooks that Kafka did not acknowledge in time, on disk, in order.

One file per record, named by a sequence number, written to a temporary name, fsynced, renamed and
the directory fsynced, so a record in the spool survives a crash or a power cut and is never seen
half-written. Sequence numbers give FIFO order, across restarts too. The spool is bounded in bytes;
a full spool refuses (:class:`SpoolFull`) rather than growing. One process per directory (a lock
file enforces it). Blocking file work runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from workers import json_codec
from workers.errors import ConfigError

__all__ = ["Spool", "SpoolFull", "SpoolRecord", "write_durably"]

log = logging.getLogger(__name__)
_SUFFIX = ".rec"


class SpoolFull(Exception):
    """The spool has no room for this record."""


@dataclass(frozen=True)
class SpoolRecord:
    """A record waiting for Kafka: where it goes and the exact bytes to send."""

    seq: int
    topic: str
    key: str
    value: bytes
    size: int


class Spool:
    """A directory of fsynced records; call :meth:`open` before anything else."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._bytes = 0
        self._next_seq = 1
        self._lock: IO[bytes] | None = None

    @property
    def bytes_used(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        # "Full" for readiness: less room than one more maximum-size webhook would likely need.
        return self._bytes >= self.max_bytes

    def open(self) -> list[SpoolRecord]:
        """Lock the directory and return the records a previous run left, oldest first."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = (self.directory / ".lock").open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ConfigError(f"spool {self.directory} is in use by another process") from None
        self._lock = lock
        for stale in self.directory.glob("*.tmp"):
            stale.unlink()  # never renamed: the request that wrote it was not answered 2xx
        records = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                records.append(_read(path))
            except (ValueError, OSError) as exc:
                log.error("spool file %s is unreadable, moved aside: %s", path.name, exc)
                path.rename(path.with_suffix(".corrupt"))
        self._bytes = sum(r.size for r in records)
        self._next_seq = (records[-1].seq + 1) if records else 1
        return records

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def reserve(self) -> int:
        """The next sequence number: taken when a request arrives, so order is arrival order."""
        seq = self._next_seq
        self._next_seq += 1
        return seq

    async def append(
        self, seq: int, topic: str, key: str, value: bytes, *, headroom: int = 0
    ) -> SpoolRecord:
        """Write and fsync one record; returns once it is durable. Raises :class:`SpoolFull`.

        ``headroom``: bytes this record may take past the bound (a stream's last record).
        """
        blob = json_codec.dumps({"topic": topic, "key": key}) + b"\n" + value
        if self._bytes + len(blob) > self.max_bytes + headroom:
            raise SpoolFull(f"spool {self.directory} holds {self._bytes} of {self.max_bytes} bytes")
        self._bytes += len(blob)  # reserved now, so concurrent appends cannot overshoot
        try:
            await asyncio.to_thread(write_durably, self.directory / _name(seq), blob)
        except BaseException:
            self._bytes -= len(blob)
            raise
        return SpoolRecord(seq=seq, topic=topic, key=key, value=value, size=len(blob))

    async def remove(self, record: SpoolRecord) -> None:
        await asyncio.to_thread(_unlink, self.directory / _name(record.seq))
        self._bytes -= record.size


def _name(seq: int) -> str:
    return f"{seq:020d}{_SUFFIX}"


def write_durably(final: Path, blob: bytes) -> None:
    """Write ``final`` so a crash leaves it whole or absent: temporary name, fsync, rename, and
    the directory fsynced. Blocks: call it in a thread."""
    tmp = final.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, blob)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> SpoolRecord:
    blob = path.read_bytes()
    header, sep, value = blob.partition(b"\n")
    meta = json_codec.loads(header) if sep else None
    if not isinstance(meta, dict) or not isinstance(meta.get("topic"), str):
        raise ValueError("no header line")
    seq = int(path.name.removesuffix(_SUFFIX))
    return SpoolRecord(
        seq=seq, topic=meta["topic"], key=str(meta["key"]), value=value, size=len(blob)
    )
