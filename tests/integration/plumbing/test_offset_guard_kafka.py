"""The continuity guard's view of Kafka, on the real broker: a group's committed offset (or the
log start when it has none), the records of an offset range, and the faust event rebuilt from
one. Asking must not make the reader a member of the group, nor commit anything."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.conftest import PipelineEnv
from topics.catalog import SETTINGS_COMMAND
from workers.kafka import admin_client, new_reader, started_producer
from workers.plumbing.offset_guard import GapNotFilled, KafkaPositions


async def test_committed_offset_log_start_and_first_record(topics_env: PipelineEnv) -> None:
    settings = topics_env.settings
    name = settings.topic(SETTINGS_COMMAND).name
    tp = TopicPartition(name, 2)
    group = f"{settings.topic_prefix}guard-probe"
    async with started_producer(settings) as producer:
        for n in range(10):
            await producer.send_and_wait(name, f"r{n}".encode(), key=b"k", partition=2)

    reader = new_reader(settings, auto_offset_reset="earliest")
    await reader.start()
    try:
        async with admin_client(settings) as admin:
            positions = KafkaPositions(admin, reader, group_id=group)
            assert await positions.committed(tp) == 0  # nothing committed: the log start
            member = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap,
                group_id=group,
                enable_auto_commit=False,
            )
            await member.start()
            try:
                member.assign([tp])
                await member.commit({tp: 7})
            finally:
                await member.stop()
            assert await positions.committed(tp) == 7
            got = [r.offset async for r in positions.records(tp, 3, 7)]
            assert got == [3, 4, 5, 6]
            assert [r.value async for r in positions.records(tp, 7, 9)] == [b"r7", b"r8"]
            # Past the end nothing comes: the worker stops rather than skip what it cannot read.
            short = KafkaPositions(admin, reader, group_id=group, fetch_timeout_s=0.5)
            with pytest.raises(GapNotFilled):
                _ = [r async for r in short.records(tp, 10, 12)]
            assert reader.assignment() == set()  # it stops fetching once it has answered
            assert await positions.committed(tp) == 7  # asking committed nothing
            described = await admin.describe_consumer_groups([group])
            groups = [g for response in described for g in response.to_object()["groups"]]
            assert groups and all(g["members"] == [] for g in groups)  # and joined nothing
    finally:
        await reader.stop()
