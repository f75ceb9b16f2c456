"""Archiver fixtures: a real ``exopipe worker archiver`` subprocess on the real stack.

A worker takes seconds to join its group, so one worker per test module serves every test in it
(each test uses its own call sids and recording names); the kill test starts its own. Recordings
are served by the shared Exotel double under unique names, behind basic auth whose credentials
reach the worker only through its secrets file. The double runs on loopback, so workers run with
``EXOPIPE_RECORDING_ALLOW_INSECURE=1``; the allowlist names ``localhost`` only, so a redirect or
URL to ``127.0.0.1`` (the same server) must still be refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiokafka import AIOKafkaConsumer

from tests.conftest import PipelineEnv, delete_topics_with_prefixes
from topics.catalog import (
    RECORDING_ARCHIVED,
    RECORDING_FAILED,
    SETTINGS_STATE,
    WEBHOOK_RECORDING_READY,
    TopicSpec,
)
from topics.events import CloudEvent, make_event, parse_event
from workers import json_codec
from workers.config import Settings
from workers.exotel_double.control import DoubleControl
from workers.kafka import admin_client, produce_event, started_producer
from workers.s3 import new_s3_client
from workers.topic_admin import apply_catalog

USER = "rec-api-key"
PASSWORD = "rec-api-token-never-printed"  # noqa: S105 - a test credential the logs must not show
DISABLED_APP = "app_recording_off"


@dataclass
class WorkerProcess:
    """One ``exopipe worker <name>`` child process (the archiver by default) with its log file."""

    env: PipelineEnv
    log_path: Path
    name: str = "archiver"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        self.starts += 1
        path = self.log_path.with_suffix(f".{self.starts}.log")
        self._logs.append(path)
        with path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "worker", self.name],
                env=self.env.process_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self._logs if p.exists())


@dataclass
class ArchiverRig:
    """Everything a test needs: settings, the worker, the double, S3 and event helpers."""

    env: PipelineEnv
    worker: WorkerProcess
    double: DoubleControl
    s3: Any
    run: str

    @property
    def settings(self) -> Settings:
        return self.env.settings

    @property
    def bucket(self) -> str:
        return self.settings.s3_bucket

    def name(self, stem: str) -> str:
        return f"{stem}-{self.run}-{uuid.uuid4().hex[:6]}"

    def url(self, name: str, host: str = "localhost") -> str:
        port = urlsplit(self.double.base_url).port
        return f"http://{host}:{port}/recordings/{name}.mp3"

    def register(self, name: str, size: int, **options: Any) -> dict[str, Any]:
        options.setdefault("basic_auth", (USER, PASSWORD))
        return self.double.register_recording(f"{name}.mp3", size, seed=name, **options)

    def fetches(self, name: str) -> int:
        return int(self.double.recording(f"{name}.mp3")["fetches"])

    def event(self, call_sid: str, url: str, *, app_id: str = "app1") -> bytes:
        return ready_event(call_sid, url, app_id=app_id)

    async def send(self, *call_urls: tuple[str, str] | tuple[str, str, str]) -> None:
        async with started_producer(self.settings) as producer:
            for item in call_urls:
                call_sid, url = item[0], item[1]
                app_id = item[2] if len(item) > 2 else "app1"
                event = ready_event_obj(call_sid, url, app_id=app_id)
                await produce_event(
                    producer, self.settings.topic(WEBHOOK_RECORDING_READY), event, call_sid
                )

    def object_sha256(self, key: str) -> str:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(1024 * 1024), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def keys(self, prefix: str = "recordings/") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def drop_bucket(self) -> None:
        """Delete what the test stored: the shared servers' disks and files are not ours to fill."""
        drop_test_data(self.env.settings, self.s3)

    def incomplete_uploads(self) -> list[dict[str, Any]]:
        return list(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))


def drop_test_data(settings: Settings, s3: Any) -> None:
    """Delete a test's topics (by its prefix) and its bucket with every object and upload in it,
    then close the S3 client."""
    delete_topics_with_prefixes(settings.kafka_bootstrap, [settings.topic_prefix])
    bucket = settings.s3_bucket
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)
    s3.close()


def ready_event_obj(call_sid: str, url: str, *, app_id: str = "app1") -> Any:
    now = datetime.now(UTC)
    data = {
        "event": "recording_ready",
        "call_sid": call_sid,
        "customer_id": "acme",
        "app_id": app_id,
        "timestamp": "2025-03-01T10:00:00.000Z",
        "received_at": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
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
        WEBHOOK_RECORDING_READY, data, source="test", customer_id="acme", app_id=app_id
    )


def ready_event(call_sid: str, url: str, *, app_id: str = "app1") -> bytes:
    return ready_event_obj(call_sid, url, app_id=app_id).to_bytes()


async def _disable_recording(settings: Settings, app_id: str) -> None:
    """Put a settings-state record saying recording is off for ``acme/app_id``."""
    state = make_event(
        SETTINGS_STATE,
        {
            "customer_id": "acme",
            "app_id": app_id,
            "kind": "applied",
            "settings": {"recording_enabled": False, "recording_url": None},
            "expected": None,
            "updated_at": None,
            "command_id": None,
            "observed_at": "2025-03-01T09:00:00.000Z",
        },
        source="test",
    )
    async with started_producer(settings) as producer:
        await produce_event(producer, settings.topic(SETTINGS_STATE), state, f"acme/{app_id}")


def outcome_consumer(settings: Settings) -> tuple[AIOKafkaConsumer, dict[str, TopicSpec]]:
    """A reader of archived and failed from their start (not started), and each topic's spec."""
    specs = {settings.topic(spec).name: spec for spec in (RECORDING_ARCHIVED, RECORDING_FAILED)}
    consumer = AIOKafkaConsumer(
        *specs,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    return consumer, specs


async def collect_outcomes(
    settings: Settings, call_sid: str, *, count: int, wait_seconds: float
) -> list[tuple[str, CloudEvent]]:
    """Records about ``call_sid`` on archived and failed (one reader for both), in read order.

    Returns as soon as ``count`` are found, or what was found when the time runs out.
    """
    consumer, specs = outcome_consumer(settings)
    await consumer.start()
    found: list[tuple[str, CloudEvent]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    try:
        while len(found) < count and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                spec = specs[tp.topic]
                for record in records:
                    event = parse_event(record.value, spec)
                    if event.data.get("call_sid") == call_sid:
                        kind = "archived" if spec is RECORDING_ARCHIVED else "failed"
                        found.append((kind, event))
    finally:
        await consumer.stop()
    return found


@pytest.fixture(scope="session")
def double(stack_env: dict[str, str]) -> Iterator[DoubleControl]:
    base = stack_env["EXOPIPE_EXOTEL_BASE_URL"]
    parts = urlsplit(base)
    with DoubleControl(f"{parts.scheme}://{parts.netloc}") as control:
        yield control


def archiver_env(
    stack_env: dict[str, str], home: Path, double: DoubleControl, **extra: str
) -> PipelineEnv:
    run = uuid.uuid4().hex[:10]
    secrets = home / "secrets.json"
    secrets.write_bytes(
        json_codec.dumps(
            {"recording_hosts": {"localhost": {"username": USER, "password": PASSWORD}}}
        )
    )
    temp = home / "spool"
    temp.mkdir(exist_ok=True)
    variables = {
        **stack_env,
        "EXOPIPE_TOPIC_PREFIX": f"test-{run}.",
        "EXOPIPE_S3_BUCKET": f"arch-{run}",
        "EXOPIPE_SECRETS_FILE": str(secrets),
        "EXOPIPE_RECORDING_ALLOW_INSECURE": "1",
        "EXOPIPE_RECORDING_HOSTS": "localhost",
        "EXOPIPE_RECORDING_PORTS": str(urlsplit(double.base_url).port),
        "EXOPIPE_RECORDING_TEMP_DIR": str(temp),
        "EXOPIPE_RECORDING_ATTEMPTS": "4",
        "EXOPIPE_RECORDING_RETRY_BASE_DELAY": "0.2",
        "EXOPIPE_RECORDING_RETRY_MAX_DELAY": "1",
        "EXOPIPE_RECORDING_CONCURRENCY": "3",
        # A killed worker's partitions come back after this, not after the default minute.
        "EXOPIPE_RECORDING_SESSION_TIMEOUT": "10",
        "EXOPIPE_LOG_LEVEL": "INFO",
        **extra,
    }
    return PipelineEnv(variables)


async def make_rig(env: PipelineEnv, double: DoubleControl, home: Path) -> ArchiverRig:
    settings = env.settings
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    s3 = new_s3_client(settings)
    await asyncio.to_thread(s3.create_bucket, Bucket=settings.s3_bucket)
    await _disable_recording(settings, DISABLED_APP)
    worker = WorkerProcess(env, home / "worker")
    return ArchiverRig(env, worker, double, s3, run=env.variables["EXOPIPE_TOPIC_PREFIX"][5:-1])


@pytest.fixture(scope="module")
async def rig(
    stack_env: dict[str, str], double: DoubleControl, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ArchiverRig]:
    """A running worker shared by one test module (max size 210 MiB)."""
    home = tmp_path_factory.mktemp("archiver")
    env = archiver_env(stack_env, home, double, EXOPIPE_RECORDING_MAX_BYTES=str(210 * 1024 * 1024))
    rig = await make_rig(env, double, home)
    rig.worker.start()
    try:
        yield rig
    finally:
        rig.worker.stop()
        rig.drop_bucket()
