"""Reading a topic from a point in time to its current end, and one record by its offset.

No consumer group: partitions are assigned by hand and nothing is committed, so listing the
dead letters never moves anyone's position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from topics.catalog import TopicSpec
from workers.config import Settings

__all__ = ["read_one", "read_since"]


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def read_since(
    settings: Settings, spec: TopicSpec, since: datetime | None
) -> AsyncIterator[ConsumerRecord]:
    """Every record of ``spec`` (resolved name) from ``since`` (or the start) to today's end."""
    consumer = _consumer(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        if since is not None:
            found = await consumer.offsets_for_times(
                {tp: int(since.timestamp() * 1000) for tp in partitions}
            )
            starts = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in partitions}
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in partitions if starts[tp] < ends[tp]}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
                if records and records[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()


async def read_one(
    settings: Settings, spec: TopicSpec, partition: int, offset: int
) -> ConsumerRecord | None:
    """The record at ``partition``/``offset`` of ``spec``, or None when retention removed it."""
    consumer = _consumer(settings)
    await consumer.start()
    try:
        tp = TopicPartition(spec.name, partition)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= offset < end:
            return None
        consumer.seek(tp, offset)
        batches = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
        records = batches.get(tp, [])
        return records[0] if records and records[0].offset == offset else None
    finally:
        await consumer.stop()
