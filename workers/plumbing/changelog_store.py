"""State for the batch core: key -> bytes per partition, in memory, each change on a changelog.

A store partition belongs to the worker that owns the same partition of the store's source
topics (co-partitioned: the same partition count, assigned together). It is restored from the
same partition of its compacted changelog topic, start to end, before any record of that
partition is handled, and dropped when the partition is revoked. Changes made while a batch is
handled are collected, the last value per key winning, and the core writes them to the
changelog only once the batch's outputs are on Kafka (``batch_worker``).

Keys are ``str`` (UTF-8 on Kafka), values raw bytes (``None`` on Kafka deletes): the records
faust's tables wrote to the same changelog topics, so a store reads what a faust table left.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["ChangelogStore", "StoreNotOwned"]


class StoreNotOwned(KeyError):
    """A partition of a store this worker does not hold (a bug: records are filtered first)."""


class ChangelogStore:
    """One named store: its changelog topic, the topics whose partitions it follows, its data."""

    def __init__(self, name: str, changelog: str, sources: Iterable[str]) -> None:
        self.name = name
        self.changelog = changelog
        self.sources = frozenset(sources)
        self._data: dict[int, dict[str, bytes]] = {}
        self._changes: dict[int, dict[str, bytes | None]] = {}

    # ---- what a job uses while handling a batch -------------------------------------------

    def get(self, partition: int, key: str) -> bytes | None:
        return self._part(partition).get(key)

    def set(self, partition: int, key: str, value: bytes) -> None:
        self._part(partition)[key] = value
        self._changes.setdefault(partition, {})[key] = value

    def delete(self, partition: int, key: str) -> None:
        part = self._part(partition)
        if key in part:
            del part[key]
            self._changes.setdefault(partition, {})[key] = None

    def items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        yield from list(self._part(partition).items())

    def __len__(self) -> int:
        return sum(len(part) for part in self._data.values())

    # ---- what the core uses ----------------------------------------------------------------

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._data)

    def adopt(self, partition: int, data: dict[str, bytes]) -> None:
        """Take a partition over with what its changelog holds (restored by the core)."""
        self._data[partition] = data
        self._changes.pop(partition, None)

    def drop(self, partition: int) -> None:
        """The partition moved away: forget it (its changes were written before)."""
        self._data.pop(partition, None)
        self._changes.pop(partition, None)

    def take_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        """The changes since the last call, as changelog records ``(partition, key, value)``."""
        changes, self._changes = self._changes, {}
        return [
            (partition, key.encode(), value)
            for partition, keyed in changes.items()
            for key, value in keyed.items()
        ]

    def _part(self, partition: int) -> dict[str, bytes]:
        try:
            return self._data[partition]
        except KeyError:
            raise StoreNotOwned(f"store {self.name} does not hold partition {partition}") from None
