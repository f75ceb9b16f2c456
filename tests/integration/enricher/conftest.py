"""Enricher integration fixtures: real ``exopipe worker enricher`` processes, inputs on Kafka.

Events are built the way the ingress builds them (deterministic ids from kind, call_sid, event
and timestamp) with event times chosen by the test: nothing here waits for the clock to move.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import PipelineEnv
from topics.catalog import SETTINGS_STATE, WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL, TopicSpec
from topics.events import deterministic_id, format_time, make_event
from workers.config import Settings
from workers.kafka import new_producer

# Monday 2026-03-02 10:30 IST: inside the business hours configured below.
T0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
HOURS = '{"acme": {"timezone": "Asia/Kolkata", "hours": {"mon-fri": "09:30-18:00"}}}'
ENRICHER_VARS = {
    "EXOPIPE_ENRICHER_GRACE_SECONDS": "2",
    "EXOPIPE_ENRICHER_TICK_SECONDS": "0.1",
    # A killed worker's partitions are reassigned soon (the default is 30 s).
    "EXOPIPE_ENRICHER_SESSION_TIMEOUT_SECONDS": "8",
    "EXOPIPE_ENRICHER_BUSINESS_HOURS": HOURS,
    "EXOPIPE_LOG_LEVEL": "INFO",
}


@dataclass
class Worker:
    """One ``exopipe worker enricher`` process, its log in a file."""

    env: PipelineEnv
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 90.0) -> Worker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "enricher"],
            env=self.env.process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_for("Worker ready", ready_timeout)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.log_text().count(text) < count:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"enricher exited {self.proc.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in {timeout}s:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final commit (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def enricher_env(topics_env: PipelineEnv) -> PipelineEnv:
    return topics_env.with_vars(**ENRICHER_VARS)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[PipelineEnv], Worker]]:
    """Start enricher processes; every one is stopped at the end of the test."""
    started: list[Worker] = []

    def start(env: PipelineEnv) -> Worker:
        worker = Worker(env, tmp_path / f"enricher-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@dataclass
class Inputs:
    """Produces webhook events and settings state as the ingress and the applier would."""

    settings: Settings
    producer: AIOKafkaProducer
    sent: list[str] = field(default_factory=list)

    async def _send(self, spec: TopicSpec, key: str, value: bytes) -> None:
        await self.producer.send_and_wait(self.settings.topic(spec).name, value, key=key.encode())

    def call_event(self, spec: TopicSpec, call_sid: str, at: datetime, **data: Any) -> bytes:
        kind = spec.name.rsplit(".", 1)[1]
        timestamp = format_time(at)
        body = {
            "event": kind,
            "call_sid": call_sid,
            "customer_id": data.pop("customer_id", "acme"),
            "app_id": data.pop("app_id", "app1"),
            "from": data.pop("caller", "09876543210"),
            "to": data.pop("callee", "sip:agent7@acme.exotel.com"),
            "timestamp": timestamp,
            "received_at": format_time(datetime.now(UTC)),
            "source_format": "json",
            "original": {},
            **data,
        }
        event = make_event(
            spec,
            body,
            source="exopipe/ingress",
            event_id=deterministic_id(kind, call_sid, kind, timestamp),
            customer_id=body["customer_id"],
            app_id=body["app_id"],
        )
        return event.to_bytes()

    async def missed(self, call_sid: str, at: datetime, **data: Any) -> bytes:
        value = self.call_event(WEBHOOK_MISSED_CALL, call_sid, at, **data)
        await self._send(WEBHOOK_MISSED_CALL, call_sid, value)
        self.sent.append(call_sid)
        return value

    async def popup(self, call_sid: str, at: datetime, **data: Any) -> None:
        value = self.call_event(WEBHOOK_INCOMING_CALL, call_sid, at, **data)
        await self._send(WEBHOOK_INCOMING_CALL, call_sid, value)

    async def raw_missed(self, key: str, value: bytes) -> None:
        await self._send(WEBHOOK_MISSED_CALL, key, value)

    async def state(self, customer_id: str, app_id: str, callback_url: str | None) -> None:
        data = {
            "customer_id": customer_id,
            "app_id": app_id,
            "kind": "applied",
            "settings": {"callback_url": callback_url, "popup_url": None},
            "observed_at": format_time(datetime.now(UTC)),
        }
        event = make_event(SETTINGS_STATE, data, source="exopipe/settings")
        await self._send(SETTINGS_STATE, f"{customer_id}/{app_id}", event.to_bytes())


@pytest.fixture
async def inputs(enricher_env: PipelineEnv) -> AsyncIterator[Inputs]:
    settings = enricher_env.settings
    producer = new_producer(settings)
    await producer.start()
    try:
        yield Inputs(settings, producer)
    finally:
        await producer.stop()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
