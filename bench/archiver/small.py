"""Bench path ``archiver_small``: the recordings people really have, many small ones at once.

Exotel's call recordings are MP3s of a few hundred KB to a few MB. One fresh
``exopipe worker archiver`` (``EXOPIPE_RECORDING_CONCURRENCY=32``) archives a burst of
recordings of 1 MiB, then of 200 KiB, from the Exotel double; a burst is timed from its first
``recording_ready`` event produced to its last ``exotel.recording.archived`` record read. After
each burst, the baseline does the same work with no pipeline at all, in this process: an httpx
download of each recording into memory, its sha256, and a boto3 ``put_object`` with the same
metadata, 32 at once. Runs alternate (worker, baseline) per size; rates are medians.

Then the latency run: 1 MiB recordings produced at half the worker's own max rate (its median
1 MiB rate above), open loop; a recording's latency runs from its ``recording_ready`` record's
timestamp to its ``archived`` record's timestamp (both Kafka CreateTime, one clock). The target:
``>= 0.8x`` the baseline's recordings/s for each size, p99 < 1 s paced.

Full: 2,000 recordings of each size, as 4 alternating bursts of 500 (a fresh call_sid, so a new
object, each time), the paced run 20 s; quick: one burst of 32 per size, a 1 s paced run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from aiokafka import AIOKafkaConsumer

from bench.archiver.path import ready_rig
from bench.results import PathResult, median, percentile
from tests.integration.archiver.conftest import (
    PASSWORD,
    USER,
    ArchiverRig,
    archiver_env,
    outcome_consumer,
    ready_event_obj,
)
from topics.catalog import RECORDING_ARCHIVED, WEBHOOK_RECORDING_READY
from topics.events import parse_event
from workers.archiver.keys import source_url
from workers.exotel_double.control import DoubleControl
from workers.kafka import started_producer
from workers.s3 import new_s3_client

__all__ = ["measure"]

KiB = 1024
SIZES = (1024 * KiB, 200 * KiB)
CONCURRENCY = 32
TARGET_RATIO = 0.8
TARGET_P99_MS = 1000.0


@dataclass
class Burst:
    seconds: float
    count: int
    delivered: int

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds


class _Archived:
    """Reads archived (and failed) records from the start: per call_sid, the first record's
    Kafka timestamp, and whether it was a failure."""

    def __init__(self, consumer: AIOKafkaConsumer, specs: dict[str, Any]) -> None:
        self._consumer = consumer
        self._specs = specs
        self.at: dict[str, float] = {}
        self.failed: set[str] = set()

    async def wait_for(self, call_sids: list[str], seconds: float) -> float:
        """Wait until every call_sid has an outcome; the time the last one was read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        wanted = set(call_sids)
        last = time.perf_counter()
        while not wanted <= self.at.keys() and loop.time() < deadline:
            batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            for tp, records in batches.items():
                spec = self._specs[tp.topic]
                for record in records:
                    sid = parse_event(record.value, spec).data.get("call_sid")
                    if sid not in self.at:
                        self.at[sid] = record.timestamp / 1000
                        if spec is not RECORDING_ARCHIVED:
                            self.failed.add(sid)
            if batches:
                last = time.perf_counter()
        return last


async def _produce(
    rig: ArchiverRig, items: list[tuple[str, str]], rate: float | None = None
) -> dict[str, float]:
    """Produce one recording_ready per (call_sid, url); paced at ``rate``/s when given.

    Returns each event's record timestamp (seconds since the epoch, as Kafka holds it).
    """
    topic = rig.settings.topic(WEBHOOK_RECORDING_READY).name
    stamps: dict[str, float] = {}
    async with started_producer(rig.settings) as producer:
        began = time.perf_counter()
        futures = []
        for index, (call_sid, url) in enumerate(items):
            if rate is not None:
                due = began + index / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
            event = ready_event_obj(call_sid, url)
            futures.append(
                (call_sid, await producer.send(topic, event.to_bytes(), key=call_sid.encode()))
            )
        await producer.flush()
        for call_sid, future in futures:
            stamps[call_sid] = (await future).timestamp / 1000
    return stamps


async def _worker_burst(
    rig: ArchiverRig, seen: _Archived, names: list[str], tag: str
) -> tuple[Burst, dict[str, float]]:
    items = [(f"CA{name}-{tag}", rig.url(name)) for name in names]
    sids = [sid for sid, _ in items]
    started = time.perf_counter()
    stamps = await _produce(rig, items)
    last = await seen.wait_for(sids, 300)
    delivered = sum(1 for s in sids if s in seen.at and s not in seen.failed)
    return Burst(last - started, len(sids), delivered), stamps


async def _baseline_burst(
    rig: ArchiverRig, names: list[str], tag: str, pool: ThreadPoolExecutor
) -> Burst:
    """No pipeline: download into memory, sha256, put_object with the same metadata, 32 at
    once (boto3 on threads of its own, as many as the concurrency)."""
    s3 = new_s3_client(rig.settings, max_pool_connections=CONCURRENCY + 16)
    slots = asyncio.Semaphore(CONCURRENCY)
    loop = asyncio.get_running_loop()
    done = 0

    async def one(client: httpx.AsyncClient, name: str) -> None:
        nonlocal done
        async with slots:
            url = rig.url(name)
            response = await client.get(url)
            response.raise_for_status()
            body = response.content
            metadata = {
                "call_sid": f"CA{name}-{tag}",
                "customer_id": "acme",
                "app_id": "app1",
                "sha256": hashlib.sha256(body).hexdigest(),
                "duration": "61",
                "recorded_at": "2025-03-01T10:00:00.000Z",
                "source_url": source_url(url),
            }
            metadata = {k: quote(v, safe=":/@._-=+") for k, v in metadata.items()}
            await loop.run_in_executor(
                pool,
                lambda: s3.put_object(
                    Bucket=rig.bucket,
                    Key=f"baseline/{tag}/{name}",
                    Body=body,
                    ContentType="audio/mpeg",
                    Metadata=metadata,
                ),
            )
            done += 1

    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(auth=(USER, PASSWORD), limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, name) for name in names))
        elapsed = time.perf_counter() - started
    s3.close()
    return Burst(elapsed, len(names), done)


def _empty_bucket(rig: ArchiverRig) -> None:
    """Delete a round's objects in batches (one by one, thousands take longer than the run)."""
    s3 = rig.s3
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=rig.bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=rig.bucket, Delete={"Objects": keys, "Quiet": True})


async def _measure(quick: bool) -> dict[str, Any]:
    stack = {k: v for k, v in os.environ.items() if k.startswith(("EXOPIPE_", "AWS_"))}
    if "EXOPIPE_KAFKA_BOOTSTRAP" not in stack:
        raise SystemExit('run `eval "$(exopipe stack up)"` first')
    count, rounds, paced_s = (32, 1, 1.0) if quick else (500, 4, 20.0)
    base = stack["EXOPIPE_EXOTEL_BASE_URL"].split("/v2/")[0]
    found: dict[str, Any] = {"worker": {s: [] for s in SIZES}, "baseline": {s: [] for s in SIZES}}
    with DoubleControl(base) as double, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = archiver_env(
            stack,
            home,
            double,
            EXOPIPE_RECORDING_CONCURRENCY=str(CONCURRENCY),
            EXOPIPE_LOG_LEVEL="WARNING",
        )
        rig = await ready_rig(env, double, home)
        names = {size: [rig.name(f"s{size // KiB}k{i}") for i in range(count)] for size in SIZES}
        with ThreadPoolExecutor(max_workers=8) as registering:
            for size, group in names.items():
                list(registering.map(lambda name, size=size: rig.register(name, size), group))
        warm = rig.name("warm")
        rig.register(warm, 1024)
        rig.worker.start()
        consumer, specs = outcome_consumer(rig.settings)
        await consumer.start()
        pool = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="bench-put")
        try:
            seen = _Archived(consumer, specs)
            await _produce(rig, [(f"CA{warm}", rig.url(warm))])  # joined before the clock
            await seen.wait_for([f"CA{warm}"], 120)
            for round_ in range(rounds):
                for size in SIZES:
                    burst, _ = await _worker_burst(rig, seen, names[size], f"r{round_}")
                    found["worker"][size].append(burst)
                    found["baseline"][size].append(
                        await _baseline_burst(rig, names[size], f"r{round_}", pool)
                    )
                await asyncio.to_thread(_empty_bucket, rig)
            # Paced: half the worker's own max rate of 1 MiB recordings, open loop.
            max_rate = median([b.rate for b in found["worker"][SIZES[0]]])
            offered = max_rate / 2
            group = names[SIZES[0]][: max(1, int(offered * paced_s))]
            items = [(f"CA{name}-paced", rig.url(name)) for name in group]
            stamps = await _produce(rig, items, rate=offered)
            await seen.wait_for([sid for sid, _ in items], 120)
            latencies = [
                (seen.at[sid] - stamps[sid]) * 1000 if sid in seen.at else float("inf")
                for sid, _ in items
            ]
            found["paced"] = {
                "offered": offered,
                "latencies_ms": latencies,
                "delivered": sum(
                    1 for sid, _ in items if sid in seen.at and sid not in seen.failed
                ),
            }
        finally:
            pool.shutdown()
            await consumer.stop()
            rig.worker.stop()
            await asyncio.to_thread(_empty_bucket, rig)
            await asyncio.to_thread(rig.drop_bucket)
    return found


def measure(quick: bool) -> list[PathResult]:
    found = asyncio.run(_measure(quick))
    paced = found["paced"]
    latencies = paced["latencies_ms"]
    p99 = percentile(latencies, 99)
    ratios = {}
    rates = {}
    for size in SIZES:
        worker = median([b.rate for b in found["worker"][size]])
        base = median([b.rate for b in found["baseline"][size]])
        rates[size] = (worker, base)
        ratios[size] = worker / base if base else 0.0
    bursts = [b for size in SIZES for b in found["worker"][size]]
    all_delivered = all(b.delivered == b.count for b in bursts)
    one_mib, base_one_mib = rates[SIZES[0]]
    met = (
        all(r >= TARGET_RATIO for r in ratios.values())
        and p99 < TARGET_P99_MS
        and all_delivered
        and paced["delivered"] == len(latencies)
    )
    return [
        PathResult(
            path="archiver_small",
            unit="recordings/s (1 MiB)",
            rate=one_mib,
            baseline="no pipeline: httpx GET into memory, sha256, boto3 put_object, 32 at once",
            baseline_rate=base_one_mib,
            p50_ms=percentile(latencies, 50),
            p99_ms=p99,
            delivered=sum(b.delivered for b in bursts) + paced["delivered"],
            sent=sum(b.count for b in bursts) + len(latencies),
            target=(
                f">= {TARGET_RATIO}x the baseline at 1 MiB and 200 KiB, "
                f"p99 < {TARGET_P99_MS:.0f} ms at half the max rate"
            ),
            met=met,
            runs=len(found["worker"][SIZES[0]]),
            extra={
                "recordings_per_burst": found["worker"][SIZES[0]][0].count,
                "concurrency": CONCURRENCY,
                "rate_200KiB": rates[SIZES[1]][0],
                "baseline_rate_200KiB": rates[SIZES[1]][1],
                "ratio_1MiB": ratios[SIZES[0]],
                "ratio_200KiB": ratios[SIZES[1]],
                "runs_1MiB": [round(b.rate, 1) for b in found["worker"][SIZES[0]]],
                "baseline_runs_1MiB": [round(b.rate, 1) for b in found["baseline"][SIZES[0]]],
                "runs_200KiB": [round(b.rate, 1) for b in found["worker"][SIZES[1]]],
                "baseline_runs_200KiB": [round(b.rate, 1) for b in found["baseline"][SIZES[1]]],
                "paced_offered_per_s": paced["offered"],
                "paced_recordings": len(latencies),
            },
        )
    ]
