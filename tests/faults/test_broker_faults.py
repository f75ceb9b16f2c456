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
from workers.kafka import admin_client
from workers.localstack.manager import LocalStack
from workers.topic_admin import apply_catalog

private_kafka = spool_suite.private_kafka  # a Kafka of this module's own

CALLS = 6
MAX_PER_CALL = 40
PRODUCE_BOUND_S = 1.0
PAUSE_S = 6.0


@pytest.mark.parametrize("fault", ["sigstop", "sigkill"])
async def test_broker_fault_ingress_answers_from_spool_and_loses_nothing(
    private_kafka: LocalStack, tmp_path: Path, fault: str
) -> None:
    env = private_ingress_env(
        private_kafka, tmp_path, produce_timeout_s=PRODUCE_BOUND_S, prefix="fault-"
    )
    settings = env.settings
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    ingress = IngressProcess(env, tmp_path / "ingress.log")
    url = f"{ingress.base}/v1/cust_it/app_it/callback?token={SECRET}"
    acknowledged: dict[str, tuple[str, int]] = {}  # event id -> (call, step)
    deliveries: dict[str, int] = {}
    slowest = 0.0
    paused = False
    try:
        await asyncio.to_thread(ingress.start, "/readyz")
        async with httpx.AsyncClient(timeout=15) as client:
            stop = asyncio.Event()

            async def one_call(call_sid: str) -> None:
                nonlocal slowest
                for n in range(MAX_PER_CALL):
                    if stop.is_set():
                        return
                    started = time.monotonic()
                    body = {"CallSid": call_sid, "EventType": f"step{n}",
                            "DateUpdated": f"2024-06-15 16:{n // 60:02d}:{n % 60:02d}"}  # fmt: skip
                    response = await client.post(url, data=body)
                    slowest = max(slowest, time.monotonic() - started)
                    if response.status_code == 200:
                        answer = response.json()
                        acknowledged[answer["id"]] = (call_sid, n)
                        deliveries[answer["delivery"]] = deliveries.get(answer["delivery"], 0) + 1
                    await asyncio.sleep(0.1)

            calls = [f"call-{i}-{uuid.uuid4().hex[:6]}" for i in range(CALLS)]
            load = asyncio.gather(*(one_call(c) for c in calls))
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
            stop.set()
            await load
        assert deliveries.get("spooled", 0) > 0, f"nothing went to the spool: {deliveries}"
        assert deliveries.get("kafka", 0) > 0, deliveries
        # Answered within the bound (plus an fsync and scheduling), never left hanging.
        assert slowest < PRODUCE_BOUND_S + 2.0, slowest
        spool_empty = await asyncio.to_thread(wait_until_empty, tmp_path / "spool", 60)
        assert spool_empty, ingress.log()
        total = len(acknowledged)
        records = await collect(settings, WEBHOOK_CALL_STATUS, count=total + 1, wait_seconds=8)
        assert await asyncio.to_thread(ingress.terminate) == 0, ingress.log()
    finally:
        if paused:
            private_kafka.resume_service("kafka")
        ingress.kill()

    on_kafka = [event.id for _, event in records]
    missing = set(acknowledged) - set(on_kafka)
    duplicates = len(on_kafka) - len(set(on_kafka))
    print(f"acknowledged {total}, on Kafka {len(set(on_kafka))}, duplicates {duplicates}, "
          f"deliveries {deliveries}, slowest answer {slowest:.2f}s")  # fmt: skip
    assert not missing, f"{len(missing)} acknowledged webhooks are not on Kafka"
    if fault == "sigstop":  # the broker kept every batch it had: the sink must not send twice
        assert duplicates == 0, f"{duplicates} duplicate records"
    steps: dict[str, list[int]] = {}
    for _, event in records:
        call, step = acknowledged[event.id]
        steps.setdefault(call, []).append(step)
    for call, seen in steps.items():
        assert seen == sorted(seen), f"{call} out of order: {seen}"
