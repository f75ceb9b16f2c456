"""Bench: Exotel POST -> ``exotel.missed_call.enriched``, through the real ingress and enricher.

Open-loop loads of calls at 500 and at 1,000 calls/s (``RATES``): each call's popup is POSTed
to the ingress at its scheduled time and its missed call one ring later (``RING_S``), as Exotel
sends them; the latency of a call runs from the missed call's *scheduled* POST time (so a
stalled sender counts against the pipeline, not for it) to its enriched record read back from
Kafka. The baseline is an aiokafka produce -> consume round trip of records of the same size at
the same offered rate through one topic of the same width, in the same run: what Kafka alone
costs on this machine. The enricher's CPU per call and peak RSS go into each row's JSON.

The load generator speaks HTTP/1.1 over a pool of keep-alive loopback connections with
prebuilt requests, so it takes as little of the two cores as it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic

from bench.kafka_io import reader_at_end, wait_for_leaders
from bench.processes import (
    BENCH_SECRET,
    cpu_seconds,
    create_topics,
    free_port,
    ingress_env,
    peak_rss_mib,
    running,
    settings_of,
    wait_for_http,
)
from bench.results import PathResult, median, percentile
from topics.catalog import MISSED_CALL_ENRICHED
from topics.events import format_time
from workers import json_codec
from workers.config import Settings
from workers.kafka import admin_client, new_producer

__all__ = ["measure"]

RING_S = 1.0  # popup to missed call: a short ring, so the popup is always there first
CONNECTIONS = 48
# Path name, missed calls per second, and the p99 it must stay under, none lost.
RATES = (("end_to_end", 500.0, 200.0), ("end_to_end_1000", 1000.0, 500.0))
QUICK_RATES = (("end_to_end", 200.0, 200.0), ("end_to_end_1000", 400.0, 500.0))
DRAIN_S = 15.0  # how long the last records may take to arrive before they count as lost


@dataclass
class Load:
    rate: float
    seconds: float
    sent_at: dict[str, float] = field(default_factory=dict)  # call_sid -> scheduled missed POST
    arrived_at: dict[str, float] = field(default_factory=dict)
    refused: int = 0
    duplicates: int = 0
    enricher_cpu_s: float = 0.0  # what the enricher used while this load ran

    @property
    def count(self) -> int:
        return int(self.rate * self.seconds)

    def latencies_ms(self) -> list[float]:
        return [(t - self.sent_at[sid]) * 1000 for sid, t in self.arrived_at.items()]

    def percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile over every call sent; None when it falls among the calls
        that did not come out within the drain (a percentile of the arrived ones alone would
        understate the tail)."""
        missing = max(0, self.count - len(self.arrived_at))
        found = percentile(self.latencies_ms() + [math.inf] * missing, q)
        return None if math.isinf(found) else found


class Connections:
    """A pool of keep-alive HTTP/1.1 connections to the ingress; one request at a time each."""

    def __init__(self, port: int, size: int) -> None:
        self._port = port
        self._size = size
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        for _ in range(self._size):
            await self._idle.put(await asyncio.open_connection("127.0.0.1", self._port))

    async def close(self) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()
            await writer.wait_closed()

    async def post(self, request: bytes) -> int:
        reader, writer = await self._idle.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            self._idle.put_nowait(await asyncio.open_connection("127.0.0.1", self._port))
            raise
        self._idle.put_nowait((reader, writer))
        return status


def _request(customer: str, app: str, kind: str, body: dict[str, object]) -> bytes:
    payload = json_codec.dumps(body)
    return (
        f"POST /v1/{customer}/{app}/{kind}?token={BENCH_SECRET} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def _call(run: str, i: int) -> tuple[str, bytes, bytes]:
    """One call's popup and missed-call requests; callers repeat, as real ones do."""
    sid = f"{run}-{i}"
    app = f"app{i % 8}"
    caller = f"+9198{i % 4000:08d}"
    now = format_time(datetime.now(UTC))
    fields = {"call_sid": sid, "from": caller, "to": "sip:agent@bench.exotel.com"}
    popup = _request("bench", app, "popup", {"event": "incoming_call", **fields, "timestamp": now})
    missed = _request(
        "bench", app, "missed-call", {"event": "missed_call", **fields, "timestamp": now}
    )
    return sid, popup, missed


async def _collect(consumer: AIOKafkaConsumer, load: Load, done: asyncio.Event) -> None:
    while not done.is_set():
        batches = await consumer.getmany(timeout_ms=50, max_records=2000)
        now = time.perf_counter()
        for records in batches.values():
            for record in records:
                sid = record.key.decode() if record.key else ""
                if sid in load.arrived_at:
                    load.duplicates += 1
                elif sid in load.sent_at:
                    load.arrived_at[sid] = now
        if load.sent_at and len(load.arrived_at) >= load.count:
            done.set()


@asynccontextmanager
async def _collecting(consumer: AIOKafkaConsumer, load: Load) -> AsyncIterator[None]:
    """Read arrivals while the body sends; then wait up to ``DRAIN_S`` for the rest."""
    done = asyncio.Event()
    collector = asyncio.create_task(_collect(consumer, load, done))
    try:
        yield
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), DRAIN_S)
    finally:
        done.set()
        await collector
        await consumer.stop()


async def _drive_pipeline(port: int, settings: Settings, load: Load, run: str) -> None:
    pool = Connections(port, CONNECTIONS)
    await pool.open()
    spec = settings.topic(MISSED_CALL_ENRICHED)
    consumer = await reader_at_end(settings, spec.name, spec.partitions)

    async def one(i: int, at: float) -> None:
        sid, popup, missed = _call(run, i)
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        if await pool.post(popup) != 200:
            load.refused += 1
        await asyncio.sleep(max(0.0, at + RING_S - time.perf_counter()))
        load.sent_at[sid] = at + RING_S
        if await pool.post(missed) != 200:
            load.refused += 1

    try:
        async with _collecting(consumer, load):
            start = time.perf_counter() + 0.2
            calls = [asyncio.create_task(one(i, start + i / load.rate)) for i in range(load.count)]
            await asyncio.gather(*calls)
    finally:
        await pool.close()


async def _baseline_topic(settings: Settings) -> str:
    """A topic as wide as the enriched one, for the baseline's records."""
    spec = settings.topic(MISSED_CALL_ENRICHED)
    topic = f"{settings.topic_prefix}bench-baseline"
    async with admin_client(settings) as admin:
        await admin.create_topics([NewTopic(topic, spec.partitions, 1)])
    await wait_for_leaders(settings, topic)
    return topic


async def _drive_baseline(settings: Settings, topic: str, load: Load, run: str) -> None:
    """The same rate of records of the same size through that topic, raw aiokafka."""
    consumer = await reader_at_end(settings, topic, settings.topic(MISSED_CALL_ENRICHED).partitions)
    producer = new_producer(settings, client_id="exopipe-bench-baseline")
    await producer.start()
    value = b"x" * 900  # about an enriched record's size
    try:
        async with _collecting(consumer, load):
            start = time.perf_counter() + 0.2
            for i in range(load.count):
                at = start + i / load.rate
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                sid = f"{run}-{i}"
                load.sent_at[sid] = at
                await producer.send(topic, value=value, key=sid.encode())
    finally:
        await producer.stop()


def _warm_up(port: int, settings: Settings, rate: float, seconds: float) -> None:
    """Calls until the first enriched record is out, then ``seconds`` at the bench's rate.

    A fresh ingress and worker are slow for their first seconds (metadata of new partitions,
    first fetches of the internal topic): hundreds of ms for the first calls, then steady.
    """
    for attempt in range(20):
        load = Load(rate=20.0, seconds=0.5)
        asyncio.run(_drive_pipeline(port, settings, load, f"warm{attempt}"))
        if load.arrived_at:
            asyncio.run(_drive_pipeline(port, settings, Load(rate=rate, seconds=seconds), "warm"))
            return
    raise SystemExit("end to end: no enriched record came out of the warm-up")


def _median_or_none(values: list[float | None]) -> float | None:
    """The median, a run whose percentile lies beyond the drain counting as infinite."""
    found = median([math.inf if v is None else v for v in values])
    return None if math.isinf(found) else found


def _result(
    path: str,
    rate: float,
    target_ms: float,
    pipeline: list[Load],
    baseline: list[Load],
    rss_mib: float,
) -> PathResult:
    p99 = _median_or_none([r.percentile_ms(99) for r in pipeline])
    delivered = min(len(r.arrived_at) for r in pipeline)
    lost = max(r.count - len(r.arrived_at) for r in pipeline)
    refused = max(r.refused for r in pipeline)
    seconds = pipeline[0].seconds
    return PathResult(
        path=path,
        unit="calls/s",
        rate=median([len(r.arrived_at) / r.seconds for r in pipeline]),
        baseline="raw aiokafka round trip, same rate",
        baseline_rate=median([len(r.arrived_at) / r.seconds for r in baseline]),
        p50_ms=_median_or_none([r.percentile_ms(50) for r in pipeline]),
        p99_ms=p99,
        baseline_p50_ms=median([percentile(r.latencies_ms(), 50) for r in baseline]),
        baseline_p99_ms=median([percentile(r.latencies_ms(), 99) for r in baseline]),
        delivered=delivered,
        sent=pipeline[0].count,
        target=f"p99 < {target_ms:.0f} ms at {rate:.0f} calls/s for {seconds:.0f} s, none lost",
        met=p99 is not None and p99 < target_ms and lost == 0 and refused == 0,
        runs=len(pipeline),
        extra={
            "offered_rate": rate,
            "seconds": seconds,
            "lost_max": lost,
            "refused_max": refused,
            "duplicates": sum(r.duplicates for r in pipeline),
            "max_ms": median([max(r.latencies_ms(), default=float("nan")) for r in pipeline]),
            "enricher_cpu_ms_per_call": round(
                median([r.enricher_cpu_s * 1000 / r.count for r in pipeline]), 3
            ),
            "enricher_peak_rss_mib": round(rss_mib, 1),
        },
    )


def measure(quick: bool) -> list[PathResult]:
    """Each rate in turn on one ingress and one enricher: runs alternate with the baseline's.

    The enricher's peak RSS is read after each rate's runs (the 60 s runs, in a full run).
    """
    runs, seconds, base_seconds = (1, 1.0, 0.5) if quick else (3, 60.0, 20.0)
    rates = QUICK_RATES if quick else RATES
    warm_s = 0.5 if quick else 5.0
    results: list[PathResult] = []
    with tempfile.TemporaryDirectory(prefix="exopipe-bench-e2e-") as tmp:
        work = Path(tmp)
        ops_port = free_port()
        env, port = ingress_env(
            work,
            EXOPIPE_WORKER_DATA_DIR=str(work / "worker-data"),
            EXOPIPE_WORKER_HTTP_PORT=str(ops_port),
        )
        settings = settings_of(env)
        create_topics(settings)
        with (
            running(["ingress"], env, work / "ingress.log") as ingress,
            running(["worker", "enricher"], env, work / "enricher.log") as enricher,
        ):
            wait_for_http(ingress, f"http://127.0.0.1:{port}/readyz")
            wait_for_http(enricher, f"http://127.0.0.1:{ops_port}/readyz", limit_s=90)
            topic = asyncio.run(_baseline_topic(settings))
            for path, rate, target_ms in rates:
                _warm_up(port, settings, rate, warm_s)
                asyncio.run(_drive_baseline(settings, topic, Load(rate=rate, seconds=1.0), "warm"))
                pipeline: list[Load] = []
                baseline: list[Load] = []
                for n in range(runs):
                    load = Load(rate=rate, seconds=seconds)
                    began = cpu_seconds(enricher.pid)
                    asyncio.run(_drive_pipeline(port, settings, load, f"r{rate:.0f}-{n}"))
                    load.enricher_cpu_s = cpu_seconds(enricher.pid) - began
                    pipeline.append(load)
                    base = Load(rate=rate, seconds=base_seconds)
                    asyncio.run(_drive_baseline(settings, topic, base, f"r{rate:.0f}-{n}"))
                    baseline.append(base)
                for proc, name in ((ingress, "ingress"), (enricher, "enricher")):
                    if proc.poll() is not None:
                        raise SystemExit(f"end to end: the {name} exited during the run")
                rss = peak_rss_mib(enricher.pid)
                results.append(_result(path, rate, target_ms, pipeline, baseline, rss))
    return results
