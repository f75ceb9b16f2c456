"""Acknowledge events of a partition strictly in offset order, whatever order they finish in.

Several recordings are archived at once, so they finish out of order. faust commits the highest
run of consecutive acked offsets, but its gap check is off by one (faust-streaming #606: with the
committed offset C still in flight and C+1 acked, it commits C+2) and it does no check at all
before its first commit of a partition. Holding every ack until all earlier offsets of the same
partition are done means faust only ever sees a contiguous run starting at its committed offset,
so the committed offset can never pass an event that is still in flight.

This module must never ack an event before it has finished, nor skip one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol

__all__ = ["OrderedAcks"]


class _Message(Protocol):
    tp: Hashable
    offset: int


class _Event(Protocol):
    message: Any


class OrderedAcks:
    """Track events as they start; :meth:`done` acks the finished prefix of each partition."""

    def __init__(self, ack: Callable[[Any], Awaitable[Any]]) -> None:
        self._ack = ack
        # partition -> [offset, event, finished] in the order the events were received
        self._pending: dict[Hashable, deque[list[Any]]] = {}

    def start(self, event: _Event) -> None:
        message: _Message = event.message
        self._pending.setdefault(message.tp, deque()).append([message.offset, event, False])

    async def done(self, event: _Event) -> int:
        """Mark ``event`` finished; ack it and any finished successors it was holding back."""
        queue = self._pending[event.message.tp]
        for entry in queue:
            if entry[1] is event:
                entry[2] = True
                break
        else:
            raise KeyError(f"event at offset {event.message.offset} was never started")
        acked = 0
        while queue and queue[0][2]:
            _, head, _ = queue.popleft()
            await self._ack(head)
            acked += 1
        return acked

    def in_flight(self) -> int:
        return sum(len(queue) for queue in self._pending.values())
