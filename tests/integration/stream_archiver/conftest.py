"""Stream archiver fixtures: a real ``exopipe worker stream-archiver`` on the real stack.

Records are produced straight to ``exotel.stream.audio`` (built by ``tests/stream_records.py``
with ``make_event``), WAVs are read back with plain boto3 and Python's ``wave`` module, and the
worker runs as a child process (``WorkerProcess`` of the archiver's tests) with its own topic
prefix, bucket and spill directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from tests.conftest import PipelineEnv
from tests.integration.archiver.conftest import WorkerProcess, drop_test_data
from tests.integration.kafka_io import collect
from topics.catalog import STREAM_ARCHIVED, STREAM_AUDIO
from topics.events import CloudEvent
from workers.config import Settings
from workers.kafka import admin_client, started_producer
from workers.s3 import new_s3_client
from workers.topic_admin import apply_catalog


def stream_env(stack_env: dict[str, str], home: Path, **extra: str) -> PipelineEnv:
    run = uuid.uuid4().hex[:10]
    spill = home / "spill"
    spill.mkdir(exist_ok=True)
    return PipelineEnv(
        {
            **stack_env,
            "EXOPIPE_TOPIC_PREFIX": f"test-{run}.",
            "EXOPIPE_S3_BUCKET": f"streams-{run}",
            "EXOPIPE_STREAM_ARCHIVER_SPILL_DIR": str(spill),
            "EXOPIPE_STREAM_ARCHIVER_SESSION_TIMEOUT": "10",
            "EXOPIPE_STREAM_ARCHIVER_RETRY_BASE_DELAY": "0.2",
            "EXOPIPE_STREAM_ARCHIVER_RETRY_MAX_DELAY": "1",
            "EXOPIPE_LOG_LEVEL": "INFO",
            **extra,
        }
    )


def sids_on_one_partition(count: int, stem: str) -> list[str]:
    """``count`` stream sids that Kafka's default partitioner puts on the same partition."""
    by_partition: dict[int, list[str]] = {}
    for n in range(1000):
        sid = f"{stem}-{uuid.uuid4().hex[:8]}-{n}"
        found = by_partition.setdefault(partition_of(sid), [])
        found.append(sid)
        if len(found) == count:
            return found
    raise AssertionError("no partition got enough sids")


def partition_of(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % STREAM_AUDIO.partitions


@dataclass
class StreamRig:
    """The worker, its settings, the bucket, and helpers to produce and to read back."""

    env: PipelineEnv
    worker: WorkerProcess
    s3: Any

    @property
    def settings(self) -> Settings:
        return self.env.settings

    @property
    def bucket(self) -> str:
        return self.settings.s3_bucket

    @property
    def group(self) -> str:
        return f"{self.settings.topic_prefix}exopipe-stream-archiver"

    async def produce(self, events: Iterable[CloudEvent]) -> list[int]:
        """Send in order, keyed by stream_sid; return each record's offset."""
        topic = self.settings.topic(STREAM_AUDIO).name
        async with started_producer(self.settings) as producer:
            futures = [
                await producer.send(topic, event.to_bytes(), key=event.data["stream_sid"].encode())
                for event in events
            ]
            return [(await future).offset for future in futures]

    async def archived(self, sids: Iterable[str], *, count: int, wait: float) -> list[CloudEvent]:
        """Archived records of ``sids`` (schema-checked), in topic order, once ``count`` are in."""
        wanted = set(sids)
        found = await collect(
            self.settings, STREAM_ARCHIVED, count=count, wait_seconds=wait,
            where=lambda _key, event: event.data["stream_sid"] in wanted,
        )  # fmt: skip
        return [event for _key, event in found]

    async def committed(self, partition: int) -> int | None:
        tp = TopicPartition(self.settings.topic(STREAM_AUDIO).name, partition)
        async with admin_client(self.settings) as admin:
            offsets = await admin.list_consumer_group_offsets(self.group, partitions=[tp])
        meta = offsets.get(tp)
        return None if meta is None or meta.offset < 0 else int(meta.offset)

    async def rewind(self, partition: int) -> None:
        """Commit offset 0 for the (stopped) worker's group: it reads the partition again."""
        tp = TopicPartition(self.settings.topic(STREAM_AUDIO).name, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: 0})
        finally:
            await consumer.stop()

    def object(self, key: str) -> tuple[bytes, dict[str, Any]]:
        answer = self.s3.get_object(Bucket=self.bucket, Key=key)
        return answer["Body"].read(), answer

    def keys(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def spill_files(self) -> list[Path]:
        root = self.settings.stream_archiver.spill_dir
        return sorted(root.rglob("*.wav"))

    def drop(self) -> None:
        """Delete what the test stored, topics and bucket (the shared servers are not ours)."""
        drop_test_data(self.settings, self.s3)


async def make_rig(env: PipelineEnv, home: Path, s3: Any | None = None) -> StreamRig:
    """Topics and a bucket for ``env``; ``s3`` is the test's own client (the project's if none)."""
    settings = env.settings
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    s3 = new_s3_client(settings) if s3 is None else s3
    await asyncio.to_thread(s3.create_bucket, Bucket=settings.s3_bucket)
    return StreamRig(env, WorkerProcess(env, home / "worker", name="stream-archiver"), s3)


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()
