"""Bench: the enricher's throughput and latency, next to a raw Kafka round trip in the same run.

Measured from a produce to ``exotel.webhook.missed_call`` (each missed call preceded by its
popup) to the enriched record read back from ``exotel.missed_call.enriched``; the ingress's
HTTP hop is not included. The baseline is an aiokafka produce -> consume round trip through one
topic of the same width, on the same broker, at the same offered rate.

    EXOPIPE_KAFKA_BOOTSTRAP=127.0.0.1:9092 python bench/enricher/bench_enricher.py

Talks to the local broker only; bounded in count and time; prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic

from topics.catalog import MISSED_CALL_ENRICHED, WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL
from topics.events import deterministic_id, format_time, make_event
from workers.config import Settings
from workers.kafka import admin_client, new_producer
from workers.topic_admin import apply_catalog

T0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def _event(spec, sid: str, i: int) -> bytes:  # type: ignore[no-untyped-def]
    kind = spec.name.rsplit(".", 1)[1]
    ts = format_time(T0 + timedelta(seconds=i * 7 + (5 if kind == "missed_call" else 0)))
    data = {
        "event": kind,
        "call_sid": sid,
        "customer_id": "bench",
        "app_id": f"app{i % 4}",
        "from": f"098{i % 997:08d}",
        "to": "sip:agent@bench.example.com",
        "timestamp": ts,
        "received_at": ts,
        "source_format": "json",
        "original": {},
    }
    event_id = deterministic_id(kind, sid, kind, ts)
    return make_event(spec, data, source="bench", event_id=event_id).to_bytes()


async def _reader(bootstrap: str, topic: str, partitions: int) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer


async def _drive(
    send: Callable[[int], Awaitable[str]],
    consumer: AIOKafkaConsumer,
    count: int,
    rate: float | None,
    limit_s: float,
) -> tuple[float, list[float]]:
    """Send ``count`` items (at ``rate``/s, or as fast as possible); wall time and latencies."""
    sent_at: dict[str, float] = {}
    latencies: list[float] = []

    async def receive() -> None:
        while len(latencies) < count:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if key in sent_at:
                        latencies.append(now - sent_at.pop(key))

    receiver = asyncio.create_task(receive())
    start = time.perf_counter()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        key = await send(i)
        sent_at[key] = time.perf_counter()
    try:
        await asyncio.wait_for(receiver, limit_s)
    except TimeoutError:
        print(f"  timed out: {len(latencies)}/{count} arrived", file=sys.stderr)
    return time.perf_counter() - start, latencies


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "enricher"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while "Worker ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"enricher did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=3000, help="events per throughput run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="offered missed calls per s")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXOPIPE_")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("EXOPIPE_")})
    env.update({"EXOPIPE_TOPIC_PREFIX": prefix, "EXOPIPE_LOG_LEVEL": "INFO"})
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("EXOPIPE_")})
    missed = settings.topic(WEBHOOK_MISSED_CALL)
    baseline_topic = f"{prefix}bench-baseline"
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=prefix)
        await admin.create_topics([NewTopic(baseline_topic, missed.partitions, 1)])

    log = Path(tempfile.mkdtemp()) / "enricher.log"
    worker = _start_worker(env, log)
    producer: AIOKafkaProducer = new_producer(settings)
    await producer.start()
    try:
        run_id = uuid.uuid4().hex[:6]

        async def enricher_send(i: int) -> str:
            sid = f"CA{run_id}{i:08d}"
            key = sid.encode()
            await producer.send(
                settings.topic(WEBHOOK_INCOMING_CALL).name,
                _event(WEBHOOK_INCOMING_CALL, sid, i),
                key=key,
            )
            await producer.send(missed.name, _event(WEBHOOK_MISSED_CALL, sid, i), key=key)
            return sid

        async def baseline_send(i: int) -> str:
            key = f"B{run_id}{i:08d}"
            await producer.send(
                baseline_topic, _event(WEBHOOK_MISSED_CALL, key, i), key=key.encode()
            )
            return key

        enriched_name = settings.topic(MISSED_CALL_ENRICHED).name
        rows = []
        # Warm up both paths (first-time metadata, caches) before measuring.
        for name, send, topic in (
            ("raw aiokafka round trip (baseline)", baseline_send, baseline_topic),
            ("enricher", enricher_send, enriched_name),
        ):
            consumer = await _reader(settings.kafka_bootstrap, topic, missed.partitions)
            try:
                run_id = uuid.uuid4().hex[:6]
                await _drive(send, consumer, 200, None, 60)
                rates = []
                for _ in range(args.runs):
                    run_id = uuid.uuid4().hex[:6]
                    wall, got = await _drive(send, consumer, args.burst, None, 120)
                    rates.append(len(got) / wall)
                run_id = uuid.uuid4().hex[:6]
                count = int(args.rate * args.seconds)
                _, latencies = await _drive(send, consumer, count, args.rate, 60)
            finally:
                await consumer.stop()
            rows.append((name, statistics.median(rates), latencies, count))
    finally:
        await producer.stop()
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)

    base = rows[0]
    print(
        f"\nburst {args.burst} x {args.runs} runs (median); latency at {args.rate:g}/s "
        f"for {args.seconds:g} s; partitions {missed.partitions}; one enricher process\n"
    )
    print("| path | events/s (median) | p50 ms | p99 ms | delivered | vs baseline (p50) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rate, lat, count in rows:
        ratio = _pct(lat, 0.5) / _pct(base[2], 0.5)
        print(
            f"| {name} | {rate:,.0f} | {_pct(lat, 0.5):.1f} | {_pct(lat, 0.99):.1f} "
            f"| {len(lat)}/{count} | {ratio:.1f}x |"
        )


if __name__ == "__main__":
    asyncio.run(main())
