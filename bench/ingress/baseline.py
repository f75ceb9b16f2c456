"""The baseline: a raw aiokafka producer loop sending the records the ingress would send.

Same producer settings as the ingress (idempotent, acks=all, via workers.kafka), the same
CloudEvent bytes, the same concurrency (that many sends awaiting their ack at once). Prints one
JSON line: records/s and p50/p99 of send-to-ack latency in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime

from topics.catalog import WEBHOOK_INCOMING_CALL
from topics.events import make_event
from workers import json_codec
from workers.config import Settings
from workers.ingress.normalize import normalize
from workers.kafka import started_producer


def record(n: int, worker: int) -> tuple[str, bytes]:
    payload = {
        "event": "incoming_call",
        "call_sid": f"bench_{worker}_{n}",
        "from": "+919876543210",
        "to": "sip:user@app.exotel.com",
        "timestamp": "2024-06-15T10:30:00.000Z",
    }
    norm = normalize(
        "popup",
        payload,
        "json",
        customer_id="bench",
        app_id="app",
        received_at=datetime.now(UTC),
        local_zone=UTC,
    )
    event = make_event(
        norm.spec, norm.data, source="/bench", event_id=norm.event_id, time=norm.time
    )
    return norm.key, event.to_bytes()


async def main(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    topic = settings.topic(WEBHOOK_INCOMING_CALL).name
    latencies: list[float] = []
    # Built before the clock starts: the baseline measures the producer, nothing else.
    pool = [record(n, 0) for n in range(5000)]
    async with started_producer(settings, client_id="exopipe-bench") as producer:
        deadline = time.monotonic() + args.seconds

        async def worker(w: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                key, value = pool[(w * 7919 + n) % len(pool)]
                started = time.monotonic()
                await producer.send_and_wait(topic, value, key=key.encode())
                latencies.append(time.monotonic() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
        elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100)
    result = {
        "rps": len(latencies) / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "count": len(latencies),
    }
    sys.stdout.write(json_codec.dumps(result).decode() + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
