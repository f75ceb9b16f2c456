"""Bench: the most records/s a faust agent reads (and forwards) here, next to raw aiokafka.

Why the enricher is where it is. A missed call costs the enricher three records read by faust
agents (its popup, itself, and its by-caller record in stage two) and five written. This
measures what faust's per-record path allows with no work at all in the agent, on the same
broker and records as ``bench/enricher/path.py``, alternating with an aiokafka consumer of the
same records in the same run:

- ``read``: an agent that only iterates ``stream.events()`` (each event acked by faust), against
  an aiokafka ``getmany`` loop committing after each batch;
- ``forward``: the same, each record sent on to a second topic (faust ``Topic.send`` in the
  agent, with the faust enricher's producer settings, ``FAUST_BATCHING``), against aiokafka
  sending each batch and awaiting its deliveries before the commit.

Each run is a child process with a consumer group of its own, timed from its first record
read to its last; medians of ``--runs``. Talks to the local broker only, bounded in count.

    python -m bench.enricher.ceiling [--runs 3] [--count 30000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic

from bench.enricher.path import _event
from bench.processes import bench_env, delete_bench_topics, settings_of
from bench.results import median
from topics.catalog import CALL_PARTITIONS, WEBHOOK_MISSED_CALL
from workers import json_codec
from workers.config import Settings
from workers.kafka import admin_client, new_producer

__all__ = ["MODES", "measure"]

MODES = ("read", "forward")
CHILD_LIMIT_S = 300
RESULT_FILE_VAR = "BENCH_CEILING_RESULT"
# What the enricher's faust app was given before it moved to the batch core: a 5 ms linger,
# 256 KiB producer batches, 1,000 records per poll.
FAUST_BATCHING: dict[str, Any] = {
    "producer_linger": 0.005,
    "producer_max_batch_size": 262_144,
    "broker_max_poll_records": 1000,
}


def _child_faust(settings: Settings, mode: str, source: str, dest: str, count: int) -> None:
    """Run one faust app whose agent reads ``count`` records, print the rate, exit."""
    import faust

    from workers.plumbing.faust_app import new_app, raw_topic

    app = new_app(f"bench-ceiling-{uuid.uuid4().hex[:6]}", settings, 1, **FAUST_BATCHING)
    src = raw_topic(app, source, partitions=CALL_PARTITIONS)
    dst = raw_topic(app, dest, partitions=CALL_PARTITIONS)
    seen = {"n": 0, "t0": 0.0}

    async def each(stream: Any) -> None:
        async for event in stream.events():
            if not seen["n"]:
                seen["t0"] = time.perf_counter()
            if mode == "forward":
                await dst.send(key=event.key, value=event.value)
            seen["n"] += 1
            if seen["n"] == count:
                if mode == "forward":
                    await app.producer.flush()
                _report(count, time.perf_counter() - seen["t0"])
                os._exit(0)  # the figure is out; faust's shutdown is not part of it

    app.agent(src, name="ceiling")(each)
    worker = faust.Worker(app, loglevel="warn", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


async def _child_raw(settings: Settings, mode: str, source: str, dest: str, count: int) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}bench-ceiling-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=1000,
    )
    producer = new_producer(settings, linger_ms=5, max_batch_size=262_144)
    await consumer.start()
    await producer.start()
    try:
        n, t0 = 0, 0.0
        while n < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            if batches and not n:
                t0 = time.perf_counter()
            deliveries = []
            for records in batches.values():
                for record in records:
                    if mode == "forward":
                        deliveries.append(await producer.send(dest, record.value, key=record.key))
                    n += 1
            await asyncio.gather(*deliveries)
            if batches:
                await consumer.commit()
        _report(count, time.perf_counter() - t0)
    finally:
        await producer.stop()
        await consumer.stop()


def _report(count: int, seconds: float) -> None:
    # faust sends a worker's stdout to its log: the figure goes to a file the parent names.
    Path(os.environ[RESULT_FILE_VAR]).write_bytes(json_codec.dumps({"rate": count / seconds}))


async def _fill(settings: Settings, source: str, dest: str, count: int) -> None:
    async with admin_client(settings) as admin:
        topics = [NewTopic(name, CALL_PARTITIONS, 1) for name in (source, dest)]
        await admin.create_topics(topics)
    producer = new_producer(settings, linger_ms=5, max_batch_size=262_144)
    await producer.start()
    try:
        deliveries = []
        for i in range(count):
            sid = f"CA{i:08d}"
            value = _event(WEBHOOK_MISSED_CALL, sid, i)
            deliveries.append(await producer.send(source, value, key=sid.encode()))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


def _run_child(env: dict[str, str], engine: str, mode: str, source: str, count: int) -> float:
    argv = [sys.executable, "-m", "bench.enricher.ceiling", "--child", engine, mode]
    argv += ["--source", source, "--count", str(count)]
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as work:
        result = Path(work) / "result.json"
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            argv,
            env={**env, RESULT_FILE_VAR: str(result)},
            capture_output=True,
            timeout=CHILD_LIMIT_S,
            check=False,
        )
        if result.exists():
            return float(json_codec.loads(result.read_bytes())["rate"])
    output = (done.stdout + done.stderr).decode(errors="replace")
    raise SystemExit(f"ceiling {engine} {mode}: no figure\n{output[-3000:]}")


def measure(runs: int, count: int) -> list[dict[str, Any]]:
    """One result per mode: faust's and aiokafka's medians of ``runs`` alternating runs."""
    env = bench_env()
    settings = settings_of(env)
    source = f"{settings.topic_prefix}bench-ceiling-source"
    asyncio.run(_fill(settings, source, _dest(source), count))
    try:
        rates: dict[tuple[str, str], list[float]] = {}
        for _ in range(runs):
            for mode in MODES:
                for engine in ("aiokafka", "faust"):
                    rate = _run_child(env, engine, mode, source, count)
                    rates.setdefault((engine, mode), []).append(rate)
    finally:
        delete_bench_topics(settings)
    out = []
    for mode in MODES:
        faust_rate = median(rates[("faust", mode)])
        raw_rate = median(rates[("aiokafka", mode)])
        out.append(
            {
                "path": f"faust_agent_{mode}",
                "unit": "records/s",
                "rate": round(faust_rate),
                "baseline": f"aiokafka getmany loop ({mode})",
                "baseline_rate": round(raw_rate),
                "ratio": round(faust_rate / raw_rate, 3),
                "records": count,
                "runs": runs,
                "rates": [round(r) for r in rates[("faust", mode)]],
                "baseline_rates": [round(r) for r in rates[("aiokafka", mode)]],
            }
        )
    return out


def _dest(source: str) -> str:
    return f"{source}-forwarded"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=30_000, help="records per run")
    parser.add_argument("--json", action="store_true", help="one JSON object per mode")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        engine, mode = args.child
        settings = settings_of(dict(os.environ))
        if engine == "faust":
            sys.argv = [sys.argv[0], "worker"]  # faust's command line: run the worker
            _child_faust(settings, mode, args.source, _dest(args.source), args.count)
        else:
            asyncio.run(_child_raw(settings, mode, args.source, _dest(args.source), args.count))
        return 0
    results = measure(args.runs, args.count)
    if args.json:
        for result in results:
            print(json_codec.dumps(result).decode())
        return 0
    print(f"runs={args.runs}, medians; {args.count:,} records of the enricher's input size")
    print("| agent | faust records/s | aiokafka records/s | faust / aiokafka |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['path']} | {r['rate']:,} | {r['baseline_rate']:,} | {r['ratio']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
