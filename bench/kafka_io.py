"""Kafka helpers the bench paths share: a reader that sees only what is written from now on, and
a wait until new topics answer on every partition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.config import Settings
from workers.kafka import admin_client, new_reader

__all__ = ["reader_at_end", "wait_for_leaders"]


async def reader_at_end(settings: Settings, topic: str, partitions: int) -> AIOKafkaConsumer:
    """A started reader (no group) on every partition of ``topic``, positioned at its end."""
    consumer = new_reader(settings, client_id="exopipe-bench-reader")
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)  # resolve the end now, before anything is sent
    return consumer


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    found = logging.getLogger(logger)
    level = found.level
    found.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        found.setLevel(level)


async def wait_for_leaders(settings: Settings, prefix: str, limit_s: float = 30.0) -> int:
    """Return once every partition of every topic named ``prefix...`` answers for its end offset.

    KRaft names a partition's leader in the metadata before that broker serves it: for a moment
    after the topics are created, produce and list-offsets requests get
    ``NotLeaderForPartitionError``, which aiokafka retries and logs, one line each, into the
    bench's output. Asking for the end offsets (aiokafka's own retries, their log lines held
    back here) until they all answer leaves the run's output to what it measures. Returns the
    number of partitions waited for.
    """
    async with admin_client(settings) as admin:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        described = await admin.describe_topics(names) if names else []
    tps = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic.get("partitions") or []
    ]
    if not tps:
        return 0
    reader = new_reader(settings, client_id="exopipe-bench-leaders")
    with _quiet("aiokafka"):
        await reader.start()
        try:
            await asyncio.wait_for(reader.end_offsets(tps), limit_s)
        finally:
            await reader.stop()
    return len(tps)
