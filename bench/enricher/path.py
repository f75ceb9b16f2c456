"""Bench: the enricher's throughput and latency, next to a raw Kafka round trip in the same run.

Measured from a produce to ``exotel.webhook.missed_call`` (each missed call preceded by its
popup on ``exotel.webhook.incoming_call``, same call_sid) to the enriched record read back
from ``exotel.missed_call.enriched``; the ingress's HTTP hop is not included. One
``exopipe worker enricher`` process. The baseline is an aiokafka produce -> consume round trip
through one topic of the same width, on the same broker, with records of the same size.

- ``enricher``: a burst of missed calls as fast as the producer takes them; rate = missed
  calls enriched per second of the burst. Baseline: the same burst of records round-tripped.
  Runs alternate (baseline, enricher) and the medians are reported.
- ``enricher_peer``: the same bursts through the same job written with Quix Streams 3.x
  (``bench/enricher/peer.py``, its own topics under another prefix), next to ours.
- ``enricher_latency``: an open-loop load at ``RATE`` missed calls/s; p50/p99 from the send of
  a missed call to its enriched record, next to the round trip's at the same offered rate.

    python -m bench --only enricher            # or: python -m bench.enricher.path [--quick]

Talks to the local broker only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic

from bench.kafka_io import reader_at_end, wait_for_leaders
from bench.processes import (
    bench_env,
    cpu_seconds,
    running,
    running_module,
    settings_of,
    wait_for_log,
)
from bench.results import PathResult, median, percentile
from topics.catalog import (
    MISSED_CALL_ENRICHED,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    TopicSpec,
)
from topics.events import deterministic_id, format_time, make_event
from workers.config import Settings
from workers.kafka import admin_client, new_producer
from workers.topic_admin import apply_catalog

__all__ = ["measure"]

T0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
RATE = 500.0  # offered missed calls per second for the latency path (the figure)
TARGET_RATE = 2_500.0  # missed calls per second on one process
TARGET_RATIO = 0.25  # of the raw round trip
TARGET_P99_FACTOR = 3.0  # p99 at most this many times the round trip's
PEER_READY = "now processing incoming messages"  # Quix Streams' own line once it runs


@dataclass(frozen=True)
class Sizes:
    runs: int
    burst: int
    latency_s: float
    settle_s: float
    warm_up: int


FULL = Sizes(runs=3, burst=10_000, latency_s=20.0, settle_s=5.0, warm_up=200)
QUICK = Sizes(runs=1, burst=500, latency_s=0.5, settle_s=0.2, warm_up=20)


def _event(spec: TopicSpec, sid: str, i: int, at: datetime | None = None) -> bytes:
    """Call ``i``'s popup or missed call (5 s later), at ``at`` or 7 s of event time per call."""
    kind = spec.name.rsplit(".", 1)[1]
    start = T0 + timedelta(seconds=i * 7) if at is None else at
    ts = format_time(start + timedelta(seconds=5 if kind == "missed_call" else 0))
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


@dataclass
class Run:
    sent: int
    wall_s: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0


async def _drive(
    send: Callable[[int], Awaitable[str]],
    consumer: AIOKafkaConsumer,
    count: int,
    rate: float | None,
    limit_s: float,
) -> Run:
    """Send ``count`` items (at ``rate``/s, or as fast as possible); wall time and latencies.

    Wall time runs from the first send to the last item read back.
    """
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    last = [time.perf_counter()]

    async def receive() -> None:
        while len(latencies) < count:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if key in sent_at:
                        latencies.append((now - sent_at.pop(key)) * 1000)
                        last[0] = now

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
        print(f"bench enricher: timed out, {len(latencies)}/{count} arrived", file=sys.stderr)
    return Run(count, max(last[0] - start, 1e-9), latencies)


async def _measure(sizes: Sizes) -> list[PathResult]:
    env = bench_env(EXOPIPE_LOG_LEVEL="INFO")  # faust says "Worker ready" at INFO
    settings = settings_of(env)
    prefix = settings.topic_prefix
    missed = settings.topic(WEBHOOK_MISSED_CALL)
    enriched = settings.topic(MISSED_CALL_ENRICHED).name
    baseline_topic = f"{prefix}bench-baseline"
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=prefix)
        await admin.create_topics([NewTopic(baseline_topic, missed.partitions, 1)])

    # The Quix Streams peer does the same job on topics of its own (another prefix).
    peer_env = bench_env(EXOPIPE_LOG_LEVEL="INFO")
    peer_settings = settings_of(peer_env)
    async with admin_client(peer_settings) as admin:
        await apply_catalog(admin, name_prefix=peer_settings.topic_prefix)
    for prefixed in (settings, peer_settings):
        await wait_for_leaders(prefixed, prefixed.topic_prefix)
    work = Path(tempfile.mkdtemp(prefix="bench-enricher-"))
    with (
        running(["worker", "enricher"], env, work / "enricher.log") as worker,
        running_module("bench.enricher.peer", peer_env, work / "peer.log") as peer,
    ):
        wait_for_log(worker, work / "enricher.log", "Worker ready")
        wait_for_log(peer, work / "peer.log", PEER_READY)
        producer: AIOKafkaProducer = new_producer(settings)
        await producer.start()
        base_reader = await reader_at_end(settings, baseline_topic, missed.partitions)
        enr_reader = await reader_at_end(settings, enriched, missed.partitions)
        peer_enriched = peer_settings.topic(MISSED_CALL_ENRICHED).name
        peer_reader = await reader_at_end(peer_settings, peer_enriched, missed.partitions)
        try:
            run_id = [uuid.uuid4().hex[:6]]

            def calls_to(settings: Settings) -> Callable[[int], Awaitable[str]]:
                popup_topic = settings.topic(WEBHOOK_INCOMING_CALL).name
                missed_topic = settings.topic(WEBHOOK_MISSED_CALL).name

                async def send(i: int) -> str:
                    sid = f"CA{run_id[0]}{i:08d}"
                    key = sid.encode()
                    await producer.send(popup_topic, _event(WEBHOOK_INCOMING_CALL, sid, i), key=key)
                    await producer.send(missed_topic, _event(WEBHOOK_MISSED_CALL, sid, i), key=key)
                    return sid

                return send

            async def baseline_send(i: int) -> str:
                key = f"B{run_id[0]}{i:08d}"
                value = _event(WEBHOOK_MISSED_CALL, key, i)
                await producer.send(baseline_topic, value, key=key.encode())
                return key

            subjects = {
                "baseline": (baseline_send, base_reader, worker),
                "enricher": (calls_to(settings), enr_reader, worker),
                "peer": (calls_to(peer_settings), peer_reader, peer),
            }

            async def once(
                subject: str, count: int, rate: float | None, limit_s: float
            ) -> tuple[Run, float]:
                """One run of ``subject``; with the CPU its process used (the worker's for
                the baseline, which it does not take part in)."""
                run_id[0] = uuid.uuid4().hex[:6]
                send, reader, proc = subjects[subject]
                cpu = cpu_seconds(proc.pid)
                run = await _drive(send, reader, count, rate, limit_s)
                return run, cpu_seconds(proc.pid) - cpu

            # Warm up every path (first metadata, connections, caches) before measuring.
            for subject in subjects:
                await once(subject, sizes.warm_up, None, 90)
            base_bursts, bursts, peer_bursts, cpu_per_call, peer_cpu = [], [], [], [], []
            for _ in range(sizes.runs):
                base_bursts.append((await once("baseline", sizes.burst, None, 120))[0])
                run, cpu = await once("enricher", sizes.burst, None, 120)
                bursts.append(run)
                cpu_per_call.append(cpu / max(len(run.latencies_ms), 1) * 1000)
                run, cpu = await once("peer", sizes.burst, None, 240)
                peer_bursts.append(run)
                peer_cpu.append(cpu / max(len(run.latencies_ms), 1) * 1000)
            # Let the worker finish what the bursts left (holds due, commits) before the
            # latency runs: they measure a steady load, not the end of a burst.
            await asyncio.sleep(sizes.settle_s)
            count = int(RATE * sizes.latency_s)
            base_paced, paced = [], []
            for _ in range(sizes.runs):
                base_paced.append((await once("baseline", count, RATE, 60))[0])
                paced.append((await once("enricher", count, RATE, 60))[0])
        finally:
            await peer_reader.stop()
            await enr_reader.stop()
            await base_reader.stop()
            await producer.stop()
    return [
        _throughput(bursts, base_bursts, cpu_per_call),
        _peer(peer_bursts, bursts, peer_cpu, cpu_per_call),
        _latency(paced, base_paced),
    ]


def _throughput(bursts: list[Run], base: list[Run], cpu_ms: list[float]) -> PathResult:
    rate = median([r.rate for r in bursts])
    base_rate = median([r.rate for r in base])
    all_lat = [x for r in bursts for x in r.latencies_ms]
    return PathResult(
        path="enricher",
        unit="missed calls/s",
        rate=rate,
        baseline="raw aiokafka round trip, events/s",
        baseline_rate=base_rate,
        p50_ms=percentile(all_lat, 50),
        p99_ms=percentile(all_lat, 99),
        delivered=sum(len(r.latencies_ms) for r in bursts),
        sent=sum(r.sent for r in bursts),
        target=f">= {TARGET_RATE:,.0f}/s on one process and >= {TARGET_RATIO}x the round trip",
        met=rate >= TARGET_RATE and rate >= TARGET_RATIO * base_rate,
        runs=len(bursts),
        extra={
            "burst": bursts[0].sent,
            "rates": [round(r.rate) for r in bursts],
            "baseline_rates": [round(r.rate) for r in base],
            "worker_cpu_ms_per_call": round(median(cpu_ms), 3),
        },
    )


def _peer(
    peer: list[Run], ours: list[Run], peer_cpu_ms: list[float], our_cpu_ms: list[float]
) -> PathResult:
    """The Quix Streams peer's bursts, next to our enricher's in the same run."""
    rate = median([r.rate for r in peer])
    our_rate = median([r.rate for r in ours])
    all_lat = [x for r in peer for x in r.latencies_ms]
    return PathResult(
        path="enricher_peer",
        unit="missed calls/s",
        rate=rate,
        baseline="our enricher, same bursts (ratio: peer / ours)",
        baseline_rate=our_rate,
        p50_ms=percentile(all_lat, 50),
        p99_ms=percentile(all_lat, 99),
        delivered=sum(len(r.latencies_ms) for r in peer),
        sent=sum(r.sent for r in peer),
        target="our enricher ahead of the Quix Streams 3.x peer",
        met=our_rate > rate,
        runs=len(peer),
        extra={
            "rates": [round(r.rate) for r in peer],
            "ours": [round(r.rate) for r in ours],
            "peer_cpu_ms_per_call": round(median(peer_cpu_ms), 3),
            "our_cpu_ms_per_call": round(median(our_cpu_ms), 3),
        },
    )


def _latency(paced: list[Run], base: list[Run]) -> PathResult:
    p50 = median([percentile(r.latencies_ms, 50) for r in paced])
    p99 = median([percentile(r.latencies_ms, 99) for r in paced])
    base_p50 = median([percentile(r.latencies_ms, 50) for r in base])
    base_p99 = median([percentile(r.latencies_ms, 99) for r in base])
    delivered = sum(len(r.latencies_ms) for r in paced)
    sent = sum(r.sent for r in paced)
    return PathResult(
        path="enricher_latency",
        unit="missed calls/s",
        rate=median([r.rate for r in paced]),
        baseline="raw aiokafka round trip at the same offered rate",
        baseline_rate=median([r.rate for r in base]),
        p50_ms=p50,
        p99_ms=p99,
        delivered=delivered,
        sent=sent,
        target=f"p99 <= {TARGET_P99_FACTOR:g}x the round trip's at {RATE:g}/s offered",
        met=delivered == sent and p99 <= TARGET_P99_FACTOR * base_p99,
        baseline_p50_ms=base_p50,
        baseline_p99_ms=base_p99,
        runs=len(paced),
        extra={
            "offered_rate": RATE,
            "seconds": paced[0].sent / RATE,
            "p99s": [round(percentile(r.latencies_ms, 99), 1) for r in paced],
            "baseline_p99s": [round(percentile(r.latencies_ms, 99), 1) for r in base],
        },
    )


def measure(quick: bool) -> list[PathResult]:
    """Both enricher paths; ``quick``: one small run of each (a smoke run, ~10 s)."""
    return asyncio.run(_measure(QUICK if quick else FULL))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small run of each")
    args = parser.parse_args(argv)
    from bench.__main__ import table  # the runner's table, for this path alone

    print(table(measure(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
