"""A real stream archiver on the real stack: streams produced to Kafka come back from S3 as WAVs
whose samples are exactly the audio sent (without the duplicate, with the gap left out), read
with plain boto3 and Python's ``wave`` module, each with its archived record."""

from __future__ import annotations

import asyncio
import io
import struct
import wave
from collections.abc import AsyncIterator

import pytest

from tests.integration.stream_archiver.conftest import (
    StreamRig,
    make_rig,
    sha256,
    sids_on_one_partition,
    stream_env,
)
from tests.stream_records import StreamScript, pcm_chunks
from topics.events import CloudEvent

QUIET_S = 4


@pytest.fixture(scope="module")
async def rig(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StreamRig]:
    home = tmp_path_factory.mktemp("stream-archiver")
    env = stream_env(stack_env, home, EXOPIPE_STREAM_ARCHIVER_QUIET_SECONDS=str(QUIET_S))
    made = await make_rig(env, home)
    made.worker.start()
    try:
        yield made
    finally:
        made.worker.stop()
        await asyncio.to_thread(made.drop)


def _key(sid: str) -> str:
    return f"streams/customer_id=acme/app_id=app1/date=2025-03-01/{sid}.wav"


async def test_two_interleaved_streams_come_back_sample_for_sample(rig: StreamRig) -> None:
    pcm_sid, mulaw_sid = sids_on_one_partition(2, "S")
    pcm, mulaw = StreamScript(pcm_sid), StreamScript(mulaw_sid)
    pcm_audio = pcm_chunks(40, seed=7)
    mulaw_audio = pcm_chunks(20, chunk_bytes=1600, seed=8)
    records: list[CloudEvent] = [
        pcm.connected(), pcm.start("CA-pcm"), mulaw.connected(),
        mulaw.start("CA-mulaw", encoding="audio/x-mulaw;rate=8000"),
    ]  # fmt: skip
    for n, chunk in enumerate(pcm_audio):
        if n == 10:
            records.append(pcm.media(chunk, seq=pcm._highest + 3))  # 2 numbers lost on the way
        elif n == 20:
            records += [pcm.media(chunk), pcm.media(chunk, seq=pcm._highest)]  # sent twice
        else:
            records.append(pcm.media(chunk))
        if n < len(mulaw_audio):
            records.append(mulaw.media(mulaw_audio[n]))
    records += [mulaw.stop(), mulaw.closed(), pcm.stop(), pcm.closed()]
    await rig.produce(records)

    found = await rig.archived([pcm_sid, mulaw_sid], count=2, wait=60)
    assert rig.worker.alive(), rig.worker.logs()[-3000:]
    by_sid = {event.data["stream_sid"]: event.data for event in found}
    assert set(by_sid) == {pcm_sid, mulaw_sid}, rig.worker.logs()[-3000:]

    blob, answer = await asyncio.to_thread(rig.object, _key(pcm_sid))
    with wave.open(io.BytesIO(blob)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.readframes(wav.getnframes()) == b"".join(pcm_audio)
    record = by_sid[pcm_sid]
    assert answer["Metadata"]["sha256"] == record["sha256"] == sha256(blob)
    assert answer["ContentType"] == "audio/wav"
    assert record["key"] == _key(pcm_sid)
    assert record["uri"] == f"s3://{rig.bucket}/{_key(pcm_sid)}"
    assert record["size_bytes"] == len(blob) == 44 + 40 * 3200
    assert record["duration_ms"] == 40 * 1600 * 1000 // 8000
    assert (record["encoding"], record["sample_rate"], record["call_sid"]) == (
        "pcm_s16le", 8000, "CA-pcm",
    )  # fmt: skip
    assert (record["media_frames"], record["gaps"], record["missing"]) == (40, 1, 2)
    assert (record["duplicates"], record["out_of_order"]) == (1, 0)
    assert (record["end_reason"], record["already_archived"]) == ("stop_received", False)
    assert record["started_at"] == records[1].data["received_at"]  # its start record
    assert record["ended_at"] == records[-1].data["received_at"]

    blob, answer = await asyncio.to_thread(rig.object, _key(mulaw_sid))
    # Python's wave module reads PCM only: the mu-law header is checked field by field.
    assert struct.unpack("<4sI4s", blob[:12]) == (b"RIFF", len(blob) - 8, b"WAVE")
    assert struct.unpack("<4sIHHIIHH", blob[12:36]) == (b"fmt ", 18, 7, 1, 8000, 8000, 1, 8)
    assert struct.unpack("<4sI", blob[50:58]) == (b"data", 20 * 1600)
    assert blob[58:] == b"".join(mulaw_audio)
    record = by_sid[mulaw_sid]
    assert (record["encoding"], record["duration_ms"]) == ("mulaw", 4000)
    assert answer["Metadata"]["sha256"] == record["sha256"] == sha256(blob)
    await _no_spill_files_left(rig)


async def test_a_stream_that_never_closes_is_archived_as_abandoned_after_the_quiet_period(
    rig: StreamRig,
) -> None:
    (sid,) = sids_on_one_partition(1, "A")
    crashed = StreamScript(sid)
    audio = pcm_chunks(12, seed=9)
    await rig.produce([crashed.connected(), crashed.start(), *map(crashed.media, audio)])
    found = await rig.archived([sid], count=1, wait=0.5)
    assert found == []  # not before the quiet period
    (record,) = await rig.archived([sid], count=1, wait=QUIET_S + 30)
    assert record.data["end_reason"] == "abandoned", rig.worker.logs()[-3000:]
    assert record.data["media_frames"] == 12
    blob, _ = await asyncio.to_thread(rig.object, record.data["key"])
    with wave.open(io.BytesIO(blob)) as wav:
        assert wav.readframes(wav.getnframes()) == b"".join(audio)
    await _no_spill_files_left(rig)


async def _no_spill_files_left(rig: StreamRig) -> None:
    for _ in range(20):
        if not rig.spill_files():
            return
        await asyncio.sleep(0.1)
    assert rig.spill_files() == []
