"""Keep an agent from going past a record that faust dropped when a partition changed hands.

Why: faust 0.15 can lose records at the start of a partition it has just been assigned. After
table recovery it resumes the partition *before* it seeks to the committed offset, so the first
records can be fetched and queued, then cleared from the stream's queue when flow resumes; the
drain loop writes its read offset after that seek, so re-fetched records below it count as
already read and are dropped. The agent then sees C+1 (or C, then C+3) and, once that is acked,
faust's off-by-one gap check (faust-streaming #606) commits past the lost records: records never
processed by anyone. Seen in ``tests/faults/test_settings_rebalance.py`` (1 run in 18).

What the guard does: it knows, per partition, the offset of the next record to admit (from
Kafka's committed offset at each new assignment, then the last admitted record + 1). A record
past that offset is checked against the first record that really exists from there on
(transaction markers, compaction and retention leave legitimate holes); if one exists, records
were dropped: the guard seeks faust's consumer back and turns records away, unacked, until the
missing one arrives. A record before that offset is a second copy (faust re-fetches after a
seek) or was committed before: it is turned away too, so it is not processed twice.

It never acks anything and never lets a record through ahead of a missing one it has found.
Records turned away are read again after the seek; an agent must simply skip them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalStateError, KafkaError
from prometheus_client import Counter

from workers.config import Settings
from workers.errors import RetryableError
from workers.kafka import admin_client, new_reader
from workers.retry import RetryPolicy, retry_async

__all__ = [
    "ContinuityGuard",
    "GapNotRecovered",
    "KafkaPositions",
    "admitted_events",
    "continuity_guard",
    "release",
]

log = logging.getLogger(__name__)

# A seek back that is undone again (faust's read-offset race can strike the re-read too) is
# retried; after this many the worker stops rather than skip a record.
MAX_SEEKS_PER_GAP = 5
# For /metrics: how often a worker found records faust had dropped (no labels: one per process).
GAPS_FOUND = Counter(
    "exopipe_worker_dropped_records_found",
    "Times records dropped by faust at a handover were found and read again.",
)
# A group coordinator that is loading or moving answers with a retriable error for a while.
_ASK_POLICY = RetryPolicy(max_attempts=10, base_delay=0.2, max_delay=3.0)


class GapNotRecovered(RuntimeError):
    """A dropped record did not come back after repeated seeks: stop, do not skip it."""


class Positions(Protocol):
    """Where a partition's next record for this consumer group really is, according to Kafka."""

    async def committed(self, tp: Any) -> int:
        """The group's committed offset, or the log start if the group has committed nothing."""
        ...

    async def first_from(self, tp: Any, offset: int) -> int | None:
        """The offset of the first record at or after ``offset``; None if none came in time."""
        ...


@dataclass
class _Partition:
    generation: int | None
    expected: int  # the offset of the next record to admit
    missing: int | None = None  # an offset sought back to, which must be the next admitted
    highest_turned_away: int = -1
    seeks: int = 0


class ContinuityGuard:
    """``await guard.admit(message)``: True to process the record, False to skip it unacked."""

    def __init__(self, positions: Positions, seek: Callable[[Any, int], Awaitable[None]]) -> None:
        self._positions = positions
        self._seek = seek
        self._partitions: dict[Any, _Partition] = {}
        self.gaps_found = 0

    async def admit(self, message: Any) -> bool:
        tp, offset = message.tp, message.offset
        state = self._partitions.get(tp)
        if state is None or state.generation != message.generation_id:
            # A new assignment: faust starts each partition again from the committed offset.
            committed = await self._positions.committed(tp)
            state = self._partitions[tp] = _Partition(message.generation_id, committed)
        if state.missing is not None:
            return await self._while_seeking(tp, offset, state, state.missing)
        if offset < state.expected:
            return False  # read already (a second copy after a re-fetch), or committed before
        if offset > state.expected and await self._dropped_before(tp, offset, state):
            return False
        state.expected = offset + 1
        return True

    async def _dropped_before(self, tp: Any, offset: int, state: _Partition) -> bool:
        """Whether records exist between the expected offset and ``offset``; if so, seek back."""
        first = await self._positions.first_from(tp, state.expected)
        if first is None or offset <= first:
            return False  # a hole in the log (markers, compaction, retention): nothing to read
        self.gaps_found += 1
        GAPS_FOUND.inc()
        log.warning(
            "%s: record %s came next, but record %s exists and was never admitted: records "
            "were dropped on the way in; reading them again",
            tp,
            offset,
            first,
        )
        await self._seek_back(tp, state, first, offset)
        return True

    async def _while_seeking(self, tp: Any, offset: int, state: _Partition, missing: int) -> bool:
        if offset == missing:
            log.info("%s: record %s is back after the seek; going on", tp, offset)
            state.missing, state.seeks, state.expected = None, 0, offset + 1
            return True
        if missing < offset <= state.highest_turned_away:
            # The re-read has begun and passed the missing record again: seek once more.
            await self._seek_back(tp, state, missing, offset)
        else:
            state.highest_turned_away = max(state.highest_turned_away, offset)
        return False

    async def _seek_back(self, tp: Any, state: _Partition, missing: int, turned_away: int) -> None:
        if state.seeks >= MAX_SEEKS_PER_GAP:
            raise GapNotRecovered(
                f"{tp}: record {missing} did not come back after {state.seeks} seeks; stopping "
                "unacked so that it is read again after a restart"
            )
        state.seeks += 1
        state.missing = missing
        state.highest_turned_away = turned_away
        try:
            await self._seek(tp, missing)
        except IllegalStateError:
            # The partition was taken away meanwhile; its next owner starts from the commit.
            log.info("%s is no longer assigned; not seeking", tp)


async def admitted_events(stream: Any, guard: ContinuityGuard) -> AsyncIterator[Any]:
    """The events of a manually acked faust stream that ``guard`` admits, in order."""
    async for event in stream.events():
        if await guard.admit(event.message):
            yield event
        else:
            release(event.message)


def release(message: Any) -> None:
    """Let faust stop tracking a record turned away, without acking (committing) its offset.

    faust waits for every record it handed out to be acked before a rebalance or a shutdown
    completes (``Consumer.wait_empty``), and forgets those marked ``acked``. Marking the copy
    turned away is not ``Consumer.ack``: its offset never enters the commit; the record itself
    comes again (after the seek) as a new message, or was processed already.
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
        fetch_timeout_s: float = 5.0,
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

    async def first_from(self, tp: Any, offset: int) -> int | None:
        partition = TopicPartition(tp.topic, tp.partition)
        async with self._lock:
            self._reader.assign([partition])
            try:
                self._reader.seek(partition, offset)
                deadline = time.monotonic() + self._fetch_timeout_s
                while time.monotonic() < deadline:
                    batch = await self._reader.getmany(partition, timeout_ms=250, max_records=1)
                    if batch.get(partition):
                        return int(batch[partition][0].offset)
                return None
            finally:
                self._reader.unsubscribe()  # stop fetching in the background


@asynccontextmanager
async def continuity_guard(app: Any, settings: Settings) -> AsyncIterator[ContinuityGuard]:
    """A guard for one agent of ``app`` (a faust app: its id is the consumer group)."""
    reader = new_reader(settings, auto_offset_reset="earliest", client_id=f"{app.conf.id}-guard")
    async with admin_client(settings) as admin:
        await reader.start()
        try:
            positions = KafkaPositions(admin, reader, group_id=app.conf.id)
            yield ContinuityGuard(positions, app.consumer.seek)
        finally:
            await reader.stop()
