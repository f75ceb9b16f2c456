"""Broker down: 100 webhooks answered from the spool, the ingress restarted while the broker is
still down, the broker back: all 100 on Kafka exactly once, in order per call.

Runs its own Kafka (another home and other ports, via the LocalStack manager), never the shared
one, and the ingress as a real process (SIGTERM, exit status, restart).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PipelineEnv
from topics.catalog import WEBHOOK_CALL_STATUS
from workers.config import Settings
from workers.kafka import admin_client
from workers.localstack.manager import LocalStack
from workers.topic_admin import apply_catalog

from ..kafka_io import collect
from .conftest import SECRET, SECRETS

pytestmark = pytest.mark.slow

CALLS = 10
EVENTS_PER_CALL = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_ingress_env(
    kafka: LocalStack, tmp_path: Path, *, produce_timeout_s: float, prefix: str = "test-"
) -> PipelineEnv:
    """An ingress on a free port, producing to ``kafka`` (a stack of the test's own)."""
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps(SECRETS))
    return PipelineEnv(
        {
            "EXOPIPE_KAFKA_BOOTSTRAP": kafka.endpoints().kafka_bootstrap,
            "EXOPIPE_TOPIC_PREFIX": f"{prefix}{uuid.uuid4().hex[:12]}.",
            "EXOPIPE_SECRETS_FILE": str(secrets_file),
            "EXOPIPE_INGRESS_PORT": str(free_port()),
            "EXOPIPE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
            "EXOPIPE_INGRESS_PRODUCE_TIMEOUT_S": str(produce_timeout_s),
            "EXOPIPE_INGRESS_SHUTDOWN_TIMEOUT_S": "3",
            "EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "0",
        }
    )


def new_private_kafka(home: Path, *, advertised_kafka_port: int | None = None) -> LocalStack:
    """A Kafka under ``home`` on free ports (not started), with the shared stack's jars."""
    shared = LocalStack(Settings.from_env())
    settings = Settings.from_env(
        {
            "EXOPIPE_STACK_HOME": str(home),
            "EXOPIPE_STACK_KAFKA_PORT": str(free_port()),
            "EXOPIPE_STACK_CONTROLLER_PORT": str(free_port()),
            "EXOPIPE_STACK_KAFKA_VERSION": shared.stack.kafka_version,
        }
    )
    stack = LocalStack(settings, advertised_kafka_port=advertised_kafka_port)
    # Reuse the shared stack's jars instead of resolving them again.
    lib = stack.lib_dir("kafka")
    lib.parent.mkdir(parents=True, exist_ok=True)
    if shared.lib_dir("kafka").is_dir():
        lib.symlink_to(shared.lib_dir("kafka"), target_is_directory=True)
    return stack


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A Kafka of this module's own, which the test may stop and start at will."""
    stack = new_private_kafka(tmp_path_factory.mktemp("kafka-home"))
    stack.start_service("kafka")
    try:
        yield stack
    finally:
        stack.stop_service("kafka", signal.SIGKILL)


class IngressProcess:
    """``exopipe ingress`` as a child process, logging to a file."""

    def __init__(self, env: PipelineEnv, log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = env.settings.ingress.port
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, probe: str = "/healthz") -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "ingress"],
                env=self.env.process_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}{probe}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log()
            time.sleep(0.1)
        raise AssertionError(f"ingress did not start:\n{self.log()}")

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def wait_until_empty(spool: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while list(spool.glob("*.rec")):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def webhook(call_sid: str, n: int) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "Status": "in-progress" if n < EVENTS_PER_CALL - 1 else "completed",
        "EventType": f"step{n}",
        "DateUpdated": f"2024-06-15 16:00:{n:02d}",
    }


async def test_spool_drains_exactly_once_in_order_after_restart(
    private_kafka: LocalStack, tmp_path: Path
) -> None:
    env = private_ingress_env(private_kafka, tmp_path, produce_timeout_s=1.0)
    settings = env.settings
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    ingress = IngressProcess(env, tmp_path / "ingress.log")
    url = f"{ingress.base}/v1/cust_it/app_it/callback?token={SECRET}"
    try:
        await asyncio.to_thread(ingress.start, "/readyz")
        async with httpx.AsyncClient(timeout=15) as client:
            # One webhook while the broker is up, so the producer knows the topic's leaders and
            # later sends wait in its buffer (the duplicate hazard) instead of failing fast.
            warm = await client.post(url, data=webhook("warmup", 0))
            assert warm.status_code == 200 and warm.json()["delivery"] == "kafka"

            private_kafka.stop_service("kafka", signal.SIGKILL)

            async def one_call(call_sid: str) -> list[int]:
                statuses = []
                for n in range(EVENTS_PER_CALL):  # in order: each waits for its answer
                    response = await client.post(url, data=webhook(call_sid, n))
                    statuses.append(response.status_code)
                return statuses

            calls = [f"call-{i}-{uuid.uuid4().hex[:6]}" for i in range(CALLS)]
            statuses = await asyncio.gather(*(one_call(c) for c in calls))
        assert statuses == [[200] * EVENTS_PER_CALL] * CALLS
        assert len(list((tmp_path / "spool").glob("*.rec"))) == CALLS * EVENTS_PER_CALL

        assert await asyncio.to_thread(ingress.terminate) == 0, ingress.log()
        await asyncio.to_thread(ingress.start)  # broker still down
        async with httpx.AsyncClient(timeout=2) as client:
            assert (await client.get(f"{ingress.base}/readyz")).status_code == 503

        await asyncio.to_thread(private_kafka.start_service, "kafka")
        total = CALLS * EVENTS_PER_CALL + 1
        arrived = await collect(settings, WEBHOOK_CALL_STATUS, count=total, wait_seconds=90)
        assert len(arrived) == total, ingress.log()
        # Read again from the start, asking for one more: a duplicate would show up here.
        records = await collect(settings, WEBHOOK_CALL_STATUS, count=total + 1, wait_seconds=5)
        spool_empty = await asyncio.to_thread(wait_until_empty, tmp_path / "spool", 30)
        assert spool_empty, ingress.log()
        assert await asyncio.to_thread(ingress.terminate) == 0, ingress.log()
    finally:
        ingress.kill()

    ids = [event.id for _, event in records]
    assert len(ids) == total, f"{len(ids)} records for {total} webhooks"
    assert len(set(ids)) == total, "a webhook was delivered twice"
    by_call: dict[str, list[str]] = {}
    for key, event in records:
        assert key == event.data["call_sid"].encode()
        by_call.setdefault(event.data["call_sid"], []).append(event.data["event"])
    for call_sid in calls:
        assert by_call[call_sid] == [f"step{n}" for n in range(EVENTS_PER_CALL)], call_sid
