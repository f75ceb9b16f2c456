"""Live audio through the real stack: the Exotel double streams 30 s of audio to the real ingress
(a subprocess), the real stream archiver (a subprocess) writes the WAV, and an independent
client (plain boto3 and Python's ``wave``) reads it back: the samples are the ones sent."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from topics.catalog import STREAM_ARCHIVED
from workers import json_codec
from workers.demo.environment import free_port
from workers.demo.processes import Children
from workers.exotel_double.control import AsyncDoubleControl
from workers.exotel_double.runner import DoubleServer
from workers.exotel_double.stream_audio import ToneAudio

CUSTOMER = "cust_stream"
APP = "app_live"
SECRET = "stream-tenant-secret"  # noqa: S105 - a test credential


@dataclass
class StreamStack:
    env: PipelineEnv
    ingress_port: int
    children: Children
    bucket: str

    @property
    def stream_url(self) -> str:
        host = f"127.0.0.1:{self.ingress_port}"
        return f"ws://{CUSTOMER}:{SECRET}@{host}/v1/{CUSTOMER}/{APP}/stream"


def _plain_s3(env: PipelineEnv) -> Any:
    """boto3 as anyone would set it up, none of the project's code in between."""
    return boto3.client(
        "s3",
        endpoint_url=env.variables["EXOPIPE_S3_ENDPOINT_URL"],
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
async def stack(topics_env: PipelineEnv, tmp_path: Path) -> AsyncIterator[StreamStack]:
    """The ingress and the stream archiver as the CLI starts them, with a bucket of their own."""
    secrets = tmp_path / "secrets.json"
    secrets.write_bytes(json_codec.dumps({"ingress_tenants": {CUSTOMER: [SECRET]}}))
    bucket = f"streams-{uuid.uuid4().hex[:10]}"
    port = free_port("127.0.0.1")
    env = topics_env.with_vars(
        EXOPIPE_SECRETS_FILE=str(secrets),
        EXOPIPE_S3_BUCKET=bucket,
        EXOPIPE_INGRESS_HOST="127.0.0.1",
        EXOPIPE_INGRESS_PORT=str(port),
        EXOPIPE_INGRESS_SPOOL_DIR=str(tmp_path / "spool"),
        EXOPIPE_STREAM_ARCHIVER_SPILL_DIR=str(tmp_path / "spill"),
    )
    s3 = _plain_s3(env)
    await asyncio.to_thread(s3.create_bucket, Bucket=bucket)
    children = Children(tmp_path)
    try:
        children.start("ingress", ["ingress"], env.process_env())
        children.start("stream-archiver", ["worker", "stream-archiver"], env.process_env())
        await children.wait_healthy(f"http://127.0.0.1:{port}/healthz", 60.0)
        yield StreamStack(env, port, children, bucket)
    finally:
        children.stop_all()
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)


@pytest.mark.slow
async def test_30_s_of_streamed_audio_come_back_sample_for_sample(stack: StreamStack) -> None:
    stream_sid = f"stream_{uuid.uuid4().hex[:12]}"
    async with DoubleServer() as double, AsyncDoubleControl(double.base_url) as ctl:
        settings = {"streaming_enabled": True, "streaming_url": stack.stream_url}
        await ctl.register_app(CUSTOMER, APP, "api-token", settings)
        started = await ctl.start_stream(
            CUSTOMER, APP, stream_sid=stream_sid, call_sid="call_e2e", duration_s=30, speed=0
        )
        sent = await ctl.stream(stream_sid, wait_s=25)
    assert sent["state"] == "completed", sent
    assert sent["media_frames"] == 150  # 30 s at 8 kHz in 3,200-byte chunks of 200 ms
    audio = started["audio"]
    expected = ToneAudio(
        audio["seed"], audio["sample_rate"], audio["total_bytes"], audio["tone_hz"]
    )
    assert expected.duration_ms == 30_000

    found = await collect(
        stack.env.settings,
        STREAM_ARCHIVED,
        count=1,
        wait_seconds=90,
        where=lambda key, event: event.data["stream_sid"] == stream_sid,
    )
    logs = "\n".join(f"{c.name}: {c.log_tail(30)}" for c in stack.children.started)
    assert len(found) == 1, logs
    record = found[0][1].data

    s3 = _plain_s3(stack.env)
    obj = await asyncio.to_thread(s3.get_object, Bucket=stack.bucket, Key=record["key"])
    body = obj["Body"].read()
    with wave.open(io.BytesIO(body)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getcomptype() == "NONE"
        assert wav.getnframes() == 30 * 8000
        samples = wav.readframes(wav.getnframes())
    assert samples == expected.pcm()  # every sample, in order

    digest = hashlib.sha256(body).hexdigest()
    day = record["started_at"][:10]  # the stream's start, UTC
    assert abs((datetime.now(UTC) - datetime.fromisoformat(record["started_at"])).days) <= 1
    key = f"streams/customer_id={CUSTOMER}/app_id={APP}/date={day}/{stream_sid}.wav"
    assert record["key"] == key
    assert record["bucket"] == stack.bucket
    assert record["uri"] == f"s3://{stack.bucket}/{key}"
    assert record["sha256"] == digest
    assert obj["Metadata"]["sha256"] == digest
    assert record["size_bytes"] == len(body)
    assert record["duration_ms"] == 30_000
    assert record["call_sid"] == "call_e2e"
    assert (record["customer_id"], record["app_id"]) == (CUSTOMER, APP)
    assert (record["encoding"], record["sample_rate"], record["channels"]) == ("pcm_s16le", 8000, 1)
    assert record["media_frames"] == 150
    assert (record["gaps"], record["missing"], record["duplicates"], record["out_of_order"]) == (
        0,
        0,
        0,
        0,
    )
    assert record["already_archived"] is False
    assert SECRET not in str(record)
