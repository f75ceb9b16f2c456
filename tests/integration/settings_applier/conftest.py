"""Fixtures for the settings worker: its own Exotel double, a secrets file, the worker process.

Each test gets an in-process double (its latency and faults touch no one else's tests), apps
registered on it with random tokens written to a secrets file, and ``exopipe worker settings``
as a real subprocess on the test's topic prefix, whose log is kept for the no-token check.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT
from topics.events import CloudEvent, make_event
from workers import json_codec
from workers.exotel_double.control import AsyncDoubleControl
from workers.exotel_double.runner import DoubleServer
from workers.kafka import started_producer

# Fast retries so that fault tests finish in seconds; the policy itself is unit-tested.
FAST = {
    "EXOPIPE_APPLIER_RETRY_BASE_DELAY": "0.05",
    "EXOPIPE_APPLIER_RETRY_MAX_DELAY": "2",
    "EXOPIPE_APPLIER_RECONCILE_INTERVAL": "0",
    "EXOPIPE_LOG_LEVEL": "INFO",
    # A killed worker's partitions go to its successor after this many seconds.
    "EXOPIPE_APPLIER_SESSION_TIMEOUT": "6",
}


@dataclass
class Apps:
    """Apps registered on the double, and the secrets file that holds their tokens."""

    ctl: AsyncDoubleControl
    path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    async def add(self, customer: str, app: str, settings: dict[str, Any] | None = None) -> str:
        token = f"tok-{uuid.uuid4().hex}"
        await self.ctl.register_app(customer, app, token, settings)
        self.tokens[f"{customer}/{app}"] = token
        self.path.write_bytes(json_codec.dumps({"exotel_apps": self.tokens}))
        return token


@dataclass
class Worker:
    """A running ``exopipe worker settings`` subprocess."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    async def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            for _ in range(300):
                if self.process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.kill()
        return self.process.returncode


@pytest.fixture
async def double() -> AsyncIterator[DoubleServer]:
    async with DoubleServer() as server:
        yield server


@pytest.fixture
async def ctl(double: DoubleServer) -> AsyncIterator[AsyncDoubleControl]:
    async with AsyncDoubleControl(double.base_url) as client:
        yield client


@pytest.fixture
def apps(ctl: AsyncDoubleControl, tmp_path: Path) -> Apps:
    path = tmp_path / "secrets.json"
    path.write_bytes(json_codec.dumps({"exotel_apps": {}}))
    return Apps(ctl, path)


@pytest.fixture
def settings_env(topics_env: PipelineEnv, double: DoubleServer, apps: Apps) -> PipelineEnv:
    return topics_env.with_vars(
        EXOPIPE_EXOTEL_BASE_URL=double.api_base_url,
        EXOPIPE_SECRETS_FILE=str(apps.path),
        **FAST,
    )


@pytest.fixture
async def start_worker(
    settings_env: PipelineEnv, tmp_path: Path
) -> AsyncIterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(**extra: str) -> Worker:
        env = settings_env.with_vars(**extra).process_env()
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "worker", "settings"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=os.getcwd(),
            )
        worker = Worker(process, log_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await worker.stop()


def command_event(
    customer: str,
    app: str,
    settings: dict[str, Any],
    *,
    command_id: str | None = None,
    **extra: Any,
) -> CloudEvent:
    data = {
        "command_id": command_id or f"cmd-{uuid.uuid4().hex}",
        "customer_id": customer,
        "app_id": app,
        "settings": settings,
        **extra,
    }
    # Built without validation so that tests can send the invalid commands users will send.
    template = make_event(SETTINGS_COMMAND, _VALID, source="tests")
    return replace(template, data=data, customerid=customer, appid=app)


_VALID = {
    "command_id": "x",
    "customer_id": "c",
    "app_id": "a",
    "settings": {"popup_url": "https://e.x"},
}


async def send_commands(env: PipelineEnv, events: Iterable[CloudEvent | tuple[str, bytes]]) -> None:
    """Produce commands (events, or raw ``(key, bytes)`` records) in the given order."""
    settings = env.settings
    topic = settings.topic(SETTINGS_COMMAND).name
    async with started_producer(settings) as producer:
        for item in events:
            if isinstance(item, CloudEvent):
                key = f"{item.data['customer_id']}/{item.data['app_id']}"
                value = item.to_bytes()
            else:
                key, value = item
            await producer.send(topic, value, key=key.encode())
        await producer.flush()


async def results(env: PipelineEnv, count: int, *, wait_seconds: float = 60.0) -> list[CloudEvent]:
    found = await collect(env.settings, SETTINGS_RESULT, count=count, wait_seconds=wait_seconds)
    return [event for _, event in found]


def by_command(events: Iterable[CloudEvent]) -> dict[str, list[CloudEvent]]:
    grouped: dict[str, list[CloudEvent]] = {}
    for event in events:
        grouped.setdefault(event.data["command_id"], []).append(event)
    return grouped


async def assert_applied_once_in_order(
    found: list[CloudEvent],
    commands: list[CloudEvent],
    ctl: AsyncDoubleControl,
    customer: str,
    wanted_urls: dict[str, list[str]],
) -> None:
    """Exactly one ``applied`` result per command; per app (``wanted_urls``: app -> the
    ``popup_url`` of its commands in order) results and PUTs keep command order. A handover
    may repeat an app's last PUT (at least once), never reorder."""
    grouped = by_command(found)
    duplicates = {cid: len(v) for cid, v in grouped.items() if len(v) > 1}
    assert duplicates == {}, duplicates
    assert set(grouped) == {c.data["command_id"] for c in commands}
    assert {e.data["outcome"] for e in found} == {"applied"}
    for name, wanted in wanted_urls.items():
        mine = [e.data["settings"]["popup_url"] for e in found if e.data["app_id"] == name]
        assert mine == wanted, f"results out of order for {name}"
        puts = await ctl.requests(
            method="PUT", path_prefix=f"/v2/integrations/{customer}/apps/{name}/"
        )
        sent = [r["json"]["popup_url"] for r in puts]
        assert [u for i, u in enumerate(sent) if i == 0 or sent[i - 1] != u] == wanted, sent
