"""Running the small faust probe workers of these tests, and the topics they read and write."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka.admin import NewTopic

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import read_raw
from workers.kafka import admin_client, started_producer

__all__ = ["Probe", "new_probe_topics", "send", "sink_values", "start_probe", "stop_probe"]

ROOT = Path(__file__).resolve().parents[3]

Probe = subprocess.Popen[bytes]


async def new_probe_topics(env: PipelineEnv, stem: str) -> tuple[str, str, str]:
    """A fresh app id and one-partition SOURCE and SINK topics (deleted with the env's prefix)."""
    run = uuid.uuid4().hex[:10]
    prefix = env.settings.topic_prefix
    app_id, source, sink = f"{stem}-{run}", f"{prefix}{stem}-{run}.in", f"{prefix}{stem}-{run}.out"
    async with admin_client(env.settings) as admin:
        await admin.create_topics([NewTopic(source, 1, 1), NewTopic(sink, 1, 1)])
    return app_id, source, sink


def start_probe(env: PipelineEnv, module: str, args: list[str], log_path: Path) -> Probe:
    """``python -m tests.integration.plumbing.MODULE ARGS``, its output appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", f"tests.integration.plumbing.{module}", *args],
            cwd=ROOT,
            env=env.process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_probe(probe: Probe) -> int | None:
    probe.terminate()
    try:
        return probe.wait(timeout=30)
    except subprocess.TimeoutExpired:
        probe.kill()
        probe.wait(timeout=10)
        return None


async def send(env: PipelineEnv, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    async with started_producer(env.settings) as producer:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)


async def sink_values(env: PipelineEnv, sink: str, want: int, within_s: float) -> list[bytes]:
    """The first ``want`` or more values of ``sink``, or what came within ``within_s``."""
    bootstrap = env.settings.kafka_bootstrap
    records = await read_raw(
        bootstrap, sink, until=lambda got: len(got) >= want, wait_seconds=within_s
    )
    return [record.value for record in records]
