"""A recording whose host was down lands on exotel.recording.failed; once the host is back,
``exopipe dlq replay`` re-archives it, and a second replay neither downloads nor stores it again."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from topics.catalog import RECORDING_ARCHIVED, RECORDING_FAILED, WEBHOOK_RECORDING_READY
from topics.events import make_event
from workers.demo.environment import free_port
from workers.demo.processes import Children
from workers.kafka import produce_event, started_producer

BODY = bytes(range(256)) * 64


def _ready_event(call_sid: str, url: str):  # noqa: ANN202 - a CloudEvent
    data = {
        "event": "recording_ready",
        "call_sid": call_sid,
        "customer_id": "acme",
        "app_id": "app1",
        "timestamp": "2025-03-01T10:00:00.000Z",
        "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "from": "+919800000001",
        "to": "+918000000001",
        "direction": "inbound",
        "status": "completed",
        "source_format": "json",
        "original": {"RecordingUrl": url},
        "recording_url": url,
        "duration": 61,
    }
    return make_event(
        WEBHOOK_RECORDING_READY, data, source="test", customer_id="acme", app_id="app1"
    )


async def _exopipe(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


@pytest.mark.slow
async def test_replay_re_archives_a_recording_whose_host_was_down(
    topics_env: PipelineEnv, unique, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    run = topics_env.with_vars(
        EXOPIPE_RECORDING_ALLOW_INSECURE="1",
        EXOPIPE_RECORDING_HOSTS="127.0.0.1",
        EXOPIPE_RECORDING_PORTS=str(port),
        EXOPIPE_RECORDING_ATTEMPTS="2",
        EXOPIPE_RECORDING_RETRY_BASE_DELAY="0.1",
        EXOPIPE_RECORDING_RETRY_MAX_DELAY="0.2",
        EXOPIPE_RECORDING_CONNECT_TIMEOUT="1",
    )
    settings, env = run.settings, run.process_env()
    sid = unique("call")
    url = f"http://127.0.0.1:{port}/{sid}.mp3"
    children = Children(tmp_path)
    server: web.AppRunner | None = None
    downloads = 0
    try:
        children.start("archiver", ["worker", "archiver"], env)
        async with started_producer(settings) as producer:
            event = _ready_event(sid, url)
            await produce_event(producer, settings.topic(WEBHOOK_RECORDING_READY), event, sid)

        def mine(key: bytes | None, event) -> bool:  # noqa: ANN001
            return event.data["call_sid"] == sid

        failed = await collect(settings, RECORDING_FAILED, count=1, wait_seconds=90, where=mine)
        assert len(failed) == 1, "the archiver did not dead-letter the recording"
        assert failed[0][1].data["outcome"] == "failed"

        status, listing = await _exopipe(
            env, "dlq", "list", "--topic", RECORDING_FAILED.name, "--since", "30m"
        )
        assert status == 0 and sid in listing and failed[0][1].data["reason"] in listing

        async def serve(request: web.Request) -> web.Response:
            nonlocal downloads
            downloads += 1
            return web.Response(body=BODY, content_type="audio/mpeg")

        app = web.Application()
        app.router.add_get(f"/{sid}.mp3", serve)
        server = web.AppRunner(app)
        await server.setup()
        await web.TCPSite(server, "127.0.0.1", port).start()  # the host is back

        status, dry = await _exopipe(
            env, "dlq", "replay", "--topic", RECORDING_FAILED.name, "--dry-run"
        )
        assert status == 0 and f"would replay {sid}" in dry
        status, out = await _exopipe(env, "dlq", "replay", "--topic", RECORDING_FAILED.name)
        assert status == 0 and f"replayed {sid}" in out and "(replaycount 1)" in out

        archived = await collect(settings, RECORDING_ARCHIVED, count=1, wait_seconds=60, where=mine)
        assert len(archived) == 1, "the replay did not re-archive the recording"
        assert archived[0][1].data["sha256"] == hashlib.sha256(BODY).hexdigest()
        assert archived[0][1].data["already_archived"] is False

        replayed = await collect(
            settings, WEBHOOK_RECORDING_READY, count=2, wait_seconds=5, where=mine
        )
        assert [e.extensions.get("replaycount") for _, e in replayed] == [None, 1]

        status, out = await _exopipe(env, "dlq", "replay", "--topic", RECORDING_FAILED.name)
        assert status == 0
        archived = await collect(settings, RECORDING_ARCHIVED, count=2, wait_seconds=60, where=mine)
        assert [e.data["already_archived"] for _, e in archived] == [False, True]
        assert len({e.data["uri"] for _, e in archived}) == 1
        assert downloads == 1  # the second replay found the object by HEAD + sha256
    finally:
        children.stop_all()
        if server is not None:
            await server.cleanup()
