"""State for the batch core: key -> bytes per partition, each change on a changelog.

A store partition belongs to the worker that owns the same partition of the store's source
topics (co-partitioned: the same partition count, assigned together). It is restored from the
same partition of its compacted changelog topic before any record of that partition is handled,
and dropped when the partition is revoked. Changes made while a batch is handled are collected,
the last value per key winning, and the core writes them to the changelog only once the batch's
outputs are on Kafka (``batch_worker``).

A partition's data lives in one of two places:

- **memory** (a dict, when the store has no directory): restored from the changelog's start at
  every assignment. For tests and small state.
- **disk** (one RocksDB database per partition, through rocksdict): a day of the enricher's
  state is about 10 GiB (bench/README.md, "State and restore"), which no dict should hold.
  A change waits in memory (the overlay) until the core has its changelog write acknowledged;
  only then is it written to the database, in one atomic write with the changelog offset it
  brings the partition to (the checkpoint). So the database never holds a change the changelog
  does not, and a restart, or a partition coming back, reads the changelog from the checkpoint
  on instead of from its start. A checkpoint the changelog cannot continue (the topic was
  recreated or truncated) or one older than ``max_checkpoint_age_s`` (a delete's tombstone may
  have been compacted away since) means a full restore into an empty database.

Keys are ``str`` (UTF-8 on Kafka), values raw bytes (``None`` on Kafka deletes): the records
faust's tables wrote to the same changelog topics, so a store reads what a faust table left.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import orjson
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager

__all__ = ["ChangelogStore", "StoreNotOwned"]

Change = tuple[bytes, bytes | None]
# Kept in each partition's database beside the data; no store key starts with a NUL byte.
_CHECKPOINT = b"\x00exopipe.changelog-checkpoint"
# Compacted changelogs keep a delete's tombstone for delete.retention.ms (Kafka's default, 24 h):
# a checkpoint older than this may miss a delete, so the partition is restored in full.
DEFAULT_MAX_CHECKPOINT_AGE_S = 12 * 3600.0


class StoreNotOwned(KeyError):
    """A partition of a store this worker does not hold (a bug: records are filtered first)."""


class _Partition(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes) -> None: ...
    def delete(self, key: str) -> bool: ...
    def items(self) -> Iterator[tuple[str, bytes]]: ...
    def __len__(self) -> int: ...
    def restore_from(self, begin: int, end: int) -> int: ...
    def apply(self, changes: Sequence[Change], next_offset: int) -> None: ...
    def persisted(self, changes: Sequence[Change], next_offset: int) -> None: ...
    def close(self) -> None: ...


class _MemoryPartition:
    """A dict, restored from the changelog's start each time."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    def set(self, key: str, value: bytes) -> None:
        self._data[key] = value

    def delete(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    def items(self) -> Iterator[tuple[str, bytes]]:
        yield from list(self._data.items())

    def __len__(self) -> int:
        return len(self._data)

    def restore_from(self, begin: int, end: int) -> int:
        self._data.clear()
        return begin

    def apply(self, changes: Sequence[Change], next_offset: int) -> None:
        data = self._data
        for key, value in changes:
            if value is None:
                data.pop(key.decode(), None)
            else:
                data[key.decode()] = value

    def persisted(self, changes: Sequence[Change], next_offset: int) -> None:
        """Nothing to do: memory is where the changes already are."""

    def close(self) -> None:
        self._data.clear()


class _DiskPartition:
    """A RocksDB database with a checkpoint, and an overlay of changes not yet acknowledged."""

    def __init__(self, path: Path, max_checkpoint_age_s: float) -> None:
        self._path = path
        self._max_age_s = max_checkpoint_age_s
        path.parent.mkdir(parents=True, exist_ok=True)
        _delete_wiped(path)  # what a process that stopped while deleting left
        self._db = Rdict(str(path), _options())
        # key -> value (None: deleted) for changes whose changelog write is not acknowledged.
        self._overlay: dict[str, bytes | None] = {}

    def get(self, key: str) -> bytes | None:
        overlay = self._overlay
        if key in overlay:
            return overlay[key]
        value: bytes | None = self._db.get(key.encode())
        return value

    def set(self, key: str, value: bytes) -> None:
        self._overlay[key] = value

    def delete(self, key: str) -> bool:
        if self.get(key) is None:
            return False
        self._overlay[key] = None
        return True

    def items(self) -> Iterator[tuple[str, bytes]]:
        overlay = dict(self._overlay)
        rows = self._db.items()
        try:
            for raw_key, value in rows:
                if raw_key == _CHECKPOINT:
                    continue
                key = raw_key.decode()
                if key not in overlay:
                    yield key, value
        finally:
            del rows  # a live iterator keeps the database open after close()
        for key, changed in overlay.items():
            if changed is not None:
                yield key, changed

    def __len__(self) -> int:
        """An estimate for the database (RocksDB counts no keys exactly), plus the overlay."""
        estimate = int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)
        return estimate + sum(1 for value in self._overlay.values() if value is not None)

    def restore_from(self, begin: int, end: int) -> int:
        """The changelog offset to read on from: the checkpoint, or ``begin`` after a wipe."""
        self._overlay.clear()
        checkpoint = self._checkpoint()
        if checkpoint is not None:
            offset, written_at = checkpoint
            fresh = time.time() - written_at <= self._max_age_s
            if fresh and begin <= offset <= end:
                return offset
        self._wipe()
        return begin

    def apply(self, changes: Sequence[Change], next_offset: int) -> None:
        """Restored records, written with the offset after them (a crash resumes from there)."""
        self._write(changes, next_offset)

    def persisted(self, changes: Sequence[Change], next_offset: int) -> None:
        """These changes are on the changelog up to ``next_offset``: write them to disk."""
        self._write(changes, next_offset)
        overlay = self._overlay
        for raw_key, value in changes:
            key = raw_key.decode()
            # A later batch may have changed the key again: its value stays until it is written.
            if key in overlay and overlay[key] is value:
                del overlay[key]

    def close(self) -> None:
        self._overlay.clear()
        self._db.close()

    def _write(self, changes: Sequence[Change], next_offset: int) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(_CHECKPOINT, orjson.dumps({"offset": next_offset, "at": time.time()}))
        self._db.write(batch)

    def _checkpoint(self) -> tuple[int, float] | None:
        raw = self._db.get(_CHECKPOINT)
        if raw is None:
            return None
        try:
            mark = orjson.loads(raw)
            return int(mark["offset"]), float(mark["at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def _wipe(self) -> None:
        """Start again empty. The old database (a day's state is gigabytes) is renamed aside
        at once and deleted on a thread of its own, off the event loop."""
        self._db.close()
        self._path.rename(self._path.with_name(f"{self._path.name}{_WIPED}{uuid.uuid4().hex[:8]}"))
        _delete_wiped(self._path)
        self._db = Rdict(str(self._path), _options())


# Every partition database of a process shares one memtable budget and one block cache: with
# RocksDB's defaults (64 MiB memtables per database) 24 databases took the enricher's peak RSS
# from 283 to 445 MiB at 500 calls/s.
MEMTABLE_BUDGET_BYTES = 32 * 2**20
BLOCK_CACHE_BYTES = 32 * 2**20


@lru_cache(maxsize=1)
def _shared() -> tuple[WriteBufferManager, Cache]:
    return WriteBufferManager(MEMTABLE_BUDGET_BYTES, False), Cache(BLOCK_CACHE_BYTES)


_WIPED = ".wiped-"


def _delete_wiped(path: Path) -> None:
    """Delete the databases wiped from ``path`` (renamed aside) on a background thread."""
    for wiped in path.parent.glob(f"{path.name}{_WIPED}*"):
        threading.Thread(
            target=shutil.rmtree, args=(wiped, True), name="store-wipe", daemon=True
        ).start()


def _options() -> Options:
    memtables, cache = _shared()
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_bloom_filter(10, False)  # most lookups are of keys not there (a new call)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(4 * 2**20)
    options.set_write_buffer_manager(memtables)
    options.set_block_based_table_factory(table)
    return options


class ChangelogStore:
    """One named store: its changelog topic, the topics whose partitions it follows, its data.

    With no ``directory`` the data is in memory; with one, each partition is a database under
    ``directory/<partition>`` (the core gives it the worker's state directory).
    """

    def __init__(
        self,
        name: str,
        changelog: str,
        sources: Iterable[str],
        *,
        directory: Path | None = None,
        max_checkpoint_age_s: float = DEFAULT_MAX_CHECKPOINT_AGE_S,
    ) -> None:
        self.name = name
        self.changelog = changelog
        self.sources = frozenset(sources)
        self.directory = directory
        self.max_checkpoint_age_s = max_checkpoint_age_s
        self._parts: dict[int, _Partition] = {}
        self._opening: dict[int, _Partition] = {}  # being restored, not owned yet
        self._changes: dict[int, dict[str, bytes | None]] = {}

    # ---- what a job uses while handling a batch -------------------------------------------

    def get(self, partition: int, key: str) -> bytes | None:
        return self._part(partition).get(key)

    def set(self, partition: int, key: str, value: bytes) -> None:
        self._part(partition).set(key, value)
        self._changes.setdefault(partition, {})[key] = value

    def delete(self, partition: int, key: str) -> None:
        if self._part(partition).delete(key):
            self._changes.setdefault(partition, {})[key] = None

    def items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        yield from self._part(partition).items()

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts.values())

    # ---- what the core uses ----------------------------------------------------------------

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._parts)

    def use_directory(self, directory: Path | None) -> None:
        """Where partitions opened from now on keep their data (``None``: memory)."""
        self.directory = directory

    def open(self, partition: int, begin: int, end: int) -> int:
        """Start taking ``partition`` over; return the changelog offset to restore from.

        ``begin`` and ``end`` are the changelog partition's first and next offsets now. The
        partition is not owned until :meth:`restored`; records go in with :meth:`apply`.
        """
        self._close(partition)
        part: _Partition
        if self.directory is None:
            part = _MemoryPartition()
        else:
            part = _DiskPartition(self.directory / str(partition), self.max_checkpoint_age_s)
        self._opening[partition] = part
        return part.restore_from(begin, end)

    def apply(self, partition: int, changes: Sequence[Change], next_offset: int) -> None:
        """Changelog records read while restoring, up to (not including) ``next_offset``."""
        self._opening[partition].apply(changes, next_offset)

    def restored(self, partition: int) -> None:
        """The partition's changelog is read to its end: the partition is owned from now."""
        self._parts[partition] = self._opening.pop(partition)
        self._changes.pop(partition, None)

    def adopt(self, partition: int, data: dict[str, bytes]) -> None:
        """Take ``partition`` over holding ``data``, as if its changelog held just that (for
        tests and tools that build state without Kafka)."""
        self.open(partition, 0, 0)
        self.apply(partition, [(key.encode(), value) for key, value in data.items()], 0)
        self.restored(partition)

    def persisted(self, partition: int, changes: Sequence[Change], next_offset: int) -> None:
        """These changes of ``partition`` are acknowledged on the changelog up to
        ``next_offset`` (called by the core in the order they were taken)."""
        part = self._parts.get(partition)
        if part is not None:
            part.persisted(changes, next_offset)

    def drop(self, partition: int) -> None:
        """The partition moved away: close it (its changes were written before)."""
        self._close(partition)

    def take_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        """The changes since the last call, as changelog records ``(partition, key, value)``."""
        changes, self._changes = self._changes, {}
        return [
            (partition, key.encode(), value)
            for partition, keyed in changes.items()
            for key, value in keyed.items()
        ]

    def _close(self, partition: int) -> None:
        for held in (self._parts, self._opening):
            part = held.pop(partition, None)
            if part is not None:
                part.close()
        self._changes.pop(partition, None)

    def _part(self, partition: int) -> _Partition:
        try:
            return self._parts[partition]
        except KeyError:
            raise StoreNotOwned(f"store {self.name} does not hold partition {partition}") from None
