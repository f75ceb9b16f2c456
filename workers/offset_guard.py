"""Keep an agent from going past records that faust dropped when a partition changed hands.

Why: faust 0.15 can lose records at the start of a partition it has just been assigned. After
table recovery it resumes the partition *before* it seeks to the committed offset, so the first
records can be fetched and queued, then cleared from the stream's queue when flow resumes; the
drain loop writes its read offset after that seek, so re-fetched records below it count as
already read and are dropped. The agent then sees C+1 (or C, then C+3) and, once that is acked,
faust's off-by-one gap check (faust-streaming #606) commits past the lost records: records never
processed by anyone. Seen in ``tests/faults/test_settings_rebalance.py``.

What the guard does: it knows, per partition, the offset of the next record to process (Kafka's
committed offset at each new assignment, then the last one handed on + 1). When a record comes
from further on, the guard reads the records in between itself, with a reader of its own, and
hands them on first, as faust events that ack like any other: the agent processes them in
order and faust commits them in order. Offsets with no record (transaction markers, compaction,
retention) are simply absent from that read. A record before the expected offset is a second
copy, or was committed before: it is turned away, so nothing is processed twice. (Seeking
faust's consumer back does not work: the same read-offset race drops the re-read too.)

It never acks anything itself, and never hands on a record while an earlier one is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.types.tuples import ConsumerMessage
from prometheus_client import Counter

from workers.config import Settings
from workers.errors import RetryableError
from workers.kafka import admin_client, new_reader
from workers.retry import RetryPolicy, retry_async

__all__ = [
    "ContinuityGuard",
    "GapNotFilled",
    "KafkaPositions",
    "continuity_guard",
    "guarded_events",
    "release",
]

log = logging.getLogger(__name__)

# For /metrics: records faust dropped that the guard read itself (no labels: one per process).
RECORDS_FILLED = Counter(
    "exopipe_worker_dropped_records_found",
    "Records faust dropped at a handover, read again by the worker itself and processed.",
)
# A group coordinator that is loading or moving answers with a retriable error for a while.
# About a minute in all, then the worker stops (and is restarted) rather than guess.
_ASK_POLICY = RetryPolicy(max_attempts=20, base_delay=0.2, max_delay=5.0)


class GapNotFilled(RuntimeError):
    """The records before a record could not be read in time: stop rather than skip them."""


class Positions(Protocol):
    """What Kafka says about a partition, for this consumer group."""

    async def committed(self, tp: Any) -> int:
        """The group's committed offset, or the log start if the group has committed nothing."""
        ...

    def records(self, tp: Any, start: int, end: int) -> AsyncIterator[Any]:
        """The records with ``start <= offset < end``, in order (holes are simply absent)."""
        ...


@dataclass
class _Partition:
    generation: int | None
    expected: int  # the offset of the next record to hand on


class ContinuityGuard:
    """``async for event in guard.sift(event)``: what to process, in order, for each event.

    ``rebuild(record, like)`` turns a record the guard read itself into an event of the same
    kind as ``like`` (the event that revealed the gap), whose ack counts like a real one.
    """

    def __init__(
        self,
        positions: Positions,
        rebuild: Callable[[Any, Any], Any],
        on_fatal: Callable[[BaseException], Awaitable[Any]] | None = None,
    ) -> None:
        self._positions = positions
        self._rebuild = rebuild
        self._on_fatal = on_fatal
        self._partitions: dict[Any, _Partition] = {}
        self.filled = 0

    async def sift(self, event: Any) -> AsyncIterator[Any]:
        message = event.message
        tp, offset = message.tp, message.offset
        state = self._partitions.get(tp)
        if state is None or state.generation != message.generation_id:
            # A new assignment: faust starts each partition again from the committed offset.
            try:
                committed = await self._positions.committed(tp)
            except Exception as exc:
                await self._fatal(exc)  # not knowing where to start, do not start
                raise
            state = self._partitions[tp] = _Partition(message.generation_id, committed)
        if offset < state.expected:
            release(message)  # read already (a second copy), or committed before
            return
        if offset > state.expected:
            log.warning(
                "%s: record %s came next, but nothing from %s on was handed on: records "
                "faust dropped are read directly",
                tp,
                offset,
                state.expected,
            )
            try:
                async for record in self._positions.records(tp, state.expected, offset):
                    self.filled += 1
                    RECORDS_FILLED.inc()
                    state.expected = record.offset + 1
                    yield self._rebuild(record, event)
            except Exception as exc:
                await self._fatal(exc)  # stop the worker: never skip the records
                raise
        state.expected = offset + 1
        yield event

    async def _fatal(self, exc: BaseException) -> None:
        log.error("continuity guard: %s; stopping the worker", exc)
        if self._on_fatal is not None:
            await self._on_fatal(exc)


async def guarded_events(stream: Any, guard: ContinuityGuard) -> AsyncIterator[Any]:
    """The events of a manually acked faust stream, with the guard's fills, in offset order."""
    async for event in stream.events():
        async for admitted in guard.sift(event):
            yield admitted


def release(message: Any) -> None:
    """Let faust stop tracking a record turned away, without acking (committing) its offset.

    faust waits for every record it handed out to be acked before a rebalance or a shutdown
    completes (``Consumer.wait_empty``), and forgets those marked ``acked``. Marking the copy
    turned away is not ``Consumer.ack``: its offset never enters the commit through it; the
    record itself was processed already, or committed before.
    """
    message.acked = True


class KafkaPositions:
    """:class:`Positions` from Kafka: committed offsets from the admin API, records from a reader.

    Neither client joins the consumer group or commits, so asking never disturbs the group.
    """

    def __init__(
        self,
        admin: AIOKafkaAdminClient,
        reader: AIOKafkaConsumer,
        group_id: str,
        fetch_timeout_s: float = 15.0,
    ) -> None:
        self._admin = admin
        self._reader = reader
        self._group_id = group_id
        self._fetch_timeout_s = fetch_timeout_s
        self._lock = asyncio.Lock()

    async def committed(self, tp: Any) -> int:
        partition = TopicPartition(tp.topic, tp.partition)

        async def ask(attempt: int) -> dict[TopicPartition, Any]:
            try:
                return await self._admin.list_consumer_group_offsets(
                    self._group_id, partitions=[partition]
                )
            except KafkaError as exc:
                if not exc.retriable:  # e.g. the coordinator is still loading or moving
                    raise
                raise RetryableError(f"committed offset of {partition}: {exc!r}") from exc

        offsets = await retry_async(ask, _ASK_POLICY, what=f"committed offset of {partition}")
        committed = offsets.get(partition)
        if committed is not None and committed.offset >= 0:
            return int(committed.offset)
        starts = await self._reader.beginning_offsets([partition])
        return int(starts[partition])

    async def records(self, tp: Any, start: int, end: int) -> AsyncIterator[Any]:
        partition = TopicPartition(tp.topic, tp.partition)
        async with self._lock:
            self._reader.assign([partition])
            try:
                self._reader.seek(partition, start)
                position = start
                deadline = time.monotonic() + self._fetch_timeout_s
                while position < end:
                    if time.monotonic() > deadline:
                        raise GapNotFilled(
                            f"{tp}: records {position} to {end - 1} could not be read in "
                            f"{self._fetch_timeout_s:.0f} s; stopping unacked so that they are "
                            "read again after a restart"
                        )
                    batch = await self._reader.getmany(partition, timeout_ms=250)
                    for record in batch.get(partition, []):
                        if record.offset >= end:
                            return
                        position = record.offset + 1
                        yield record
                    if not batch.get(partition):
                        # Nothing more before ``end``: the rest are holes (markers, compaction).
                        position = max(position, await self._reader.position(partition))
            finally:
                self._reader.unsubscribe()  # stop fetching in the background


def rebuild_event(app: Any, record: Any, like: Any) -> Any:
    """A faust event for a record read directly, acked through faust like the stream's own.

    It is tracked (faust waits for it at a rebalance or a shutdown) and holds one reference,
    which the agent's ack releases: then ``Consumer.ack`` counts its offset for the commit.
    """
    message = ConsumerMessage(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp / 1000.0 if record.timestamp is not None else time.time(),
        record.timestamp_type,
        record.headers,
        record.key,
        record.value,
        record.checksum,
        tp=like.message.tp,
        generation_id=like.message.generation_id,
    )
    message.incref()
    app.consumer.track_message(message)
    message.tracked = True
    return faust.Event(app, record.key, record.value, record.headers, message)


@asynccontextmanager
async def continuity_guard(app: Any, settings: Settings) -> AsyncIterator[ContinuityGuard]:
    """A guard for one agent of ``app`` (a faust app: its id is the consumer group)."""
    reader = new_reader(settings, auto_offset_reset="earliest", client_id=f"{app.conf.id}-guard")
    async with admin_client(settings) as admin:
        await reader.start()
        try:
            positions = KafkaPositions(admin, reader, group_id=app.conf.id)
            yield ContinuityGuard(
                positions,
                lambda record, like: rebuild_event(app, record, like),
                on_fatal=app.crash,
            )
        finally:
            await reader.stop()
