"""Producing result and state records, and finding out whether a result is already on Kafka.

Results go to an explicit partition (the one Kafka's default partitioner picks for the key, so
consumers see the usual key -> partition mapping). Knowing the partition before producing lets the
worker record a *floor*: an offset of that partition at or below where the result will land.
After a crash, "was it produced?" is answered by reading the partition from that floor to its end
and looking for the result's (deterministic) event id, instead of guessing.

The floor is the highest end offset this process has seen for the partition (from its own
produce acknowledgements, or one ``list_offsets`` on first use): offsets only grow, so any offset
seen before producing is a valid floor, and scans stay short.

This module must never produce a record whose ``data`` skipped schema validation (it only sends
events built by :mod:`workers.settings_applier.records`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from topics.catalog import TopicSpec
from workers import json_codec
from workers.config import Settings
from workers.errors import RetryableError
from workers.kafka import new_reader

__all__ = ["Outbox", "partition_for", "produce"]

log = logging.getLogger(__name__)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def produce(
    app: Any, topic: str, key: bytes, value: bytes | None, partition: int | None
) -> Any:
    """Produce one record through the faust app's producer and wait for its acknowledgement.

    Straight to aiokafka, not through faust's ``send_soon`` buffer: that buffer is drained by one
    task, one record at a time, so a record waits for every one queued before it (a table
    changelog write took 50-180 ms this way under load, a direct send 5 ms). faust's sensors see
    only the sends that go through its topics; these are counted like them.
    """
    producer = await app.maybe_start_producer()
    sensors = app.sensors
    state = sensors.on_send_initiated(
        producer, topic, message=None, keysize=len(key), valsize=len(value or b"")
    )
    try:
        sending = producer.send_and_wait(
            topic, key, value, partition=partition, timestamp=None, headers=None
        )
        metadata = await _kafka(sending, f"produce to {topic}")
    except RetryableError as exc:
        sensors.on_send_error(producer, exc, state)
        raise
    sensors.on_send_completed(producer, state, metadata)
    return metadata


class Outbox:
    """Sends through the faust app's producer; scans with one plain consumer (no group)."""

    def __init__(self, app: Any, settings: Settings, result: TopicSpec, state: TopicSpec) -> None:
        self._app = app
        self._settings = settings
        self.result = settings.topic(result)
        self.state = settings.topic(state)
        self._floors: dict[int, int] = {}
        self._scanner: AIOKafkaConsumer | None = None
        self._scan_lock = asyncio.Lock()

    async def start(self) -> None:
        self._scanner = new_reader(
            self._settings, client_id=f"exopipe-settings-scan-{uuid.uuid4().hex[:8]}"
        )
        await self._scanner.start()

    async def stop(self) -> None:
        if self._scanner is not None:
            await self._scanner.stop()
            self._scanner = None

    def result_partition(self, key: str) -> int:
        return partition_for(key.encode(), self.result.partitions)

    async def floor(self, partition: int) -> int:
        """An offset of the result partition that the next result will land at or after."""
        if partition not in self._floors:
            tp = TopicPartition(self.result.name, partition)
            ends = await _kafka(self._consumer().end_offsets([tp]), "list offsets")
            self._floors[partition] = max(self._floors.get(partition, 0), ends[tp])
        return self._floors[partition]

    async def send(self, spec: TopicSpec, key: str, value: bytes, partition: int | None) -> int:
        """Produce and wait for the acknowledgement (acks=all); returns the record's offset."""
        metadata = await produce(self._app, spec.name, key.encode(), value, partition)
        if spec.name == self.result.name:
            current = self._floors.get(metadata.partition, 0)
            self._floors[metadata.partition] = max(current, metadata.offset + 1)
        return int(metadata.offset)

    async def contains(self, partition: int, floor: int, event_id: str) -> bool:
        """Whether the result partition holds an event with ``event_id`` at or after ``floor``."""
        tp = TopicPartition(self.result.name, partition)
        consumer = self._consumer()
        async with self._scan_lock:  # one assignment at a time on the shared scanner
            end = (await _kafka(consumer.end_offsets([tp]), "list offsets"))[tp]
            if end <= floor:
                return False
            consumer.assign([tp])
            consumer.seek(tp, floor)
            while True:
                batch = await _kafka(consumer.getmany(tp, timeout_ms=1000), "scan")
                for record in batch.get(tp, []):
                    if _event_id(record.value) == event_id:
                        return True
                    if record.offset + 1 >= end:
                        return False
                if await consumer.position(tp) >= end:
                    return False

    def _consumer(self) -> AIOKafkaConsumer:
        if self._scanner is None:
            raise RuntimeError("Outbox.start() was not awaited")
        return self._scanner


async def _kafka(operation: Any, what: str) -> Any:
    try:
        return await operation
    except KafkaError as exc:
        raise RetryableError(f"Kafka {what} failed: {exc!r}") from exc


def _event_id(value: bytes | None) -> str | None:
    try:
        envelope = json_codec.loads(value or b"")
    except json_codec.JSONDecodeError:
        return None
    return envelope.get("id") if isinstance(envelope, dict) else None
