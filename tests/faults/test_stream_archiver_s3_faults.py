"""The stream archiver against a failing object store: S3 slowed through the fault proxy for the
whole run, and S3 slowed, then killed (SIGKILL) while the streams' multipart uploads are on the
wire, then started again.

Outcome: every stream ends as exactly one object holding every sample it sent (read back with
plain boto3 and Python's ``wave`` module), one archived record id per stream, no incomplete
multipart upload, no spill file left, and the worker up throughout. The S3 server is the
private S3Proxy of the recording archiver's object-store faults; Kafka is the shared stack's.
"""

from __future__ import annotations

import asyncio
import io
import signal
import time
import uuid
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.faults.test_object_store_faults import private_s3, proxy
from tests.integration.stream_archiver.conftest import StreamRig, make_rig, stream_env
from tests.integration.stream_archiver.test_stream_archive import _no_spill_files_left
from tests.stream_records import StreamScript, pcm_chunks
from topics.events import CloudEvent
from workers.localstack.manager import LocalStack
from workers.s3 import new_s3_client

from .tcp_proxy import FaultProxy

private_s3 = private_s3  # the module's own S3Proxy (a fixture)  # noqa: PLW0127
proxy = proxy  # the fault proxy in front of it (a fixture)  # noqa: PLW0127
STREAMS = 3
FRAMES = 100
CHUNK = 64_000  # 6.4 MB a stream: a multipart upload of two 5 MiB parts
PART = 5 * 1024 * 1024
OUTAGE_S = 10


@pytest.mark.parametrize("outage_s", [0, OUTAGE_S], ids=["slow", "slow_then_down"])
async def test_s3_slow_or_down_during_the_uploads_loses_no_sample(
    stack_env: dict[str, str],
    tmp_path: Path,
    proxy: FaultProxy,
    private_s3: LocalStack,
    outage_s: int,
) -> None:
    s3_url = f"http://127.0.0.1:{proxy.port}"
    env = stream_env(
        stack_env,
        tmp_path,
        EXOPIPE_S3_ENDPOINT_URL=s3_url,
        EXOPIPE_STREAM_ARCHIVER_PART_SIZE=str(PART),
    )
    rig = await make_rig(env, tmp_path)
    # Straight to S3Proxy, past the slow proxy, to see uploads open while they are on the wire.
    direct_url = f"http://127.0.0.1:{private_s3.port('s3proxy')}"
    direct = new_s3_client(env.with_vars(EXOPIPE_S3_ENDPOINT_URL=direct_url).settings)
    run = uuid.uuid4().hex[:8]
    audio = {f"F-{run}-{n}": pcm_chunks(FRAMES, chunk_bytes=CHUNK, seed=n) for n in range(STREAMS)}
    rig.worker.start()
    try:
        proxy.latency(0.05)  # per 64 KiB read: an upload takes 5 s or more
        await rig.produce([event for sid, chunks in audio.items() for event in _call(sid, chunks)])
        await _until_an_upload_is_open(rig, direct)
        if outage_s:
            await asyncio.to_thread(private_s3.stop_service, "s3proxy", signal.SIGKILL)
            try:
                await asyncio.sleep(outage_s)
            finally:
                await asyncio.to_thread(private_s3.start_service, "s3proxy")
        found = await rig.archived(audio, count=STREAMS, wait=180)
        proxy.passthrough()
        found = await rig.archived(audio, count=len(found) + 1, wait=3)  # copies show up here
        assert rig.worker.alive(), rig.worker.logs()[-3000:]
        await check_one_whole_object_each(rig, audio, found)
        logs = rig.worker.logs()
        retried, stale = logs.count("trying again"), logs.count("stale multipart upload")
        print(f"outage retries logged {retried}, stale uploads aborted {stale}")
        if outage_s:
            assert retried > 0  # the outage outlasted the attempts of an upload under way
        await _no_spill_files_left(rig)
    finally:
        proxy.passthrough()
        rig.worker.stop()
        await asyncio.to_thread(rig.drop)


def _call(sid: str, chunks: list[bytes]) -> list[CloudEvent]:
    script = StreamScript(sid)
    return [script.connected(), script.start(), *map(script.media, chunks), script.stop(),
            script.closed()]  # fmt: skip


async def _until_an_upload_is_open(rig: StreamRig, direct: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        answer = await asyncio.to_thread(direct.list_multipart_uploads, Bucket=rig.bucket)
        if answer.get("Uploads"):
            return
        assert rig.worker.alive(), rig.worker.logs()[-3000:]
        assert time.monotonic() < deadline, f"no upload began: {rig.worker.logs()[-3000:]}"
        await asyncio.sleep(0.1)


async def check_one_whole_object_each(
    rig: StreamRig, audio: Mapping[str, list[bytes]], found: list[CloudEvent]
) -> None:
    """Each stream of ``audio`` (sid -> its chunks) is one object with exactly those samples,
    described by its one archived record id; nothing else is in the bucket, no upload open."""
    ids: dict[str, set[str]] = {}
    for event in found:
        ids.setdefault(event.data["stream_sid"], set()).add(event.id)
    print(f"archived {len(ids)}/{len(audio)}, copies of records {len(found) - len(ids)}")
    assert set(ids) == set(audio), rig.worker.logs()[-3000:]
    assert all(len(v) == 1 for v in ids.values()), ids  # a copy is the same record
    latest = {event.data["stream_sid"]: event.data for event in found}
    assert await asyncio.to_thread(rig.keys) == sorted(r["key"] for r in latest.values())
    uploads = await asyncio.to_thread(rig.s3.list_multipart_uploads, Bucket=rig.bucket)
    assert uploads.get("Uploads", []) == []
    for sid, chunks in audio.items():
        record = latest[sid]
        blob, answer = await asyncio.to_thread(rig.object, record["key"])
        with wave.open(io.BytesIO(blob)) as wav:
            assert wav.readframes(wav.getnframes()) == b"".join(chunks)
        assert answer["Metadata"]["sha256"] == record["sha256"]
        assert (record["media_frames"], record["end_reason"]) == (len(chunks), "stop_received")
