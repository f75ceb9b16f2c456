"""kill -9 in the middle of a 200 MiB multipart upload, then restart: one object, nothing left.

This is the proof that offsets do not move past an unfinished event (faust acks and commits are
held until the outcome is recorded, in offset order) and that a crashed upload is cleaned up: the
redelivered event aborts the stale multipart upload before uploading again.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.integration.archiver.conftest import (
    ArchiverRig,
    archiver_env,
    collect_outcomes,
    make_rig,
)
from workers.exotel_double.control import DoubleControl

MiB = 1024 * 1024
pytestmark = pytest.mark.slow


def _parts_uploaded(rig: ArchiverRig, key: str) -> int:
    for upload in rig.incomplete_uploads():
        if upload["Key"] == key:
            parts = rig.s3.list_parts(Bucket=rig.bucket, Key=key, UploadId=upload["UploadId"])
            return len(parts.get("Parts", []))
    return 0


async def test_kill_mid_upload_then_restart_leaves_exactly_one_object(
    stack_env: dict[str, str], double: DoubleControl, tmp_path: Path
) -> None:
    env = archiver_env(stack_env, tmp_path, double, EXOPIPE_RECORDING_PART_SIZE=str(5 * MiB))
    rig = await make_rig(env, double, tmp_path)
    name = rig.name("big")
    served = rig.register(name, 200 * MiB)
    call_sid = f"CA{name}"
    key = f"recordings/customer_id=acme/app_id=app1/date=2025-03-01/{call_sid}.mp3"
    rig.worker.start()
    try:
        await rig.send((call_sid, rig.url(name)))
        deadline = time.monotonic() + 120
        while _parts_uploaded(rig, key) < 2:
            assert rig.worker.alive(), rig.worker.logs()[-3000:]
            assert time.monotonic() < deadline, "the upload never started"
            await asyncio.sleep(0.05)
        rig.worker.kill()
        assert len(rig.incomplete_uploads()) == 1  # the crash left it behind...
        assert rig.keys() == []  # ...and no object is visible
        assert await collect_outcomes(rig.settings, call_sid, count=1, wait_seconds=2) == []

        rig.worker.start()
        found = await collect_outcomes(rig.settings, call_sid, count=1, wait_seconds=180)
        assert [kind for kind, _ in found] == ["archived"], rig.worker.logs()[-3000:]
        assert found[0][1].data["sha256"] == served["sha256"]
        assert rig.keys() == [key]
        assert rig.incomplete_uploads() == []
        assert await asyncio.to_thread(rig.object_sha256, key) == served["sha256"]
        assert rig.fetches(name) == 2
        assert "aborted 1 stale multipart upload" in rig.worker.logs()
    finally:
        rig.worker.stop()
        rig.drop_bucket()
