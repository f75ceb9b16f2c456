"""A faust worker's /healthz, /readyz and /metrics, the endpoints deploy/k8s probes, and the
per-topic metrics its sensor keeps."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import PipelineEnv
from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT
from workers.demo.environment import free_port
from workers.kafka import started_producer


async def _send_unreadable_command(env: PipelineEnv) -> None:
    """A command that is not JSON: the worker answers it with an ``invalid`` result, no API."""
    settings = env.settings
    async with started_producer(settings) as producer:
        name = settings.topic(SETTINGS_COMMAND).name
        await producer.send_and_wait(name, b"not json", key=b"acme/app", partition=0)


@pytest.mark.slow
def test_worker_serves_health_readiness_and_metrics(pipeline_env: PipelineEnv) -> None:
    port = free_port("127.0.0.1")
    env = pipeline_env.with_vars(EXOPIPE_WORKER_HTTP_PORT=str(port)).process_env()
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "workers.cli", "worker", "settings"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                live = httpx.get(f"{base}/healthz", timeout=2)
                ready = httpx.get(f"{base}/readyz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.3)
                continue
            assert live.status_code == 200
            if ready.status_code == 200:
                break
            time.sleep(0.3)
        assert ready is not None and ready.json() == {"ready": True}
        asyncio.run(_send_unreadable_command(pipeline_env))
        command = pipeline_env.settings.topic(SETTINGS_COMMAND).name
        result = pipeline_env.settings.topic(SETTINGS_RESULT).name
        wanted = [
            f'exopipe_worker_consumed_total{{topic="{command}",worker="settings"}} 1.0',
            f'exopipe_worker_processing_seconds_count{{topic="{command}",worker="settings"}} 1.0',
            f'exopipe_worker_consumer_lag{{partition="0",topic="{command}",worker="settings"}} 0.0',
            'exopipe_worker_in_flight{worker="settings"} 0.0',
            # The unreadable command's one result, sent by the worker's outbox, counts too.
            f'exopipe_worker_produced_total{{topic="{result}",worker="settings"}} 1.0',
        ]
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = httpx.get(f"{base}/metrics", timeout=2).text
            if all(line in text for line in wanted):
                break
            time.sleep(0.5)
        assert "process_cpu_seconds_total" in text
        for line in wanted:
            assert line in text
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
