"""The foundation against the real stack: every catalog topic, S3 multipart, a faust table."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import IO, Any

import pytest
from aiokafka.admin import NewTopic
from boto3.s3.transfer import TransferConfig

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect, read_raw
from topics.catalog import CATALOG, TopicSpec
from topics.events import make_event
from topics.schemas import load_schema
from workers.kafka import admin_client, produce_event, started_producer
from workers.s3 import new_s3_client
from workers.topic_admin import apply_catalog, describe_topics

ROOT = Path(__file__).resolve().parents[2]


def _example(spec: TopicSpec) -> dict[str, Any]:
    """The example every schema carries (a unit test checks it validates)."""
    example: dict[str, Any] = load_schema(spec.schema)["examples"][0]
    return example


async def test_topics_apply_creates_then_changes_nothing(pipeline_env: PipelineEnv) -> None:
    settings = pipeline_env.settings
    async with admin_client(settings) as admin:
        first = await apply_catalog(admin, name_prefix=settings.topic_prefix)
        second = await apply_catalog(admin, name_prefix=settings.topic_prefix)
        states = await describe_topics(admin, [settings.topic(s).name for s in CATALOG])
    assert len(first.created) == len(CATALOG)
    assert second.created == () and second.drift == ()
    assert len(second.unchanged) == len(CATALOG)
    for spec in CATALOG:
        state = states[settings.topic(spec).name]
        assert state.partitions == spec.partitions
        assert state.configs["cleanup.policy"] == spec.cleanup_policy


async def test_a_cloudevent_round_trips_through_every_catalog_topic(
    topics_env: PipelineEnv,
) -> None:
    settings = topics_env.settings
    sent = {}
    async with started_producer(settings) as producer:
        for spec in CATALOG:
            event = make_event(
                spec,
                _example(spec),
                source="/tests/smoke",
                customer_id="cust_1",
                app_id="app_1",
            )
            await produce_event(producer, settings.topic(spec), event, key="call_123")
            sent[spec.name] = event
    for spec in CATALOG:
        [(key, received)] = await collect(settings, spec, count=1, wait_seconds=20)
        assert key == b"call_123"
        assert received == sent[spec.name]


def test_s3_multipart_round_trip_over_16_mib(stack_env: dict[str, str]) -> None:
    settings = PipelineEnv(stack_env).settings
    s3 = new_s3_client(settings)
    body = os.urandom(17 * 1024 * 1024 + 123)
    key = f"smoke/{uuid.uuid4().hex}.bin"
    config = TransferConfig(
        multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024
    )

    s3.upload_fileobj(io.BytesIO(body), settings.s3_bucket, key, Config=config)
    head = s3.head_object(Bucket=settings.s3_bucket, Key=key)
    assert head["ContentLength"] == len(body)
    # A multipart ETag is "<md5 of part md5s>-<parts>": proof the upload really was multipart.
    assert head["ETag"].strip('"').endswith("-3")
    got = s3.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
    s3.delete_object(Bucket=settings.s3_bucket, Key=key)


def _start_probe(
    env: PipelineEnv, app_id: str, source: str, sink: str, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.plumbing.faust_probe", app_id, source, sink, "2"],
        cwd=ROOT,
        env=env.process_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _latest_counts(
    env: PipelineEnv, sink: str, want: dict[bytes, bytes]
) -> dict[bytes, bytes]:
    def latest(records: list[Any]) -> dict[bytes, bytes]:
        return {record.key: record.value for record in records}

    def reached(records: list[Any]) -> bool:
        got = latest(records)
        return all(got.get(k) == v for k, v in want.items())

    bootstrap = env.settings.kafka_bootstrap
    return latest(await read_raw(bootstrap, sink, until=reached, wait_seconds=90))


@pytest.mark.slow
async def test_faust_table_has_a_changelog_and_survives_a_restart(
    pipeline_env: PipelineEnv, tmp_path: Path
) -> None:
    settings = pipeline_env.settings
    run = uuid.uuid4().hex[:10]
    prefix = settings.topic_prefix
    app_id, source, sink = (
        f"probe-{run}",
        f"{prefix}probe-{run}.source",
        f"{prefix}probe-{run}.sink",
    )
    async with admin_client(settings) as admin:
        await admin.create_topics([NewTopic(source, 2, 1), NewTopic(sink, 2, 1)])

    async def send(keys: list[bytes]) -> None:
        async with started_producer(settings) as producer:
            for key in keys:
                await producer.send_and_wait(source, b"x", key=key)

    with (tmp_path / "probe.log").open("wb") as log:
        worker = _start_probe(pipeline_env, app_id, source, sink, log)
        try:
            await send([b"a", b"a", b"b", b"a"])
            want = {b"a": b"3", b"b": b"1"}
            assert await _latest_counts(pipeline_env, sink, want) == want
            async with admin_client(settings) as admin:
                topics = set(await admin.list_topics())
            assert f"{prefix}exopipe-{app_id}-counts-changelog" in topics
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0

        restarted = _start_probe(pipeline_env, app_id, source, sink, log)
        try:
            await send([b"a", b"b"])
            latest = await _latest_counts(pipeline_env, sink, {b"a": b"4", b"b": b"2"})
            assert latest == {b"a": b"4", b"b": b"2"}, "the restarted worker lost its table"
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=60)
