"""Acknowledge the records of a partition strictly in offset order, whatever order they finish in.

Workers that handle several records at once (the archiver's downloads, the settings applier's
commands across apps) finish them out of order. faust commits the highest run of consecutive
acked offsets, but its gap check is off by one (faust-streaming #606: with the committed offset C
still in flight and C+1 acked, it commits C+2) and it does no check at all before its first
commit of a partition. Holding every ack until all earlier records of the same partition are
done means faust only ever sees a contiguous run starting at its committed offset, so the
committed offset can never pass a record that is still in flight.

Records must be started in the order they were received (offset order within a partition).
This module knows nothing of faust: it takes the ack callable. It must never ack a record before
it has finished, nor skip one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["OrderedAcks"]

T = TypeVar("T")


class OrderedAcks(Generic[T]):
    """Track items as they start; :meth:`done` acks the finished prefix of each partition."""

    def __init__(self, ack: Callable[[T], Awaitable[Any]]) -> None:
        self._ack = ack
        # partition -> [item, finished] in the order the items were started
        self._pending: dict[Hashable, deque[list[Any]]] = {}

    def start(self, tp: Hashable, item: T) -> None:
        """Register ``item``, the next record received from partition ``tp``."""
        self._pending.setdefault(tp, deque()).append([item, False])

    async def done(self, tp: Hashable, item: T) -> int:
        """Mark ``item`` finished; ack it and any finished successors it was holding back."""
        queue = self._pending[tp]
        for entry in queue:
            if entry[0] is item:
                entry[1] = True
                break
        else:
            raise KeyError(f"{item!r} was never started on {tp!r}")
        acked = 0
        while queue and queue[0][1]:
            head, _ = queue.popleft()
            await self._ack(head)
            acked += 1
        return acked

    def in_flight(self) -> int:
        """Items started and not yet acked (running, or finished behind an earlier one)."""
        return sum(len(queue) for queue in self._pending.values())
