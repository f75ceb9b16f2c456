"""A real ``exopipe ingress`` process killed (SIGKILL) in the middle of a live audio stream, then
started again: the stream's ``closed`` (reason ``ingress_restarted``) is on Kafka within seconds
of the restart, so the stream archiver need not wait its quiet period. The broker is the shared
stack's: only the ingress, a process of the test's own, is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import aiohttp

from tests.conftest import PipelineEnv
from tests.integration.ingress.conftest import SECRET, SECRETS
from tests.integration.ingress.test_spool_restart import IngressProcess, free_port
from tests.integration.kafka_io import collect
from topics.catalog import STREAM_AUDIO, STREAM_EVENT
from workers.exotel_double.stream_frames import media_frame, start_frame
from workers.ingress.app import JOURNAL_DIR
from workers.ingress.stream_restart import RESTART_FRAME_INDEX

from .test_stream_broker_faults import chunk, new_call

MEDIA = 10
# Far below the stream archiver's quiet period (600 s): the restart writes closed at start-up.
PROMPTLY_S = 15.0


def ingress_env(topics_env: PipelineEnv, tmp_path: Path) -> PipelineEnv:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps(SECRETS))
    return topics_env.with_vars(
        EXOPIPE_SECRETS_FILE=str(secrets_file),
        EXOPIPE_INGRESS_PORT=str(free_port()),
        EXOPIPE_INGRESS_SPOOL_DIR=str(tmp_path / "spool"),
        EXOPIPE_INGRESS_RATE_LIMIT_PER_S="0",
    )


async def test_a_killed_ingress_closes_its_open_streams_when_it_restarts(topics_env, tmp_path):
    env = ingress_env(topics_env, tmp_path)
    settings = env.settings
    ingress = IngressProcess(env, tmp_path / "ingress.log")
    call = new_call()
    url = f"ws://127.0.0.1:{ingress.port}/v1/cust_it/app_it/stream?token={SECRET}"
    await asyncio.to_thread(ingress.start, "/readyz")
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url)
            await ws.send_str(json.dumps(start_frame(1, call, 8000)))
            for n in range(MEDIA):
                frame = media_frame(n + 2, call.stream_sid, n + 1, 100 * n, chunk(n))
                await ws.send_str(json.dumps(frame))
            before = await read(settings, STREAM_AUDIO, call.stream_sid, 1 + MEDIA)
            assert len(before) == 1 + MEDIA, ingress.log()
            assert list((tmp_path / "spool" / JOURNAL_DIR).glob("*.open")), "not journaled"
            ingress.kill()  # SIGKILL, mid-stream: no closed written
            with contextlib.suppress(ConnectionError):
                await ws.close()
        restarted = time.monotonic()
        await asyncio.to_thread(ingress.start, "/readyz")
        ready = time.monotonic()
        lifecycle = await read(settings, STREAM_EVENT, call.stream_sid, 2, PROMPTLY_S)
        took = time.monotonic() - restarted
        print(f"restart to ready {ready - restarted:.2f} s, to closed on Kafka {took:.2f} s")
    finally:
        ingress.kill()
    assert [e.data["event"] for e in lifecycle] == ["start", "closed"], ingress.log()
    closed = lifecycle[-1].data
    assert closed["connection_id"] == before[0].data["connection_id"]
    assert closed["frame_index"] == RESTART_FRAME_INDEX
    assert (closed["closed"]["reason"], closed["closed"]["close_code"]) == (
        "ingress_restarted", 1006)  # fmt: skip
    assert took < PROMPTLY_S
    assert not list((tmp_path / "spool" / JOURNAL_DIR).glob("*.open"))


async def read(settings, spec, stream_sid: str, count: int, within: float = 30.0) -> list:
    found = await collect(
        settings,
        spec,
        count=count,
        wait_seconds=within,
        where=lambda key, _: key == stream_sid.encode(),
    )
    return [event for _, event in found]
