"""kill -9 in the middle of a stream, then a restart: one object, every sample, one record.

The proof of the commit rule: once an earlier stream on the partition is archived, the group's
committed offset moves up to the first record of the stream still open, and never past it, so
the restarted worker reads that stream again from its first record and rebuilds its spill file
from scratch. Then the group is rewound to offset 0 (as a replay would): both streams are read
again, found in S3 by key and sha256, nothing is written, and their records come again with the
same ids and ``already_archived: true``.
"""

from __future__ import annotations

import asyncio
import io
import time
import wave
from pathlib import Path

import pytest

from tests.integration.stream_archiver.conftest import (
    StreamRig,
    make_rig,
    partition_of,
    sids_on_one_partition,
    stream_env,
)
from tests.stream_records import StreamScript, pcm_chunks

pytestmark = pytest.mark.slow
FRAMES = 300  # 30 s of audio at 16 kHz in 3.2 KB chunks


async def _until(check, what: str, rig: StreamRig, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not await check():
        assert rig.worker.alive(), rig.worker.logs()[-3000:]
        assert time.monotonic() < deadline, f"{what}: {rig.worker.logs()[-3000:]}"
        await asyncio.sleep(0.2)


async def test_kill_mid_stream_then_restart_archives_it_once_and_whole(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    rig = await make_rig(stream_env(stack_env, tmp_path), tmp_path)
    first_sid, open_sid = sids_on_one_partition(2, "K")
    partition = partition_of(open_sid)
    first, stream = StreamScript(first_sid), StreamScript(open_sid)
    audio = pcm_chunks(FRAMES, seed=3)
    half = FRAMES // 2
    rig.worker.start()
    try:
        await rig.produce(
            [first.connected(), first.start(), *map(first.media, pcm_chunks(5)), first.closed()]
        )
        (offset_of_open, *_) = await rig.produce(
            [stream.connected(), stream.start(sample_rate=16000), *map(stream.media, audio[:half])]
        )
        await rig.archived([first_sid], count=1, wait=60)

        async def committed_up_to_the_open_stream() -> bool:
            return await rig.committed(partition) == offset_of_open

        async def spill_growing() -> bool:
            files = rig.spill_files()
            return bool(files) and files[0].stat().st_size > 44 + 100 * 3200

        await _until(committed_up_to_the_open_stream, "commit up to the open stream", rig)
        await _until(spill_growing, "the open stream's spill file", rig)
        rig.worker.kill()
        assert await rig.committed(partition) == offset_of_open  # never past its first record
        assert rig.keys() == [first_key := _key(first_sid)]

        await rig.produce([*map(stream.media, audio[half:]), stream.stop(), stream.closed()])
        rig.worker.start()
        found = await rig.archived([open_sid], count=1, wait=120)
        assert len(found) == 1, rig.worker.logs()[-3000:]
        record = found[0].data
        assert rig.keys() == sorted([first_key, _key(open_sid)])
        blob, answer = await asyncio.to_thread(rig.object, _key(open_sid))
        with wave.open(io.BytesIO(blob)) as wav:
            assert wav.getframerate() == 16000
            assert wav.readframes(wav.getnframes()) == b"".join(audio)
        assert answer["Metadata"]["sha256"] == record["sha256"]
        assert (record["media_frames"], record["already_archived"]) == (FRAMES, False)
        logs = rig.worker.logs()
        assert "removed 1 spill directories left by stopped workers" in logs
        modified = {
            key: rig.s3.head_object(Bucket=rig.bucket, Key=key)["ETag"] for key in rig.keys()
        }

        # A replay of the whole partition: found by HEAD, nothing written, the same records.
        rig.worker.stop()
        await rig.rewind(partition)
        rig.worker.start()
        again = await rig.archived([first_sid, open_sid], count=4, wait=120)
        assert len(again) == 4, rig.worker.logs()[-3000:]
        ids: dict[str, set[str]] = {}
        for event in again:
            ids.setdefault(event.data["stream_sid"], set()).add(event.id)
        assert all(len(v) == 1 for v in ids.values()), ids  # one CloudEvent id per stream
        assert [e.data["already_archived"] for e in again[2:]] == [True, True]
        assert {e.data["sha256"] for e in again[2:]} == {e.data["sha256"] for e in again[:2]}
        assert {k: rig.s3.head_object(Bucket=rig.bucket, Key=k)["ETag"] for k in rig.keys()} == (
            modified
        )
        assert rig.s3.list_multipart_uploads(Bucket=rig.bucket).get("Uploads", []) == []
    finally:
        rig.worker.stop()
        await asyncio.to_thread(rig.drop)


def _key(sid: str) -> str:
    return f"streams/customer_id=acme/app_id=app1/date=2025-03-01/{sid}.wav"
