"""Keep an agent from going past records that faust dropped when a partition changed hands.

Why: faust 0.15 can lose records at the start of a partition it has just been assigned. After
table recovery it resumes the partition *before* it seeks to the committed offset, so the first
records can be fetched and queued, then cleared from the stream's queue when flow resumes; the
drain loop writes its read offset after that seek, so re-fetched records below it count as
already read and are dropped (the pattern of faust-streaming #216, fixed upstream only for apps
without tables, and of #221). The agent then sees C+1 (or C, then C+3) and, once that is acked,
faust's off-by-one gap check (faust-streaming #606) commits past the lost records: records never
processed by anyone. Seen in ``tests/faults/test_settings_rebalance.py``.

What the guard does: it knows, per partition, the offset of the next record to process (Kafka's
committed offset at each new assignment, then the last one handed on + 1). When a record comes
from further on, the guard reads the records in between itself, with a reader of its own, and
hands them on first, as faust events that ack like any other: the agent processes them in
order and faust commits them in order. Offsets with no record (transaction markers, compaction,
retention) are simply absent from that read. A record before the expected offset is a second
copy, or was committed before: it is turned away, so nothing is processed twice. (Seeking
faust's consumer back as records flow does not work: the same read-offset race drops the
re-read too.)

A drop is only seen when a later record of the same partition arrives. When the dropped
records are a partition's last ones, none does: the agent waits while its records sit on Kafka.
(For a partition with no committed offset faust does not even seek: aiokafka's
``seek_to_committed`` skips it, so whatever was cleared at the handover is never fetched again.
That fits a demo run that lost one of its two missed calls, logging nothing.) So the guard also
watches for that stall: when the agent has waited ``STALL_AFTER_S`` for its next record, faust
is neither rebalancing nor recovering, and an assigned partition has had a record past the
expected offset for as long, the partition is sought back to that offset through faust's
consumer (which resets faust's read offset too). The agent is idle, so faust's drain loop has
nothing in hand to race the seek with.

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
    "FaustConsumerView",
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
RECORDS_STALLED = Counter(
    "exopipe_worker_stalled_partitions_sought",
    "Partitions whose records faust dropped with none after them, sought back by the worker.",
)
# How long the agent waits for a record, with records on Kafka, before that is called a stall;
# how often it is looked at; how many seeks in a row may bring nothing before the worker stops.
STALL_AFTER_S = 10.0
STALL_CHECK_EVERY_S = 2.0
STALL_SEEKS_BEFORE_STOP = 5
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

    async def ends(self, tps: list[Any]) -> dict[Any, int]:
        """Each partition's end offset (the offset the next record written will get)."""
        ...


class FaustConsumerView(Protocol):
    """What the stall check needs from the faust app whose agent the guard serves."""

    def assigned(self) -> set[Any]:
        """The partitions assigned to this worker, of every topic it reads."""
        ...

    def generation(self) -> int:
        """The consumer group generation of the current assignment."""
        ...

    def settled(self) -> bool:
        """Not rebalancing, not recovering tables, flow running: records should be coming."""
        ...

    async def seek(self, tp: Any, offset: int) -> None:
        """Fetch ``tp`` again from ``offset`` (faust's read offset moves back with it)."""
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
        consumer: FaustConsumerView | None = None,
    ) -> None:
        self._positions = positions
        self._rebuild = rebuild
        self._on_fatal = on_fatal
        self.consumer = consumer  # None: no stall check (nothing to seek with)
        self._partitions: dict[Any, _Partition] = {}
        self.filled = 0
        self.sought = 0
        # Since when the agent has been waiting for its next record (None: it is busy).
        self.idle_since: float | None = time.monotonic()
        self._fruitless_seeks: dict[Any, int] = {}
        # Per partition: the expected offset when records past it were first seen, and when.
        self._behind_since: dict[Any, tuple[int, float]] = {}

    def in_order(self, event: Any) -> bool:
        """Whether ``event`` is the record expected next (then it is handed on as is).

        The common case, decided without :meth:`sift`'s generator: a known partition in the
        same generation, at the expected offset. Anything else goes through :meth:`sift`.
        """
        message = event.message
        state = self._partitions.get(message.tp)
        if (
            state is None
            or state.generation != message.generation_id
            or message.offset != state.expected
        ):
            return False
        state.expected = message.offset + 1
        if self._fruitless_seeks:
            self._fruitless_seeks.pop(message.tp, None)
        return True

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
        self._fruitless_seeks.pop(tp, None)
        yield event

    async def check_stalled(
        self,
        consumer: FaustConsumerView,
        topics: frozenset[str],
        now: float,
        stall_after_s: float = STALL_AFTER_S,
    ) -> list[Any]:
        """Seek back the partitions whose records faust dropped with nothing after them.

        A partition is sought back when the agent has waited ``stall_after_s`` for a record,
        faust is settled, and the partition has had a record past the expected offset for
        ``stall_after_s`` too (a record that has just arrived is not a stall). Returns the
        partitions sought. One sought back ``STALL_SEEKS_BEFORE_STOP`` times in a row with no
        record coming stops the worker.
        """
        if self.idle_since is None or now - self.idle_since < stall_after_s:
            return []
        if not consumer.settled():
            return []
        generation = consumer.generation()
        owned = sorted((tp for tp in consumer.assigned() if tp.topic in topics), key=str)
        if not owned:
            return []
        ends = await self._positions.ends(owned)
        sought = []
        for tp in owned:
            state = self._partitions.get(tp)
            if state is None or state.generation != generation:
                # Nothing handed on in this generation yet: faust starts at the committed offset.
                committed = await self._positions.committed(tp)
                state = self._partitions[tp] = _Partition(generation, committed)
            behind = self._behind_since.get(tp)
            if ends[tp] <= state.expected:
                self._behind_since.pop(tp, None)
                continue
            if behind is None or behind[0] != state.expected:
                self._behind_since[tp] = (state.expected, now)  # look again later
                continue
            if now - behind[1] < stall_after_s:
                continue
            first = await self._first_record(tp, state.expected, ends[tp])
            if first is None:  # only holes up to the end (markers, compaction): nothing to wait for
                state.expected = ends[tp]
                self._behind_since.pop(tp, None)
                continue
            seeks = self._fruitless_seeks[tp] = self._fruitless_seeks.get(tp, 0) + 1
            if seeks > STALL_SEEKS_BEFORE_STOP:
                exc = GapNotFilled(
                    f"{tp}: record {first} is on Kafka but faust has not handed it on after "
                    f"{seeks - 1} seeks; stopping unacked so that it is read again after a restart"
                )
                await self._fatal(exc)
                raise exc
            log.warning(
                "%s: records %s to %s have been on Kafka for %.0f s, and the agent waits for "
                "records: faust dropped them with nothing after them; seeking back to %s",
                tp,
                state.expected,
                ends[tp] - 1,
                now - behind[1],
                state.expected,
            )
            await consumer.seek(tp, state.expected)
            self._behind_since[tp] = (state.expected, now)  # give faust time to deliver
            self.sought += 1
            RECORDS_STALLED.inc()
            sought.append(tp)
        return sought

    async def watch(
        self,
        topics: frozenset[str],
        every_s: float = STALL_CHECK_EVERY_S,
        stall_after_s: float = STALL_AFTER_S,
    ) -> None:
        """Run :meth:`check_stalled` every ``every_s`` until cancelled (or the worker stops)."""
        if self.consumer is None or not topics:
            return
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.check_stalled(self.consumer, topics, time.monotonic(), stall_after_s)
            except GapNotFilled:
                return  # the worker is stopping (``on_fatal`` was called)
            except Exception as exc:  # e.g. Kafka unreachable for the check: look again later
                log.warning("continuity guard: stall check failed: %r; again soon", exc)

    async def _first_record(self, tp: Any, start: int, end: int) -> int | None:
        async for record in self._positions.records(tp, start, end):
            return int(record.offset)
        return None

    async def _fatal(self, exc: BaseException) -> None:
        log.error("continuity guard: %s; stopping the worker", exc)
        if self._on_fatal is not None:
            await self._on_fatal(exc)


async def guarded_events(stream: Any, guard: ContinuityGuard) -> AsyncIterator[Any]:
    """The events of a manually acked faust stream, with the guard's fills, in offset order.

    Marks the time the agent starts waiting for its next record, and runs the stall check on
    the stream's topics meanwhile.
    """
    topics = frozenset(getattr(getattr(stream, "channel", None), "topics", None) or ())
    watcher = asyncio.create_task(guard.watch(topics))
    try:
        guard.idle_since = time.monotonic()
        async for event in stream.events():
            guard.idle_since = None
            if guard.in_order(event):
                yield event
            else:
                async for admitted in guard.sift(event):
                    yield admitted
            guard.idle_since = time.monotonic()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


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

    async def ends(self, tps: list[Any]) -> dict[Any, int]:
        partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
        async with self._lock:
            found = await self._reader.end_offsets(list(partitions))
        return {tp: int(found[partition]) for partition, tp in partitions.items()}

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


class FaustAppConsumer:
    """:class:`FaustConsumerView` of a running faust app."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def assigned(self) -> set[Any]:
        # The consumer's assignment: the assignor knows actives only when the app has tables.
        return set(self._app.consumer.assignment())

    def generation(self) -> int:
        return int(self._app.consumer_generation_id)

    def settled(self) -> bool:
        app = self._app
        return not (app.rebalancing or app.in_recovery) and bool(app.consumer.flow_active)

    async def seek(self, tp: Any, offset: int) -> None:
        await self._app.consumer.seek(tp, offset)


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
                consumer=FaustAppConsumer(app),
            )
        finally:
            await reader.stop()
