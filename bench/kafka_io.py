"""Kafka helpers the bench paths share: a reader that sees only what is written from now on."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.config import Settings
from workers.kafka import new_reader

__all__ = ["reader_at_end"]


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
