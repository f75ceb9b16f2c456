"""``track: both`` through the real stack: the Exotel double streams 30 s of a call with the
caller's and the agent's audio to the real ingress, the real stream archiver writes one WAV, and
an independent client (plain boto3 and Python's ``wave``) reads back two channels, each exactly
the track that was sent on it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
import wave
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from tests.integration.stream_stack import (
    APP,
    CUSTOMER,
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


def _tone(described: dict[str, Any]) -> ToneAudio:
    return ToneAudio(
        described["seed"], described["sample_rate"], described["total_bytes"], described["tone_hz"]
    )


@pytest.mark.slow
async def test_30_s_of_a_call_with_both_tracks_come_back_as_two_channels(
    stack: StreamStack,
) -> None:
    stream_sid = f"stream_{uuid.uuid4().hex[:12]}"
    async with DoubleServer() as double, AsyncDoubleControl(double.base_url) as ctl:
        settings = {"streaming_enabled": True, "streaming_url": stack.stream_url}
        await ctl.register_app(CUSTOMER, APP, "api-token", settings)
        started = await ctl.start_stream(
            CUSTOMER, APP, stream_sid=stream_sid, call_sid="call_both", duration_s=30,
            speed=0, track="both",
        )  # fmt: skip
        sent = await ctl.stream(stream_sid, wait_s=25)
    assert sent["state"] == "completed", sent
    assert sent["media_frames"] == 300  # 150 chunks of 200 ms, on each track
    caller, agent = _tone(started["audio"]), _tone(started["outbound_audio"])
    assert caller.duration_ms == agent.duration_ms == 30_000

    found = await collect(
        stack.env.settings, STREAM_ARCHIVED, count=1, wait_seconds=90,
        where=lambda _key, event: event.data["stream_sid"] == stream_sid,
    )  # fmt: skip
    assert len(found) == 1, stack.logs()
    record = found[0][1].data

    s3 = plain_s3(stack.env)
    obj = await asyncio.to_thread(s3.get_object, Bucket=stack.bucket, Key=record["key"])
    body = obj["Body"].read()
    with wave.open(io.BytesIO(body)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        assert wav.getcomptype() == "NONE"
        assert wav.getnframes() == 30 * 8000
        samples = array("h", wav.readframes(wav.getnframes()))
    assert samples[0::2].tobytes() == caller.pcm()  # channel 1: the caller, every sample
    assert samples[1::2].tobytes() == agent.pcm()  # channel 2: the agent, every sample

    digest = hashlib.sha256(body).hexdigest()
    assert record["sha256"] == obj["Metadata"]["sha256"] == digest
    assert record["size_bytes"] == len(body) == 44 + 30 * 8000 * 2 * 2
    assert (record["channels"], record["duration_ms"], record["media_frames"]) == (2, 30_000, 300)
    assert (record["encoding"], record["sample_rate"], record["call_sid"]) == (
        "pcm_s16le", 8000, "call_both",
    )  # fmt: skip
    assert (record["gaps"], record["missing"], record["duplicates"], record["out_of_order"]) == (
        0, 0, 0, 0,
    )  # fmt: skip
    assert record["end_reason"] == "stop_received"
