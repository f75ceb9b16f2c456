"""Outputs on their way to Kafka, and inputs acked in order once their outputs are there.

Awaiting each send's delivery before reading the next record costs a broker round trip per
record: one enricher process did 428 missed calls/s that way. Here a handler's sends are
queued and their deliveries gathered for the record being handled (:func:`collecting`);
:class:`InOrderAcks` acks each record only once its own deliveries, and those of every record
read before it on the same stream, are acknowledged by Kafka (acks=all). Many records share
one produce request, and the guarantee stays: no input is acked before its outputs are on
Kafka. A delivery that fails stops the worker (``on_failure``) and nothing from that record on
is acked: those records are read again after the restart.

Never ack out of order here: faust commits a partition up to its acked offsets, and its gap
check has been seen to commit past a record still in flight (faust-streaming #606).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["InOrderAcks", "collecting", "delivered_here", "publish"]

log = logging.getLogger(__name__)

# The deliveries of the record being handled, in the task (agent) handling it; None: await
# each send where it is made.
_DELIVERIES: ContextVar[list[Awaitable[Any]] | None] = ContextVar("deliveries", default=None)


async def publish(topic: Any, key: Any, value: bytes) -> Awaitable[Any]:
    """Send, and make sure the input is acked only after Kafka has the record (acks=all).

    faust's ``send`` returns once the record is queued. A record its producer then gave up on
    would only be logged, and the input's offset committed past it anyway. Inside
    :func:`collecting` the delivery joins the record's own; elsewhere it is awaited here.
    Returns the delivery (an awaitable of the record's metadata).
    """
    delivery = await topic.send(key=key, value=value)
    pending = _DELIVERIES.get()
    if pending is None:
        await delivery
    else:
        pending.append(delivery)
    return delivery


@contextlib.contextmanager
def collecting() -> Iterator[list[Awaitable[Any]]]:
    """Gather the deliveries of the sends made inside, for the record being handled."""
    pending: list[Awaitable[Any]] = []
    token = _DELIVERIES.set(pending)
    try:
        yield pending
    finally:
        _DELIVERIES.reset(token)


@contextlib.asynccontextmanager
async def delivered_here() -> AsyncIterator[None]:
    """The sends made inside are awaited on the way out (together), not with the record's."""
    pending: list[Awaitable[Any]] = []
    token = _DELIVERIES.set(pending)
    try:
        yield
    finally:
        _DELIVERIES.reset(token)
    for delivery in pending:
        await delivery


class InOrderAcks:
    """Ack records in the order they were read, each once its deliveries are acknowledged.

    ``add`` waits while ``limit`` records are unacked (backpressure). After a failed delivery
    nothing more is acked, ``on_failure`` is called once, and ``add`` raises that error.
    """

    def __init__(
        self,
        ack: Callable[[Any], Awaitable[Any]],
        on_failure: Callable[[BaseException], Awaitable[Any]],
        limit: int = 1000,
    ) -> None:
        self._ack = ack
        self._on_failure = on_failure
        self._queue: asyncio.Queue[tuple[Any, list[Awaitable[Any]]] | None] = asyncio.Queue(limit)
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self.acked = 0
        self._in_flight = 0  # records added and not yet acked

    async def __aenter__(self) -> InOrderAcks:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def add(self, record: Any, deliveries: list[Awaitable[Any]]) -> None:
        if self.failure is not None:
            raise self.failure
        if not deliveries and not self._in_flight:
            await self._ack_one(record)  # nothing before it is waiting: ack now
            return
        self._in_flight += 1
        await self._queue.put((record, deliveries))
        if self.failure is not None:
            raise self.failure

    async def close(self, drain_s: float = 10.0) -> None:
        """Ack what is delivered within ``drain_s`` (fewer copies after a stop), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        if task.done():
            return
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            task.cancel()
        try:
            await asyncio.wait_for(task, drain_s)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _ack_one(self, record: Any) -> None:
        await self._ack(record)
        self.acked += 1

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            record, deliveries = item
            try:
                for delivery in deliveries:
                    await delivery
            except Exception as exc:
                self.failure = exc
                log.error("an output of a record was not delivered: %r; stopping unacked", exc)
                self._drop_waiting()
                await self._on_failure(exc)
                return
            await self._ack_one(record)
            self._in_flight -= 1

    def _drop_waiting(self) -> None:
        # Unblock a waiting ``add`` so that it sees the failure; none of these is acked.
        while not self._queue.empty():
            self._queue.get_nowait()
