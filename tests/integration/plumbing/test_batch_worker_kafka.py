"""The batch core on the real broker: a count per key that survives restores and handovers.

A job counts records per key in a changelog store and emits ``key -> count``. If a store were
restored short, or records fetched around a rebalance were skipped, a key's last count would
fall below the number of records sent for it. Both faults were seen in the enricher's rebalance
test before they were fixed (``workers/plumbing/batch_worker.py``): a restore that raced
aiokafka's reset to the end, and records fetched for a new assignment before its restore.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from prometheus_client import CollectorRegistry

from tests.conftest import PipelineEnv
from workers.kafka import admin_client, new_producer, new_reader
from workers.plumbing.batch_worker import BatchConfig, BatchWorker, Outbox, Records
from workers.plumbing.changelog_store import ChangelogStore

pytestmark = pytest.mark.integration

PARTITIONS = 3


class Counting:
    """Counts records per key; emits the new count of each."""

    def __init__(self, source: str, sink: str, changelog: str) -> None:
        self.topics = [source]
        self.outputs = [sink]
        self.store = ChangelogStore("counts", changelog, [source])
        self.changelog_stores = [self.store]
        self.sink = sink

    def handle(self, records: Records, out: Outbox) -> None:
        for tp, batch in records.items():
            for record in batch:
                key = record.key.decode()
                count = int(self.store.get(tp.partition, key) or b"0") + 1
                self.store.set(tp.partition, key, str(count).encode())
                out.emit(self.sink, record.key, str(count).encode())

    def tick(self, now_ms: int, out: Outbox) -> None:
        pass

    def assigned(self, partitions: frozenset[TopicPartition]) -> None:
        pass

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        pass


async def _topics(env: PipelineEnv) -> tuple[str, str, str]:
    base = f"{env.settings.topic_prefix}core-{uuid.uuid4().hex[:6]}"
    names = (f"{base}-in", f"{base}-out", f"{base}-counts-changelog")
    async with admin_client(env.settings) as admin:
        await admin.create_topics(
            [
                NewTopic(names[0], PARTITIONS, 1),
                NewTopic(names[1], PARTITIONS, 1),
                NewTopic(names[2], PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
    await asyncio.sleep(1.0)  # leaders elected
    return names


def _worker(
    env: PipelineEnv, names: tuple[str, str, str], group: str, state_dir: Path | None
) -> BatchWorker:
    config = BatchConfig(
        state_dir=state_dir,
        group_id=group,
        client_id=f"test-{uuid.uuid4().hex[:4]}",
        tick_seconds=0.05,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    return BatchWorker(env.settings, config, Counting(*names), "test", CollectorRegistry())


async def _last_counts(env: PipelineEnv, topic: str) -> dict[str, int]:
    reader = new_reader(env.settings, auto_offset_reset="earliest")
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
        counts: dict[str, int] = {}
        while any([await reader.position(tp) < ends[tp] for tp in tps]):
            for records in (await reader.getmany(timeout_ms=500)).values():
                for record in records:
                    key = record.key.decode()
                    counts[key] = max(counts.get(key, 0), int(record.value))
        return counts
    finally:
        await reader.stop()


@pytest.mark.parametrize("home", ["memory", "disk"])
async def test_counts_survive_restarts_and_a_worker_joining_and_leaving(
    topics_env: PipelineEnv, tmp_path: Path, home: str
) -> None:
    env = topics_env
    state_dir = tmp_path / "state" if home == "disk" else None
    names = await _topics(env)
    group = f"{env.settings.topic_prefix}core-{uuid.uuid4().hex[:6]}"
    producer = new_producer(env.settings)
    await producer.start()
    sent: Counter[str] = Counter()

    async def send(rounds: int) -> None:
        for _ in range(rounds):
            for k in range(30):
                key = f"k{k}"
                await producer.send(names[0], b"x", key=key.encode())
                sent[key] += 1
            await asyncio.sleep(0.02)

    async def run_for(worker: BatchWorker, stop: asyncio.Event) -> asyncio.Task[None]:
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(worker.ready.wait(), 60)
        return task

    try:
        for restart in range(4):  # each start restores the counts written before it
            stop = asyncio.Event()
            worker = _worker(env, names, group, state_dir)
            first = await run_for(worker, stop)
            if restart > 0:
                # On disk, a restart after a clean stop has nothing to read: the checkpoint
                # is the changelog's end. In memory it reads every change made so far.
                if home == "disk":
                    assert worker.restored_records == 0
                else:
                    assert worker.restored_records >= len(sent)
            await send(10)
            if restart == 3:  # a second worker joins under load, then leaves
                stop_second = asyncio.Event()
                second = await run_for(_worker(env, names, group, state_dir), stop_second)
                await send(20)
                stop_second.set()
                await asyncio.wait_for(second, 60)
                await send(10)
            await producer.flush()
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.wait_for(first, 60)
        counts = await _last_counts(env, names[1])
    finally:
        await producer.stop()
    assert counts == dict(sent)  # every key's last count is every record sent for it
