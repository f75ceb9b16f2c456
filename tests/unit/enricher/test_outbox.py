"""Outputs gathered per record, and records acked in order once their outputs are on Kafka."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from workers.enricher.outbox import InOrderAcks, collecting, delivered_here, publish


class QueuedTopic:
    """faust's ``Topic.send``: queued now; each record's delivery is a future set by the test."""

    def __init__(self) -> None:
        self.deliveries: list[asyncio.Future[Any]] = []

    async def send(self, *, key: Any, value: bytes) -> asyncio.Future[Any]:
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]


class Acked:
    def __init__(self) -> None:
        self.records: list[str] = []
        self.failures: list[BaseException] = []

    async def ack(self, record: str) -> None:
        self.records.append(record)

    async def fail(self, exc: BaseException) -> None:
        self.failures.append(exc)


async def add_three(topic: QueuedTopic, acks: InOrderAcks) -> None:
    """Records r1, r2, r3, each with one output still on its way."""
    for name in ("r1", "r2", "r3"):
        with collecting() as deliveries:
            await publish(topic, b"k", name.encode())
        await acks.add(name, deliveries)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_sends_inside_collecting_are_gathered_not_awaited() -> None:
    topic = QueuedTopic()
    with collecting() as deliveries:
        await asyncio.wait_for(publish(topic, b"k", b"1"), 1)  # returns while undelivered
        await asyncio.wait_for(publish(topic, b"k", b"2"), 1)
    assert deliveries == topic.deliveries
    assert not any(d.done() for d in deliveries)


async def test_delivered_here_waits_for_its_own_sends_on_the_way_out() -> None:
    topic = QueuedTopic()
    with collecting() as record_deliveries:

        async def release() -> None:
            async with delivered_here():
                await publish(topic, b"k", b"held")

        task = asyncio.create_task(release())
        await settle()
        assert not task.done()  # waits for Kafka, not for the record's ack
        topic.deliveries[0].set_result(None)
        await asyncio.wait_for(task, 1)
    assert record_deliveries == []


async def test_records_are_acked_in_order_each_once_its_outputs_are_delivered() -> None:
    topic, acked = QueuedTopic(), Acked()
    async with InOrderAcks(acked.ack, acked.fail) as acks:
        await add_three(topic, acks)
        await acks.add("r4", [])  # no outputs, but r1..r3 are not acked yet
        topic.deliveries[2].set_result(None)
        topic.deliveries[1].set_result(None)
        await settle()
        assert acked.records == []  # r1 is still on its way: nothing after it is acked
        topic.deliveries[0].set_result(None)
        await settle()
        assert acked.records == ["r1", "r2", "r3", "r4"]
        await acks.add("r5", [])  # nothing waiting before it: acked at once
        assert acked.records[-1] == "r5"


async def test_a_failed_delivery_stops_acking_and_the_worker() -> None:
    topic, acked = QueuedTopic(), Acked()
    async with InOrderAcks(acked.ack, acked.fail) as acks:
        await add_three(topic, acks)
        topic.deliveries[0].set_result(None)
        topic.deliveries[1].set_exception(KafkaTimeoutError())
        topic.deliveries[2].set_result(None)
        await settle()
        assert acked.records == ["r1"]  # r2 failed: neither it nor r3 is acked
        assert len(acked.failures) == 1
        with pytest.raises(KafkaTimeoutError):
            await acks.add("r4", [])
    assert acked.records == ["r1"]


async def test_add_waits_while_the_limit_of_unacked_records_is_reached() -> None:
    topic, acked = QueuedTopic(), Acked()
    async with InOrderAcks(acked.ack, acked.fail, limit=2) as acks:
        await add_three(topic, acks)
        fourth = asyncio.create_task(acks.add("r4", [topic.deliveries[0]]))
        await settle()
        assert not fourth.done()  # r2 and r3 wait in the queue, r1 in the acker
        topic.deliveries[0].set_result(None)
        await asyncio.wait_for(fourth, 1)
        for delivery in topic.deliveries[1:]:
            delivery.set_result(None)
        await settle()
    assert acked.records == ["r1", "r2", "r3", "r4"]


async def test_closing_acks_what_is_delivered_in_time() -> None:
    topic, acked = QueuedTopic(), Acked()
    acks = InOrderAcks(acked.ack, acked.fail)
    await acks.__aenter__()
    with collecting() as deliveries:
        await publish(topic, b"k", b"r1")
    await acks.add("r1", deliveries)
    topic.deliveries[0].set_result(None)
    await acks.close(drain_s=1)
    assert acked.records == ["r1"]
