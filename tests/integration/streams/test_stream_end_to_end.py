"""Live audio through the real stack: the Exotel double streams 30 s of audio to the real ingress
(a subprocess), the real stream archiver (a subprocess) writes the WAV, and an independent
client (plain boto3 and Python's ``wave``) reads it back: the samples are the ones sent."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from tests.integration.stream_stack import (
    APP,
    CUSTOMER,
    SECRET,
    StreamStack,
    plain_s3,
    running_stream_stack,
)
from topics.catalog import STREAM_ARCHIVED
from workers.exotel_double.control import AsyncDoubleControl
from workers.exotel_double.runner import DoubleServer
from workers.exotel_double.stream_audio import ToneAudio


@pytest.fixture
async def stack(topics_env: PipelineEnv, tmp_path: Path) -> AsyncIterator[StreamStack]:
    async with running_stream_stack(topics_env, tmp_path) as running:
        yield running


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
    assert len(found) == 1, stack.logs()
    record = found[0][1].data

    s3 = plain_s3(stack.env)
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
