"""The faust agent: stream records in, one WAV and one archived record per stream, safe commits.

One agent instance reads every assigned partition with manual acks. Each record is released
from faust's tracking as soon as it is handled (so a rebalance never waits minutes for open
streams, and nothing holds its payload), and its offset is acknowledged only when the
partition's :class:`~workers.stream_archiver.ledger.OffsetLedger` says so: once every stream
that started before it is archived. Acknowledgements go to faust's consumer in offset order,
as ``ConsumerMessage`` stand-ins (faust needs only topic, partition and offset to count one),
so faust only ever commits a contiguous run from its committed offset.

Archiving runs beside the reading, at most ``concurrency`` streams at once; reading waits while
every slot is busy, which bounds disk and memory when the store is slow. A stream's archived
record is on Kafka (acks=all) before its offsets can be acknowledged. Any unexpected error
stops the worker unacknowledged: the restart reads every open stream again from its start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types.tuples import ConsumerMessage

from topics.events import CloudEvent
from workers.plumbing.offset_guard import ContinuityGuard, FaustAppConsumer, guarded_events, release
from workers.stream_archiver.archive import StreamArchive
from workers.stream_archiver.frames import BadFrame, read_frame
from workers.stream_archiver.metrics import OPEN_STREAMS, STREAMS_ARCHIVED
from workers.stream_archiver.partition import Ending, PartitionStreams
from workers.stream_archiver.spill import SpillDir

__all__ = ["Archivist", "register_stream_agent"]

log = logging.getLogger(__name__)

Publish = Callable[[CloudEvent], Awaitable[Any]]


@dataclass
class Archivist:
    """Every assigned partition's open streams, and the archiving of those that are complete."""

    app: Any
    spill: SpillDir
    archive: StreamArchive
    publish: Publish
    quiet_s: float
    concurrency: int
    partitions: dict[Any, PartitionStreams] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _slots: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        self.consumer = FaustAppConsumer(self.app)

    async def handle(self, event: Any) -> None:
        """One record from faust: take it into its stream, archive what it completes."""
        message = event.message
        tp, offset = message.tp, message.offset
        release(message)
        self.app.sensors.on_message_out(tp, offset, message)
        state = self._partition(tp, message.generation_id)
        if state is None:
            return  # fetched before the last rebalance: the new assignment reads it again
        try:
            frame = read_frame(event.value)
        except BadFrame as exc:
            log.warning("%s: record at offset %s skipped: %s", tp, offset, exc)
            state.skip(offset)
        else:
            for ending in state.take(offset, frame):
                await self._finish(state, ending)
        self._ack(state, state.ledger.ackable())
        self._count_open()

    def _count_open(self) -> None:
        OPEN_STREAMS.set(sum(p.ledger.held for p in self.partitions.values()))

    def _partition(self, tp: Any, generation: int) -> PartitionStreams | None:
        state = self.partitions.get(tp)
        if state is not None and generation < state.generation:
            return None
        if state is None or state.generation != generation:
            # A new assignment: faust reads again from the committed offset, which is at or
            # before the first record of every stream that was open here: rebuild them.
            if state is not None:
                self._drop(state)
            state = self.partitions[tp] = PartitionStreams(tp, generation, self.spill, self.quiet_s)
        return state

    def _drop(self, state: PartitionStreams) -> None:
        dropped = state.drop()
        for assembly in dropped:
            assembly.discard()
        if dropped:
            log.info("%s: %d open streams dropped (the partition moved)", state.tp, len(dropped))

    async def _finish(self, state: PartitionStreams, ending: Ending) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        await self._slots.acquire()
        task = asyncio.create_task(self._archive(state, ending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _archive(self, state: PartitionStreams, ending: Ending) -> None:
        assert self._slots is not None  # noqa: S101 - set by _finish
        try:
            event = await self.archive.archive(ending)
            await self.publish(event)
            STREAMS_ARCHIVED.labels(ending.reason, str(event.data["already_archived"])).inc()
            self._ack(state, state.archived(ending))
            self._count_open()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "archiving stream %s failed unexpectedly; stopping unacked",
                ending.assembly.stream_sid,
            )
            await self.app.crash(exc)
        finally:
            await asyncio.to_thread(ending.assembly.discard)
            self._slots.release()

    def _ack(self, state: PartitionStreams, ready: list[range]) -> None:
        """Acknowledge ``ready`` offsets to faust, if ``state`` is still this partition's."""
        if not ready or self.partitions.get(state.tp) is not state:
            return
        if state.generation != self.consumer.generation():
            return  # a rebalance is under way: the next owner reads from the committed offset
        tp = state.tp
        ack = self.app.consumer.ack
        now = time.time()
        for offsets in ready:
            for offset in offsets:
                ack(
                    ConsumerMessage(
                        tp.topic, tp.partition, offset, now, None, [], None, None, None,
                        tp=tp, generation_id=state.generation,
                    )
                )  # fmt: skip

    async def check_quiet(self, now: float) -> int:
        """Archive as abandoned the streams of partitions read to their end and quiet for long.

        Also forgets partitions no longer assigned. Returns how many streams it ended.
        """
        if not self.consumer.settled():
            return 0
        assigned = self.consumer.assigned()
        ended = 0
        for tp, state in list(self.partitions.items()):
            if tp not in assigned:
                self._drop(state)
                del self.partitions[tp]
                continue
            if state.generation != self.consumer.generation() or not state.quiet_since(now):
                continue
            highwater = (await self.app.consumer.highwaters(tp))[tp]
            if state.next_offset is None or state.next_offset < highwater:
                continue  # records are waiting: they may still close the stream
            for ending in state.abandon_all():
                log.warning(
                    "stream %s: no record for %.0f s and no closed: archiving it as abandoned",
                    ending.assembly.stream_sid, self.quiet_s,
                )  # fmt: skip
                await self._finish(state, ending)
                ended += 1
        return ended

    async def watch_quiet(self) -> None:
        """Run :meth:`check_quiet` every few seconds until cancelled."""
        every = min(5.0, max(0.5, self.quiet_s / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await self.check_quiet(time.monotonic())
            except Exception as exc:  # e.g. Kafka unreachable for the end offsets: later
                log.warning("quiet streams check failed: %r; again soon", exc)

    async def close(self) -> None:
        """Stop archiving (uploads abort), and forget every open stream and spill file."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for state in self.partitions.values():
            self._drop(state)
        self.partitions.clear()
        OPEN_STREAMS.set(0)


@asynccontextmanager
async def running_archivist(**options: Any) -> AsyncIterator[Archivist]:
    """An :class:`Archivist` with its spill directory open and its quiet check running."""
    archivist = Archivist(**options)
    await asyncio.to_thread(archivist.spill.open)
    watcher = asyncio.create_task(archivist.watch_quiet())
    try:
        yield archivist
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await archivist.close()
        await asyncio.to_thread(archivist.spill.close)


def register_stream_agent(
    app: faust.App,
    source: Any,
    *,
    make_guard: Callable[[], AbstractAsyncContextManager[ContinuityGuard]],
    make_archivist: Callable[[], AbstractAsyncContextManager[Archivist]],
) -> Any:
    """Declare the agent (one instance: see the module docstring)."""

    @app.agent(source, concurrency=1, name="archive-streams")
    async def archive_streams(stream: faust.Stream) -> None:
        manual = stream.noack()
        async with make_guard() as guard, make_archivist() as archivist:
            try:
                async for event in guarded_events(manual, guard):
                    await archivist.handle(event)
            except Exception as exc:
                # Never let faust restart the agent alone: the new one would read on from
                # here, past the first records of the streams this one had open.
                log.exception("the stream archiver's agent failed; stopping unacked")
                await app.crash(exc)
                raise

    return archive_streams
