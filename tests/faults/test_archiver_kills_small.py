"""The archiver killed with SIGKILL three times while archiving 500 small recordings (200 KiB,
the size Exotel's MP3s have) with concurrency 32, restarted each time: exactly 500 objects with
the right sha256, no incomplete multipart upload, and every event has an archived record
(duplicate records counted apart, same ids). With 32 in hand at each kill, this is the single-PUT
path (a recording of one part or less) killed with its PUTs, HEADs and records in flight.

Runs on the shared stack (nothing of it is killed, only our own worker process).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.integration.archiver.conftest import archiver_env, double, make_rig
from tests.integration.kafka_io import collect
from topics.catalog import RECORDING_ARCHIVED, RECORDING_FAILED
from workers.exotel_double.control import DoubleControl

double = double  # the shared double's control client (a session fixture)  # noqa: PLW0127
RECORDINGS = 500
SIZE = 200 * 1024
KILL_AFTER = (40, 180, 330)  # distinct archived recordings seen before each kill


async def test_three_kills_while_archiving_500_small_recordings_32_at_once(
    stack_env: dict[str, str], double: DoubleControl, tmp_path: Path
) -> None:
    env = archiver_env(stack_env, tmp_path, double, EXOPIPE_RECORDING_CONCURRENCY="32")
    rig = await make_rig(env, double, tmp_path)
    names = [rig.name(f"s{i}") for i in range(RECORDINGS)]
    served = {f"CA{name}": rig.register(name, SIZE)["sha256"] for name in names}
    ours = set(served)

    def mine(_key: bytes | None, event) -> bool:  # type: ignore[no-untyped-def]
        return event.data.get("call_sid") in ours

    async def archived_calls(count: int, wait: float) -> list[str]:
        found = await collect(
            rig.settings, RECORDING_ARCHIVED, count=count, wait_seconds=wait, where=mine
        )
        return [e.data["call_sid"] for _, e in found]

    rig.worker.start()
    kills = 0
    try:
        await rig.send(*((f"CA{name}", rig.url(name)) for name in names))
        deadline = time.monotonic() + 150
        for threshold in KILL_AFTER:
            while len(set(await archived_calls(threshold, 1))) < threshold:
                assert time.monotonic() < deadline, rig.worker.logs()[-3000:]
                assert rig.worker.alive(), rig.worker.logs()[-3000:]
            rig.worker.kill()
            kills += 1
            rig.worker.start()
        # Duplicates count towards a reader's total, so wait on the distinct calls.
        calls = await archived_calls(RECORDINGS, 30)
        deadline = time.monotonic() + 120
        while set(calls) != ours and time.monotonic() < deadline:
            calls = await archived_calls(len(calls) + 1, 5)
        calls = await archived_calls(len(calls) + 1, 3)  # one more: duplicates show up here
        failed = await collect(rig.settings, RECORDING_FAILED, count=1, wait_seconds=1, where=mine)
        duplicates = len(calls) - len(set(calls))
        print(f"kills {kills}, archived {len(set(calls))}/{RECORDINGS}, duplicates {duplicates}")
        assert set(calls) == ours, f"{len(ours - set(calls))} recordings have no record"
        assert failed == []
        found = await collect(
            rig.settings, RECORDING_ARCHIVED, count=len(calls), wait_seconds=5, where=mine
        )
        ids: dict[str, set[str]] = {}
        for _, event in found:
            assert event.data["sha256"] == served[event.data["call_sid"]]
            ids.setdefault(event.data["call_sid"], set()).add(event.id)
        # A re-sent record is the same record: one CloudEvent id per recording.
        assert all(len(v) == 1 for v in ids.values()), ids
        keys = await asyncio.to_thread(rig.keys)
        assert len(keys) == RECORDINGS
        assert await asyncio.to_thread(rig.incomplete_uploads) == []
        by_key = {e.data["key"]: e.data["sha256"] for _, e in found}
        for key in keys:
            assert await asyncio.to_thread(rig.object_sha256, key) == by_key[key]
    finally:
        rig.worker.stop()
        await asyncio.to_thread(rig.drop_bucket)
