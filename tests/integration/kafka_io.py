"""Reading and writing catalog topics from tests, with aiokafka directly (not our workers)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from topics.catalog import TopicSpec
from topics.events import CloudEvent, parse_event
from workers.config import Settings

__all__ = ["collect", "read_raw"]


async def collect(
    settings: Settings,
    spec: TopicSpec,
    *,
    count: int,
    wait_seconds: float = 30.0,
    where: Callable[[bytes | None, CloudEvent], bool] | None = None,
) -> list[tuple[bytes | None, CloudEvent]]:
    """Read ``spec`` (prefixed per ``settings``) from the start until ``count`` events match.

    Returns what matched when ``wait_seconds`` run out, so a test can assert on what is missing.
    Events are validated against the topic's schema as they are parsed.
    """
    resolved = settings.topic(spec)
    consumer = AIOKafkaConsumer(
        resolved.name,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[tuple[bytes | None, CloudEvent]] = []
    try:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while len(found) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            batches = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for records in batches.values():
                for record in records:
                    event = parse_event(record.value, spec)
                    if where is None or where(record.key, event):
                        found.append((record.key, event))
    finally:
        await consumer.stop()
    return found


async def read_raw(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Any]], bool],
    wait_seconds: float,
) -> list[Any]:
    """Read any topic's records from the start (no group) until ``until(records)`` holds.

    Returns what was read when ``wait_seconds`` run out, so a test can assert on it.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(wait_seconds):
            while not until(records):
                batches = await consumer.getmany(timeout_ms=500)
                records += [r for batch in batches.values() for r in batch]
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records
