"""Per-partition due-time queues: what to release or delete, and when, in each store.

The batch core calls the enricher's ``tick`` between batches; the tick pops what is due here and
checks it against the store (a popped item whose stored value changed since is skipped by the
caller). Queues are memory only: after a start or a rebalance they are rebuilt from the stores,
whose values carry their own due time.

Heap entries are plain tuples of ints and strings, never a tuple subclass: the garbage collector
stops tracking such a tuple once it has survived a collection, so a queue of every stored key
(hundreds of thousands after minutes at 500 calls/s) is not walked by each full collection.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Due", "ExpiryQueues"]


class Due(NamedTuple):
    """One popped entry. The heap compares plain tuples of the same fields, in C."""

    due_ms: int
    # Ties (holds due in the same millisecond) go in the order they were queued, which is the
    # order their calls were read: never by key, which put a caller's later call first.
    seq: int
    table: str
    key: str


_Entry = tuple[int, int, str, str]  # Due's fields, as a plain tuple (see the module docstring)


@dataclass
class ExpiryQueues:
    heaps: dict[int, list[_Entry]] = field(default_factory=dict)
    queued: int = 0

    def push(self, partition: int, due_ms: int, table: str, key: str) -> None:
        self.queued += 1
        heapq.heappush(self.heaps.setdefault(partition, []), (due_ms, self.queued, table, key))

    def pop_due(self, partition: int, now_ms: int) -> list[Due]:
        heap = self.heaps.get(partition, [])
        due = []
        while heap and heap[0][0] <= now_ms:
            due.append(Due._make(heapq.heappop(heap)))
        return due

    def forget(self) -> None:
        """After a rebalance: partitions may have moved, rebuild from the stores."""
        self.heaps.clear()
