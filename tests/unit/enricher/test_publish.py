"""The enricher's outputs: an input is acked only once Kafka has what it produced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from workers.enricher.agents import publish


class QueuedTopic:
    """faust's ``Topic.send``: returns once the record is queued, with its delivery future."""

    def __init__(self) -> None:
        self.delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent: list[tuple[Any, bytes]] = []

    async def send(self, *, key: Any, value: bytes) -> asyncio.Future[Any]:
        self.sent.append((key, value))
        return self.delivery


async def test_publish_returns_only_once_kafka_has_the_record() -> None:
    topic = QueuedTopic()
    task = asyncio.create_task(publish(topic, b"k", b"v"))
    await asyncio.sleep(0.01)
    assert topic.sent == [(b"k", b"v")]
    assert not task.done()  # queued is not enough
    topic.delivery.set_result("metadata")
    await asyncio.wait_for(task, 1)


async def test_a_record_the_producer_gave_up_on_fails_the_handler() -> None:
    topic = QueuedTopic()
    topic.delivery.set_exception(KafkaTimeoutError())
    with pytest.raises(KafkaTimeoutError):  # the agent stops unacked (workers/enricher/app.py)
        await publish(topic, b"k", b"v")
