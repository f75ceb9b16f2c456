"""Keep an agent from going past a record that faust dropped when a partition changed hands.

Why: faust 0.15 can lose the record at a partition's committed offset at a rebalance. After
table recovery it resumes the partition *before* it seeks to the committed offset, so the first
records can be fetched and queued, then cleared from the stream's queue when flow resumes; the
drain loop writes its read offset after that seek, so the re-fetched record at the committed
offset counts as already read and is dropped. The agent's first record is then C+1, and once it
is acked faust's off-by-one gap check (faust-streaming #606) commits past C: a record never
processed by anyone. Seen in ``tests/faults/test_settings_rebalance.py`` (1 run in 18).

What the guard does: at the first record of each partition in each consumer generation, it asks
Kafka for the group's committed offset and, if the record is later than that, for the first
record that really exists from there on (transaction markers, compaction and retention leave
legitimate holes). A record later than that one means records were dropped: the guard seeks
faust's consumer back and turns records away, unacked, until the missing one arrives.

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
]

log = logging.getLogger(__name__)

# A seek back that is undone again (faust's read-offset race can strike the re-read too) is
# retried; after this many the worker stops rather than skip a record.
MAX_SEEKS_PER_GAP = 5
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
            state = self._partitions[tp] = _Partition(message.generation_id)
            return await self._check_first(tp, offset, state)
        if state.missing is None:
            return True
        if offset == state.missing:
            log.info("record %s of %s is back after the seek; going on", offset, tp)
            state.missing = None
            return True
        if offset <= state.highest_turned_away:
            # The re-read has begun and passed the missing record again: seek once more.
            await self._seek_back(tp, state, state.missing, offset)
        else:
            state.highest_turned_away = offset
        return False

    async def _check_first(self, tp: Any, offset: int, state: _Partition) -> bool:
        committed = await self._positions.committed(tp)
        if offset <= committed:
            return True
        first = await self._positions.first_from(tp, committed)
        if first is None or offset <= first:
            return True
        self.gaps_found += 1
        log.warning(
            "%s: the first record after the handover is %s, but the committed offset is %s and "
            "the record at %s exists: records were dropped on the way in; reading them again",
            tp,
            offset,
            committed,
            first,
        )
        await self._seek_back(tp, state, first, offset)
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
