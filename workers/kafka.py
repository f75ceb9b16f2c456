"""The one place Kafka clients are configured: aiokafka producers, readers and the admin client.

Clients are created once per process and closed at shutdown, never per message. Producers are
idempotent with ``acks=all``: a record is acknowledged only once every in-sync replica has it.
Readers belong to no consumer group: they assign partitions themselves and never commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from topics.catalog import TopicSpec
from topics.events import CloudEvent
from workers.config import Settings
from workers.errors import RetryableError

__all__ = [
    "admin_client",
    "all_partitions",
    "new_producer",
    "new_reader",
    "produce_event",
    "started_producer",
]


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer (acks=all), not yet started. ``overrides`` go to aiokafka as is."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "request_timeout_ms": 30_000,
        "client_id": "exopipe",
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def new_reader(settings: Settings, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer in no group (assign and seek; nothing committed), not yet started."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


def all_partitions(spec: TopicSpec) -> list[TopicPartition]:
    """Every partition of a topic as declared (pass ``settings.topic(spec)``: the real name)."""
    return [TopicPartition(spec.name, p) for p in range(spec.partitions)]


@asynccontextmanager
async def started_producer(settings: Settings, **overrides: Any) -> AsyncIterator[AIOKafkaProducer]:
    producer = new_producer(settings, **overrides)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def admin_client(settings: Settings, **overrides: Any) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; a broker that does not answer becomes a ``RetryableError``."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="exopipe-admin",
        request_timeout_ms=overrides.pop("request_timeout_ms", 15_000),
        **overrides,
    )
    try:
        await admin.start()
    except (KafkaConnectionError, KafkaTimeoutError) as exc:
        await admin.close()
        raise RetryableError(f"Kafka at {settings.kafka_bootstrap} did not answer: {exc}") from exc
    try:
        yield admin
    finally:
        await admin.close()


async def produce_event(
    producer: AIOKafkaProducer, spec: TopicSpec, event: CloudEvent, key: str
) -> Any:
    """Send one event to its topic and wait for the broker's acknowledgement."""
    try:
        return await producer.send_and_wait(spec.name, event.to_bytes(), key=key.encode())
    except KafkaError as exc:
        raise RetryableError(f"producing to {spec.name} failed: {exc!r}") from exc
