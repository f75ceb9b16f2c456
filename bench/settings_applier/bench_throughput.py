"""Settings worker throughput against the Exotel double with 100 ms added latency.

For each in-flight bound N, in the same run:

* **bound**: the theoretical ceiling, N / latency (N calls each taking at least 100 ms);
* **direct**: N concurrent PUTs straight from httpx to the double (no Kafka): what the double and
  the HTTP stack allow, the measured ceiling;
* **worker**: ``exopipe worker settings`` with ``EXOPIPE_APPLIER_IN_FLIGHT=N`` applying
  ``--apps`` x ``--per-app`` commands produced up front, timed from the first command produced to
  the last result read (the worker is warmed up first, so start-up is not counted).

Medians of ``--repeat`` runs. Loopback only, bounded in count and time. Needs the local stack::

    eval "$(exopipe stack up)"
    python bench/settings_applier/bench_throughput.py --in-flight 16 64 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT
from topics.events import make_event, parse_event
from workers import json_codec
from workers.config import Settings
from workers.exotel_double.control import AsyncDoubleControl
from workers.kafka import admin_client, started_producer
from workers.topic_admin import apply_catalog

LATENCY_S = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(customer: str, app: str, i: int) -> Any:
    data = {
        "command_id": f"bench-{uuid.uuid4()}",
        "customer_id": customer,
        "app_id": app,
        "settings": {"popup_url": f"https://bench.example.com/{app}/{i}"},
    }
    return make_event(SETTINGS_COMMAND, data, source="bench", customer_id=customer, app_id=app)


async def read_results(settings: Settings, ids: set[str], limit_s: float) -> float:
    """Seconds until every id in ``ids`` has a result (from the call), or raise on timeout."""
    spec = settings.topic(SETTINGS_RESULT)
    consumer = AIOKafkaConsumer(
        spec.name,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    started = time.monotonic()
    try:
        while ids:
            if time.monotonic() - started > limit_s:
                raise TimeoutError(f"{len(ids)} results missing after {limit_s}s")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    ids.discard(parse_event(record.value).data["command_id"])
        return time.monotonic() - started
    finally:
        await consumer.stop()


async def run_worker(
    base_env: dict[str, str],
    ctl: AsyncDoubleControl,
    apps: list[str],
    customer: str,
    per_app: int,
    in_flight: int,
    secrets: Path,
    log_dir: Path,
) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:10]}."
    env = {
        **base_env,
        "EXOPIPE_TOPIC_PREFIX": prefix,
        "EXOPIPE_EXOTEL_BASE_URL": ctl.api_base_url,
        "EXOPIPE_SECRETS_FILE": str(secrets),
        "EXOPIPE_APPLIER_IN_FLIGHT": str(in_flight),
        "EXOPIPE_APPLIER_RECONCILE_INTERVAL": "0",
        "EXOPIPE_LOG_LEVEL": "WARNING",
    }
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("EXOPIPE_")})
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=prefix)
    # Set-up outside the timed section: blocking calls are fine here.
    log = open(log_dir / f"worker-{prefix}log", "wb")  # noqa: ASYNC230, SIM115 - closed below
    process = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "workers.cli", "worker", "settings"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    topic = settings.topic(SETTINGS_COMMAND).name
    try:
        async with started_producer(settings) as producer:
            warm = command(customer, apps[0], -1)
            await producer.send_and_wait(
                topic, warm.to_bytes(), key=f"{customer}/{apps[0]}".encode()
            )
            await read_results(settings, {warm.data["command_id"]}, 120)
            events = [command(customer, app, i) for i in range(per_app) for app in apps]
            ids = {e.data["command_id"] for e in events}
            reader = asyncio.create_task(read_results(settings, set(ids), 300))
            await asyncio.sleep(1)  # the reader has joined and sits at the end
            started = time.monotonic()
            for event in events:
                key = f"{customer}/{event.data['app_id']}".encode()
                await producer.send(topic, event.to_bytes(), key=key)
            await producer.flush()
            await reader
            return time.monotonic() - started
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def run_direct(
    ctl: AsyncDoubleControl,
    tokens: dict[str, str],
    customer: str,
    apps: list[str],
    per_app: int,
    in_flight: int,
) -> float:
    slots = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one_app(app: str) -> None:
            for i in range(per_app):  # in order per app, as the worker does
                async with slots:
                    response = await client.put(
                        f"{ctl.api_base_url}/{customer}/apps/{app}/settings",
                        content=json_codec.dumps({"popup_url": f"https://d.example.com/{i}"}),
                        headers={
                            "Authorization": f"Bearer {tokens[app]}",
                            "Content-Type": "application/json",
                        },
                    )
                    response.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(one_app(app) for app in apps))
        return time.monotonic() - started


async def main(args: argparse.Namespace) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("EXOPIPE_")}
    base_env |= {k: v for k, v in os.environ.items() if k.startswith("EXOPIPE_KAFKA")}
    port = free_port()
    double = subprocess.Popen(  # noqa: ASYNC220 - set-up, before anything is timed
        [sys.executable, "-m", "workers.exotel_double", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    work = Path(tempfile.mkdtemp(prefix="exopipe-bench-"))
    try:
        async with AsyncDoubleControl(f"http://127.0.0.1:{port}") as ctl:
            for _ in range(100):
                try:
                    await ctl.health()
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            customer = "bench"
            apps = [f"app{i:03d}" for i in range(args.apps)]
            tokens = {app: f"tok-{uuid.uuid4().hex}" for app in apps}
            for app in apps:
                await ctl.register_app(customer, app, tokens[app])
            secrets = work / "secrets.json"
            secrets.write_bytes(
                json_codec.dumps({"exotel_apps": {f"{customer}/{a}": t for a, t in tokens.items()}})
            )
            await ctl.set_latency(LATENCY_S * 1000)
            total = args.apps * args.per_app
            rows = []
            for in_flight in args.in_flight:
                direct, worker = [], []
                for _ in range(args.repeat):
                    direct.append(
                        total
                        / await run_direct(ctl, tokens, customer, apps, args.per_app, in_flight)
                    )
                    seconds = await run_worker(
                        base_env, ctl, apps, customer, args.per_app, in_flight, secrets, work
                    )
                    worker.append(total / seconds)
                bound = in_flight / LATENCY_S
                rows.append(
                    (in_flight, bound, statistics.median(direct), statistics.median(worker))
                )
                await ctl.clear_requests()
        print(
            f"\n{args.apps} apps x {args.per_app} commands = {total} per run, latency "
            f"{LATENCY_S * 1000:.0f} ms, median of {args.repeat}\n"
        )
        print(
            "| in-flight | bound N/latency (cmd/s) | direct httpx (cmd/s) | worker (cmd/s) "
            "| worker / bound | worker / direct |"
        )
        print("|---:|---:|---:|---:|---:|---:|")
        for in_flight, bound, direct_rate, worker_rate in rows:
            print(
                f"| {in_flight} | {bound:.0f} | {direct_rate:.0f} | {worker_rate:.0f} "
                f"| {worker_rate / bound:.2f} | {worker_rate / direct_rate:.2f} |"
            )
    finally:
        double.send_signal(signal.SIGTERM)
        double.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--per-app", type=int, default=5)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
