"""The batch core's order of writes, with a producer and a consumer faked in memory.

What must hold: a batch's store changes are written only once its outputs are acknowledged,
its offsets are committed only once those changes are, and a failed write commits nothing. The
real broker runs the same code in tests/integration/enricher and tests/faults.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from workers.plumbing.batch_worker import (
    Outbox,
    _Committer,
    _Flush,
    _Metrics,
    _submit,
    partition_for,
)

TP = TopicPartition("in", 0)


class Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: Any) -> object:
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class Producer:
    """``create_batch``/``send_batch``: each batch acknowledged when the test says so."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []
        self.acks: list[asyncio.Future[None]] = []

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch.records))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack


class Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def committer(producer: Producer, consumer: Consumer) -> _Committer:
    metrics = _Metrics("test", CollectorRegistry())
    return _Committer(producer, consumer, 4, metrics)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def flush(output: asyncio.Future[None], key: bytes, value: bytes | None, offset: int) -> _Flush:
    """A handled batch whose outputs are in the producer, delivered once ``output`` is."""
    sent: asyncio.Future[list[asyncio.Future[None]]] = asyncio.get_running_loop().create_future()
    sent.set_result([output])
    return _Flush(outputs=sent, changes=[("log", 0, key, value)], offsets={TP: offset}, records=1)


async def test_state_goes_out_after_the_outputs_and_the_commit_after_the_state() -> None:
    producer, consumer = Producer(), Consumer()
    core = committer(producer, consumer)
    output: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    core.add(flush(output, b"k", b"v1", 11))
    await settle()
    assert producer.sent == []  # outputs not acknowledged yet: no state write
    output.set_result(None)
    await settle()
    assert producer.sent == [("log", 0, [(b"k", b"v1")])]
    assert consumer.commits == []  # the state write is not acknowledged yet
    producer.acks[-1].set_result(None)
    await settle()
    assert consumer.commits == [{TP: 11}]
    await asyncio.wait_for(core.drain(), 1)
    await core.close()


async def test_ready_batches_share_one_state_write_and_one_commit() -> None:
    producer, consumer = Producer(), Consumer()
    core = committer(producer, consumer)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    core.add(flush(first, b"k", b"v1", 11))
    core.add(flush(done, b"k", None, 12))  # the later change to the same key wins
    core.add(flush(done, b"j", b"w", 13))
    first.set_result(None)
    await settle()
    assert producer.sent == [("log", 0, [(b"k", None), (b"j", b"w")])]
    producer.acks[-1].set_result(None)
    await asyncio.wait_for(core.drain(), 1)
    assert consumer.commits == [{TP: 13}]
    await core.close()


async def test_a_failed_output_commits_nothing_and_is_reported() -> None:
    producer, consumer = Producer(), Consumer()
    core = committer(producer, consumer)
    output: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    core.add(flush(output, b"k", b"v", 11))
    output.set_exception(ConnectionError("broker gone"))
    await asyncio.wait_for(core.drain(), 1)
    assert isinstance(core.failure, ConnectionError)
    assert producer.sent == [] and consumer.commits == []
    await asyncio.wait_for(core.slot(), 1)  # a reader waiting for room sees the failure
    await core.close()


@pytest.mark.parametrize("key", [b"", b"a", b"CA0123456789", b"acme|app1|+919876543210"])
def test_outputs_are_partitioned_like_kafkas_default_partitioner(key: bytes) -> None:
    expected = DefaultPartitioner()(key, list(range(6)), list(range(6)))
    assert partition_for(key, 6) == expected
    out = Outbox({"t": 6})
    out.emit("t", key, b"v")
    assert list(out.records) == [("t", expected)] and out.count == 1


async def test_outputs_reach_the_producer_in_the_order_of_their_batches() -> None:
    """A batch's outputs are handed on while reading goes on, never before the batch before."""
    gate = asyncio.Event()

    class Slow(Producer):
        async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
            if batch.records == [(b"k", b"1")]:
                await gate.wait()  # aiokafka waits here while the partition's batch is queued
            return await super().send_batch(batch, topic, partition=partition)

    producer = Slow()
    first = _submit(producer, {("out", 0): [(b"k", b"1")]}, None)  # type: ignore[arg-type]
    second = _submit(producer, {("out", 0): [(b"k", b"2")]}, first)  # type: ignore[arg-type]
    await settle()
    assert producer.sent == [] and not second.done()
    gate.set()
    await asyncio.wait_for(second, 1)
    assert [records for _, _, records in producer.sent] == [[(b"k", b"1")], [(b"k", b"2")]]
