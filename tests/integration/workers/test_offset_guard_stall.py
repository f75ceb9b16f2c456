"""The continuity guard's stall check on the real broker, in a real faust worker: records faust
dropped with nothing after them in their partition are fetched again and processed, in order,
once each. Without the check they would never be processed (nothing later reveals the gap)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import read_raw
from tests.integration.workers.stall_probe import DROP
from workers.kafka import admin_client, started_producer
from workers.offset_guard import STALL_AFTER_S

ROOT = Path(__file__).resolve().parents[3]


async def _sink_values(env: PipelineEnv, sink: str, want: int, within_s: float) -> list[bytes]:
    bootstrap = env.settings.kafka_bootstrap
    records = await read_raw(
        bootstrap, sink, until=lambda got: len(got) >= want, wait_seconds=within_s
    )
    return [record.value for record in records]


def _start_probe(env: PipelineEnv, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.workers.stall_probe", *args],
            cwd=ROOT,
            env=env.process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
async def test_records_dropped_at_the_end_of_a_partition_are_fetched_again(
    pipeline_env: PipelineEnv, tmp_path: Path
) -> None:
    settings = pipeline_env.settings
    run = uuid.uuid4().hex[:10]
    prefix = settings.topic_prefix
    app_id, source, sink = f"stall-{run}", f"{prefix}stall-{run}.in", f"{prefix}stall-{run}.out"
    async with admin_client(settings) as admin:
        await admin.create_topics([NewTopic(source, 1, 1), NewTopic(sink, 1, 1)])

    async def send(values: list[bytes]) -> None:
        async with started_producer(settings) as producer:
            for value in values:
                await producer.send_and_wait(source, value, key=b"k")

    log_path = tmp_path / "probe.log"
    worker = _start_probe(pipeline_env, [app_id, source, sink], log_path)
    try:
        await send([b"a", DROP])
        assert await _sink_values(pipeline_env, sink, 2, within_s=60) == [b"a", DROP]
        # faust now skips what follows in the partition; nothing after it reveals the gap.
        await send([b"b", b"c", b"d"])
        copied = await _sink_values(pipeline_env, sink, 5, within_s=STALL_AFTER_S + 30)
        assert copied == [b"a", DROP, b"b", b"c", b"d"], log_path.read_text(errors="replace")
        # And nothing is copied twice after the seek.
        await asyncio.sleep(3)
        assert await _sink_values(pipeline_env, sink, 6, within_s=2) == copied
        assert "seeking back to 2" in log_path.read_text(errors="replace")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
