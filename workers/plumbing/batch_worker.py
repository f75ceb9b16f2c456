"""The batch core: a Kafka stream job on aiokafka, a batch at a time instead of a record at a time.

faust hands every record to an agent through its own stream machinery (a few tasks, futures and
acks per record): one process stopped near 2,100 missed calls/s with handlers that did nothing
(``bench/enricher/ceiling.py``). Here one loop per process does, for each batch:

1. ``getmany`` up to ``max_records`` records of the assigned partitions;
2. the job handles all of them synchronously, in memory: it reads and writes its stores and
   emits output records into an :class:`Outbox` (no await, no task per record);
3. the outputs go to the producer as one ``BatchBuilder`` per topic partition.

A committer task then takes the batches in the order they were read: once a batch's outputs are
acknowledged (idempotent producer, ``acks=all``) its store changes go to their changelogs, and
once those are acknowledged its offsets are committed (several ready batches share one write
and one commit). Step 3 of one batch overlaps the handling of the next, up to ``max_in_flight``
batches. So a committed offset always has its outputs and state on Kafka (a restart reads again
every input whose effects may be missing), and state never gets ahead of the outputs it stands
for (a held call is forgotten only once its forward is on Kafka). At least once: after a crash
outputs can be repeated, and jobs make them identical (deterministic ids, stored results).

Rebalances (aiokafka's listener; the range assignor keeps the source topics co-partitioned):
before partitions are revoked every batch in flight is committed and their store partitions are
dropped; a newly assigned partition's stores are restored from their changelogs, start to end,
before any of its records is handed to the job. A batch read before a rebalance is not handled:
its partitions are read again from the committed offsets.

A send or commit that fails for good starts the core again in the same process after a pause:
new clients, stores restored from their changelogs, reading from the committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from workers.config import Settings
from workers.kafka import new_producer, new_reader
from workers.plumbing.changelog_store import ChangelogStore
from workers.plumbing.state_slot import StateSlot

__all__ = ["BatchConfig", "BatchWorker", "Job", "Outbox", "Records", "partition_for"]

log = logging.getLogger(__name__)

Records = Mapping[TopicPartition, list[ConsumerRecord]]
Keyed = dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]]


@lru_cache(maxsize=65536)  # keys repeat (a caller's calls); murmur2 is pure Python, ~4 us a key
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as ``producer.send`` and the Java client pick."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Outbox:
    """The records a job writes while handling one batch, grouped by topic partition."""

    def __init__(self, widths: Mapping[str, int]) -> None:
        self._widths = widths
        self.records: Keyed = {}
        self.count = 0

    def emit(
        self, topic: str, key: bytes, value: bytes | None, partition: int | None = None
    ) -> None:
        if partition is None:
            partition = partition_for(key, self._widths[topic])
        self.records.setdefault((topic, partition), []).append((key, value))
        self.count += 1


class Job(Protocol):
    """What runs on the core: the logic, with no Kafka client in it."""

    topics: Sequence[str]  # read
    outputs: Sequence[str]  # written through Outbox.emit without a partition
    changelog_stores: Sequence[ChangelogStore]

    def handle(self, records: Records, out: Outbox) -> None: ...

    def tick(self, now_ms: int, out: Outbox) -> None: ...

    def assigned(self, partitions: frozenset[TopicPartition]) -> None: ...

    def revoked(self, partitions: frozenset[TopicPartition]) -> None: ...


@dataclass(frozen=True)
class BatchConfig:
    """How one job runs: its group, batch sizes and timing. Defaults suit the enricher."""

    group_id: str
    client_id: str
    # Records handed to the job at most per batch.
    max_records: int = 2000
    # Batches handled and not yet committed (their outputs in flight) before reading waits.
    max_in_flight: int = 64
    # Batches ready within this long share one changelog write and one offset commit: fewer
    # requests for the broker and the worker at a few records per batch (a commit each was
    # one OffsetCommit round trip per 2 ms at 500 calls/s). Outputs never wait for it.
    commit_interval_s: float = 0.05
    # How often ``Job.tick`` runs (between batches); also the longest wait for records.
    tick_seconds: float = 0.25
    session_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    # A batch's outputs reach the producer as whole batches already: they need not wait there
    # for others (aiokafka lingers a submitted batch like one it builds itself).
    linger_ms: int = 0
    max_batch_size: int = 512 * 1024
    # After a failure, the pause before the core starts again (doubles up to 30 s).
    restart_backoff_s: float = 1.0
    # Where the job's stores keep their partitions on disk (a slot of it per process, see
    # ``state_slot``); None keeps them in memory, restored in full at every assignment.
    state_dir: Path | None = None


class _Metrics:
    """Counters of the core, named like the faust workers' so one dashboard shows both."""

    def __init__(self, worker: str, registry: CollectorRegistry = REGISTRY) -> None:
        labels = ["worker", "topic"]
        self.worker = worker
        self.consumed = Counter(
            "exopipe_worker_consumed", "Records consumed.", labels, registry=registry
        )
        self.produced = Counter(
            "exopipe_worker_produced", "Records produced (acknowledged).", labels, registry=registry
        )
        self.send_failed = Counter(
            "exopipe_worker_send_failed", "Sends that failed.", labels, registry=registry
        )
        self.in_flight = Gauge(
            "exopipe_worker_in_flight", "Records consumed, not yet committed.", ["worker"],
            registry=registry,
        )  # fmt: skip
        self.lag = Gauge(
            "exopipe_worker_consumer_lag",
            "Records between a partition's end and the worker's position.",
            ["worker", "topic", "partition"],
            registry=registry,
        )


@dataclass
class _Flush:
    """One handled batch on its way: outputs sent, state changes and offsets waiting for them."""

    # Hands the outputs to the producer, in order after the batch before; its result is their
    # deliveries. Reading goes on meanwhile: aiokafka sends one produce request per broker at a
    # time, and a batch for a partition waits until the one before it is in a request.
    outputs: asyncio.Future[list[asyncio.Future[Any]]]
    changes: list[tuple[str, int, bytes, bytes | None]]
    offsets: dict[TopicPartition, int]
    records: int
    topics: dict[str, int] = field(default_factory=dict)  # output records per topic


class _Sent(NamedTuple):
    """One producer batch handed on: where, how many records, its delivery (base offset)."""

    topic: str
    partition: int
    records: int
    delivery: asyncio.Future[Any]


async def _send(
    producer: AIOKafkaProducer, records: Keyed, sent: list[_Sent] | None = None
) -> list[asyncio.Future[Any]]:
    """Hand records to the producer as one batch per topic partition (more where one fills)."""
    futures: list[asyncio.Future[Any]] = []

    async def hand_on(batch: Any, topic: str, partition: int) -> None:
        count = batch.record_count()
        future = await producer.send_batch(batch, topic, partition=partition)
        futures.append(future)
        if sent is not None:
            sent.append(_Sent(topic, partition, count, future))

    for (topic, partition), items in records.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                await hand_on(batch, topic, partition)
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record for {topic} is larger than a producer batch")
        if batch.record_count():
            await hand_on(batch, topic, partition)
    return futures


def _next_offsets(sent: Sequence[_Sent]) -> dict[tuple[str, int], int]:
    """Per topic partition, the offset after the last record written (batches delivered)."""
    ends: dict[tuple[str, int], int] = {}
    for item in sent:
        end = item.delivery.result().offset + item.records
        where = (item.topic, item.partition)
        ends[where] = max(ends.get(where, 0), end)
    return ends


def _delivered(flush: _Flush) -> bool:
    """Its outputs are acknowledged, or it failed (then awaiting it raises at once)."""
    sent = flush.outputs
    if not sent.done():
        return False
    return sent.cancelled() or sent.exception() is not None or all(f.done() for f in sent.result())


def _submit(
    producer: AIOKafkaProducer, records: Keyed, after: asyncio.Future[Any] | None
) -> asyncio.Task[list[asyncio.Future[Any]]]:
    """:func:`_send` on a task of its own, once the one before it has handed its batches on."""

    async def run() -> list[asyncio.Future[Any]]:
        if after is not None:
            await asyncio.gather(after, return_exceptions=True)  # order; its failure is its own
        return await _send(producer, records) if records else []

    return asyncio.create_task(run())


class _Committer:
    """Takes handled batches in order: outputs acknowledged, then state, then offsets."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        max_in_flight: int,
        metrics: _Metrics,
        commit_interval_s: float = 0.0,
        stores: Sequence[ChangelogStore] = (),
    ) -> None:
        self._producer = producer
        self._stores = {store.changelog: store for store in stores}
        self._consumer = consumer
        self._metrics = metrics
        self._interval = commit_interval_s
        self._last_commit = 0.0
        self._hurry = asyncio.Event()  # a drain is waiting: commit now
        self._queue: asyncio.Queue[_Flush] = asyncio.Queue()
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.failure: BaseException | None = None
        self._task = asyncio.create_task(self._run(), name="batch-committer")

    async def slot(self) -> None:
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()

    def add(self, flush: _Flush) -> None:
        """Queue a handled batch (its slot was taken with :meth:`slot`)."""
        self._pending += 1
        self._idle.clear()
        self._metrics.in_flight.labels(self._metrics.worker).inc(flush.records)
        self._queue.put_nowait(flush)

    async def drain(self) -> None:
        """Wait until every batch queued is committed (or the committer failed)."""
        self._hurry.set()
        try:
            await self._idle.wait()
        finally:
            self._hurry.clear()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while True:
                group = [await self._queue.get()]
                await asyncio.gather(*await group[0].outputs)
                wait = self._last_commit + self._interval - time.monotonic()
                if wait > 0 and not self._hurry.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._hurry.wait(), wait)
                while not self._queue.empty() and _delivered(self._head()):
                    group.append(self._queue.get_nowait())
                    await asyncio.gather(*await group[-1].outputs)  # done: raises a failed one
                await self._commit(group)
                self._last_commit = time.monotonic()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a send or a commit failed: the worker starts again
            self.failure = exc
            self._idle.set()
            for _ in range(self._max_in_flight):  # a reader waiting for a slot sees it
                self._slots.release()
            log.error("batch core: a write or commit failed: %r", exc)

    def _head(self) -> _Flush:
        return self._queue._queue[0]  # type: ignore[attr-defined]  # asyncio.Queue's deque

    async def _commit(self, group: list[_Flush]) -> None:
        changes: dict[tuple[str, int, bytes], bytes | None] = {}
        offsets: dict[TopicPartition, int] = {}
        for flush in group:
            for topic, partition, key, value in flush.changes:
                changes.pop((topic, partition, key), None)  # keep the latest write's place
                changes[(topic, partition, key)] = value
            offsets.update(flush.offsets)
        keyed: Keyed = {}
        for (topic, partition, key), value in changes.items():
            keyed.setdefault((topic, partition), []).append((key, value))
        sent: list[_Sent] = []
        await asyncio.gather(*await _send(self._producer, keyed, sent if self._stores else None))
        # Only now, acknowledged on the changelog, may the changes reach a store's disk.
        for (topic, partition), next_offset in _next_offsets(sent).items():
            store = self._stores.get(topic)
            if store is not None:
                store.persisted(partition, keyed[(topic, partition)], next_offset)
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except CommitFailedError as exc:
                # The group moved on without us (a rebalance while the batch was written): the
                # partitions' new owner reads these records again, at least once.
                log.warning("batch core: commit refused after a rebalance: %s", exc)
        records = sum(flush.records for flush in group)
        self._metrics.in_flight.labels(self._metrics.worker).dec(records)
        for flush in group:
            for topic, count in flush.topics.items():
                self._metrics.produced.labels(self._metrics.worker, topic).inc(count)
            self._slots.release()
        self._pending -= len(group)
        if self._pending == 0:
            self._idle.set()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: BatchWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.partitions_revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._worker.partitions_assigned(frozenset(assigned))


class _Restart(Exception):
    """The committer failed: start the core again from the committed offsets."""


class BatchWorker:
    """Runs one :class:`Job` until ``stop`` is set, starting again after failures."""

    def __init__(
        self,
        settings: Settings,
        config: BatchConfig,
        job: Job,
        worker_name: str,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._settings = settings
        self._config = config
        self._job = job
        self._metrics = _Metrics(worker_name, registry)
        self._lock = asyncio.Lock()
        self._owned: frozenset[TopicPartition] = frozenset()
        self._epoch = 0
        self._committer: _Committer | None = None
        self._last_submit: asyncio.Future[Any] | None = None  # the latest batch's outputs
        self.ready = asyncio.Event()  # the first assignment is restored
        self.running = False
        self.restarts = 0
        self.restored_records = 0  # changelog records read by restores, all told

    async def run(self, stop: asyncio.Event) -> None:
        slot = None
        if self._config.state_dir is not None:
            slot = StateSlot(self._config.state_dir)
            folder = slot.acquire()
            log.info("stores on disk in %s", folder)
            for store in self._job.changelog_stores:
                store.use_directory(folder / store.name)
        try:
            await self._run(stop)
        finally:
            for store in self._job.changelog_stores:
                for partition in store.owned:
                    store.drop(partition)
            if slot is not None:
                slot.release()

    async def _run(self, stop: asyncio.Event) -> None:
        backoff = self._config.restart_backoff_s
        while not stop.is_set():
            try:
                await self._serve(stop)
                return
            except (KafkaError, OSError, _Restart) as exc:
                self.restarts += 1
                log.error(
                    "batch core stopped: %r; starting again in %.1f s from the committed offsets",
                    exc,
                    backoff,
                )
            self._forget(self._owned)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, 30.0)

    async def _serve(self, stop: asyncio.Event) -> None:
        config = self._config
        producer = new_producer(
            self._settings,
            client_id=config.client_id,
            linger_ms=config.linger_ms,
            max_batch_size=config.max_batch_size,
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=config.group_id,
            client_id=config.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        # Store changes go through a producer of their own: on the outputs' connection they
        # would wait for the outputs' produce requests, one at a time per broker.
        state_producer = new_producer(
            self._settings,
            client_id=f"{config.client_id}-state",
            linger_ms=config.linger_ms,
            max_batch_size=config.max_batch_size,
        )
        await producer.start()
        await state_producer.start()
        self._last_submit = None
        try:
            widths = {
                topic: len(await producer.partitions_for(topic))
                for topic in {
                    *self._job.outputs,
                    *(s.changelog for s in self._job.changelog_stores),
                }
            }
            await consumer.start()
            self._committer = _Committer(
                state_producer,
                consumer,
                config.max_in_flight,
                self._metrics,
                config.commit_interval_s,
                self._job.changelog_stores,
            )
            try:
                consumer.subscribe(list(self._job.topics), listener=_Listener(self))
                self.running = True
                await self._loop(stop, producer, consumer, self._committer, widths)
                await self._committer.drain()
                if self._committer.failure is not None:
                    raise _Restart(repr(self._committer.failure))
            finally:
                self.running = False
                await self._committer.close()
                await consumer.stop()
        finally:
            await producer.stop()
            await state_producer.stop()

    async def _loop(
        self,
        stop: asyncio.Event,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        committer: _Committer,
        widths: Mapping[str, int],
    ) -> None:
        config = self._config
        wait_ms = int(config.tick_seconds * 1000)
        next_tick = time.monotonic()
        while not stop.is_set():
            if committer.failure is not None:
                raise _Restart(repr(committer.failure))
            fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=config.max_records)
            epoch = self._epoch
            await committer.slot()
            queued = False
            try:
                async with self._lock:
                    # Records the job may not have now go back to the consumer: a rebalance
                    # came since they were fetched, or aiokafka fetched for a new assignment
                    # before its stores were restored (it assigns before calling the listener).
                    usable = epoch == self._epoch
                    records = {}
                    for tp, rs in fetched.items():
                        if usable and tp in self._owned and rs:
                            records[tp] = rs
                        elif rs and tp in consumer.assignment():
                            consumer.seek(tp, rs[0].offset)
                    out = Outbox(widths)
                    if records:
                        self._count_in(consumer, records)
                        self._job.handle(records, out)
                    now = time.monotonic()
                    if now >= next_tick:
                        next_tick = now + config.tick_seconds
                        self._job.tick(int(time.time() * 1000), out)
                    changes = [
                        (store.changelog, partition, key, value)
                        for store in self._job.changelog_stores
                        for partition, key, value in store.take_changes()
                    ]
                    if out.records or changes or records:
                        self._last_submit = _submit(producer, out.records, self._last_submit)
                        flush = _Flush(
                            outputs=self._last_submit,
                            changes=changes,
                            offsets={tp: rs[-1].offset + 1 for tp, rs in records.items()},
                            records=sum(len(rs) for rs in records.values()),
                            topics=_per_topic(out.records),
                        )
                        committer.add(flush)
                        queued = True
            finally:
                if not queued:
                    committer.release()

    def _count_in(self, consumer: AIOKafkaConsumer, records: Records) -> None:
        metrics = self._metrics
        for tp, rs in records.items():
            metrics.consumed.labels(metrics.worker, tp.topic).inc(len(rs))
            end = consumer.highwater(tp)
            if end is not None:
                lag = max(0, end - rs[-1].offset - 1)
                metrics.lag.labels(metrics.worker, tp.topic, str(tp.partition)).set(lag)

    # ---- rebalances -----------------------------------------------------------------------

    async def partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        async with self._lock:
            if self._committer is not None:
                await self._committer.drain()
            self._forget(revoked)

    async def partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        async with self._lock:
            self._epoch += 1
            began = time.monotonic()
            restored = await self._restore(assigned)
            self.restored_records += restored
            self._owned = assigned
            self._job.assigned(assigned)
            log.info(
                "Setting newly assigned partitions: %s (%d store entries restored in %.2f s)",
                _describe(assigned),
                restored,
                time.monotonic() - began,
            )
            if not self.ready.is_set():
                self.ready.set()
                log.info("Worker ready")

    def _forget(self, partitions: frozenset[TopicPartition]) -> None:
        if not partitions:
            return
        self._owned = self._owned - partitions
        self._epoch += 1
        for store in self._job.changelog_stores:
            kept = {tp.partition for tp in self._owned if tp.topic in store.sources}
            gone = {tp.partition for tp in partitions if tp.topic in store.sources}
            for partition in gone - kept:
                store.drop(partition)
        self._job.revoked(partitions)

    async def _restore(self, assigned: frozenset[TopicPartition]) -> int:
        """Bring each store partition now owned up to its changelog's end: from the start, or
        from the checkpoint a store on disk kept (``changelog_store``)."""
        wanted: dict[TopicPartition, ChangelogStore] = {}
        for store in self._job.changelog_stores:
            for tp in assigned:
                if tp.topic in store.sources and tp.partition not in store.owned:
                    wanted[TopicPartition(store.changelog, tp.partition)] = store
        if not wanted:
            return 0
        reader = new_reader(
            self._settings,
            client_id=f"{self._config.client_id}-restore",
            auto_offset_reset="earliest",
        )
        await reader.start()
        try:
            tps = list(wanted)
            reader.assign(tps)
            begins = await reader.beginning_offsets(tps)
            ends = await reader.end_offsets(tps)
            left: set[TopicPartition] = set()
            for tp in tps:
                start = wanted[tp].open(tp.partition, begins[tp], ends[tp])
                if start < ends[tp]:
                    # A seek to an offset is final (aiokafka's reset to "earliest" checks for
                    # one); a seek to the beginning raced that reset and restored nothing.
                    reader.seek(tp, start)
                    left.add(tp)
            count = 0
            while left:
                for tp in list(left):
                    if await reader.position(tp) >= ends[tp]:
                        left.discard(tp)
                if not left:
                    break
                fetched = await reader.getmany(*left, timeout_ms=500, max_records=20_000)
                for tp, rs in fetched.items():
                    changes = [(r.key, r.value) for r in rs if r.key is not None]
                    count += len(changes)
                    wanted[tp].apply(tp.partition, changes, rs[-1].offset + 1)
            for tp, store in wanted.items():
                store.apply(tp.partition, (), ends[tp])  # the checkpoint, fresh
                store.restored(tp.partition)
            log.debug("restored %s", {f"{tp.topic}:{tp.partition}": ends[tp] for tp in tps})
            return count
        finally:
            await reader.stop()


def _per_topic(records: Keyed) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (topic, _), items in records.items():
        counts[topic] = counts.get(topic, 0) + len(items)
    return counts


def _describe(partitions: frozenset[TopicPartition]) -> str:
    """``topic | {0, 1, 2}`` per topic, the form faust logged (tests and people read it)."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return (
        "; ".join(
            f"{topic} | {{{', '.join(map(str, sorted(ps)))}}}"
            for topic, ps in sorted(by_topic.items())
        )
        or "none"
    )
