"""Kafka frozen with SIGSTOP, or killed with SIGKILL and restarted, for longer than the ingress's
produce bound while webhooks keep coming: every webhook is still answered within the bound (from
the spool), and once the broker is back every acknowledged webhook is on Kafka, in order per
call; after a pause exactly once, after a kill at least once (duplicates counted and reported).

The broker is a private one (other ports, another home), never the shared stack's; the ingress
is a real ``exopipe ingress`` process. Uses the ingress suite's helpers.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.ingress import test_spool_restart as spool_suite
from tests.integration.ingress.conftest import SECRET
from tests.integration.ingress.test_spool_restart import (
    IngressProcess,
    private_ingress_env,
    wait_until_empty,
)
from tests.integration.kafka_io import collect
from topics.catalog import WEBHOOK_CALL_STATUS
from topics.events import CloudEvent
from workers.config import Settings
from workers.kafka import admin_client
from workers.localstack.manager import LocalStack
from workers.topic_admin import apply_catalog

private_kafka = spool_suite.private_kafka  # a Kafka of this module's own

CALLS = 6
MAX_PER_CALL = 40
PRODUCE_BOUND_S = 1.0
PAUSE_S = 6.0


@dataclass
class WebhookLoad:
    """Calls that each post call-status webhooks one after another until stopped, and what the
    ingress answered: every acknowledged (2xx) event id with its call and step."""

    url: str
    calls: list[str]
    max_per_call: int = MAX_PER_CALL
    pause_s: float = 0.1
    acknowledged: dict[str, tuple[str, int]] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    slowest: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, client: httpx.AsyncClient) -> None:
        await asyncio.gather(*(self._one_call(client, call) for call in self.calls))

    async def _one_call(self, client: httpx.AsyncClient, call_sid: str) -> None:
        for n in range(self.max_per_call):
            if self.stop.is_set():
                return
            started = time.monotonic()
            body = {"CallSid": call_sid, "EventType": f"step{n}",
                    "DateUpdated": f"2024-06-15 16:{n // 60:02d}:{n % 60:02d}"}  # fmt: skip
            response = await client.post(self.url, data=body)
            self.slowest = max(self.slowest, time.monotonic() - started)
            if response.status_code == 200:
                answer = response.json()
                self.acknowledged[answer["id"]] = (call_sid, n)
                self.deliveries[answer["delivery"]] = self.deliveries.get(answer["delivery"], 0) + 1
            await asyncio.sleep(self.pause_s)

    def check(self, records: list[tuple[bytes | None, CloudEvent]]) -> int:
        """Every acknowledged webhook is in ``records``, in order per call; the duplicates."""
        on_kafka = [event.id for _, event in records]
        missing = set(self.acknowledged) - set(on_kafka)
        duplicates = len(on_kafka) - len(set(on_kafka))
        print(f"acknowledged {len(self.acknowledged)}, on Kafka {len(set(on_kafka))}, "
              f"duplicates {duplicates}, deliveries {self.deliveries}, "
              f"slowest answer {self.slowest:.2f}s")  # fmt: skip
        assert not missing, f"{len(missing)} acknowledged webhooks are not on Kafka"
        steps: dict[str, list[int]] = {}
        for _, event in records:
            call, step = self.acknowledged[event.id]
            steps.setdefault(call, []).append(step)
        for call, seen in steps.items():
            assert seen == sorted(seen), f"{call} out of order: {seen}"
        return duplicates


async def ingress_with_topics(
    kafka: LocalStack, tmp_path: Path, prefix: str
) -> tuple[Settings, IngressProcess, str]:
    """An ingress process (not started) producing to ``kafka``, its topics, its webhook URL."""
    env = private_ingress_env(kafka, tmp_path, produce_timeout_s=PRODUCE_BOUND_S, prefix=prefix)
    settings = env.settings
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    ingress = IngressProcess(env, tmp_path / "ingress.log")
    return settings, ingress, f"{ingress.base}/v1/cust_it/app_it/callback?token={SECRET}"


async def drain_and_read(
    settings: Settings, ingress: IngressProcess, load: WebhookLoad, spool: Path
) -> list[tuple[bytes | None, CloudEvent]]:
    """After a fault: answers came within the bound, from Kafka and from the spool; the spool
    drains; the ingress exits 0 on SIGTERM. Returns the records on Kafka (one more than the
    acknowledged webhooks asked for, so that duplicates show)."""
    assert load.deliveries.get("spooled", 0) > 0, f"nothing went to the spool: {load.deliveries}"
    assert load.deliveries.get("kafka", 0) > 0, load.deliveries
    # Answered within the bound (plus an fsync and scheduling), never left hanging.
    assert load.slowest < PRODUCE_BOUND_S + 2.0, load.slowest
    spool_empty = await asyncio.to_thread(wait_until_empty, spool, 60)
    assert spool_empty, ingress.log()
    total = len(load.acknowledged)
    records = await collect(settings, WEBHOOK_CALL_STATUS, count=total + 1, wait_seconds=8)
    assert await asyncio.to_thread(ingress.terminate) == 0, ingress.log()
    return records


@pytest.mark.parametrize("fault", ["sigstop", "sigkill"])
async def test_broker_fault_ingress_answers_from_spool_and_loses_nothing(
    private_kafka: LocalStack, tmp_path: Path, fault: str
) -> None:
    settings, ingress, url = await ingress_with_topics(private_kafka, tmp_path, "fault-")
    load = WebhookLoad(url, [f"call-{i}-{uuid.uuid4().hex[:6]}" for i in range(CALLS)])
    paused = False
    try:
        await asyncio.to_thread(ingress.start, "/readyz")
        async with httpx.AsyncClient(timeout=15) as client:
            running = asyncio.ensure_future(load.run(client))
            await asyncio.sleep(1.5)
            if fault == "sigstop":
                private_kafka.stop_service("kafka", signal.SIGSTOP)
                paused = True
                await asyncio.sleep(PAUSE_S)
                private_kafka.resume_service("kafka")
                paused = False
            else:
                private_kafka.stop_service("kafka", signal.SIGKILL)
                await asyncio.sleep(PAUSE_S)
                await asyncio.to_thread(private_kafka.start_service, "kafka")
            await asyncio.sleep(2.0)
            load.stop.set()
            await running
        records = await drain_and_read(settings, ingress, load, tmp_path / "spool")
    finally:
        if paused:
            private_kafka.resume_service("kafka")
        ingress.kill()

    duplicates = load.check(records)
    if fault == "sigstop":  # the broker kept every batch it had: the sink must not send twice
        assert duplicates == 0, f"{duplicates} duplicate records"
