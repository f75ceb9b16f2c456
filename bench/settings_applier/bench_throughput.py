"""Settings worker throughput against the Exotel double with 100 ms added latency.

For each in-flight bound N, in the same run and against the same double:

* **bound**: the theoretical ceiling, N / latency (N calls each taking at least 100 ms);
* **direct**: plain ``httpx.AsyncClient`` s (N connections, in clients of 8 as the worker's) doing
  the same PUTs with N in flight, in order per app, no Kafka: what the double and the HTTP stack
  allow on this machine (``--one-pool`` also runs one client with one pool of N connections);
* **worker**: ``exopipe worker settings`` with ``EXOPIPE_APPLIER_IN_FLIGHT=N`` applying
  ``--apps`` x ``--per-app`` commands produced up front, timed from the first command produced to
  the last result read (the worker is started and warmed up once, before anything is timed).

Runs of the direct client and the worker alternate; medians of ``--repeat`` runs. Each run also
records the CPU seconds the worker (or the direct client's own process) and the double used, so
the figures say where the two cores went. Loopback only, bounded in count and time. Needs the
local stack::

    eval "$(exopipe stack up)"
    python -m bench.settings_applier.bench_throughput --in-flight 16 64 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import TopicPartition

from bench.kafka_io import wait_for_leaders
from bench.processes import bench_env, free_port, running, settings_of
from bench.results import median, percentile
from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT
from topics.events import make_event, parse_event
from workers import json_codec
from workers.config import Settings
from workers.exotel_double.control import AsyncDoubleControl
from workers.kafka import admin_client, new_reader, started_producer
from workers.topic_admin import apply_catalog

__all__ = ["Double", "Run", "Worker", "double", "run_direct", "run_worker", "worker"]

LATENCY_S = 0.1
CUSTOMER = "bench"
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One timed run: how many commands, how long, each one's latency, and the CPU it cost."""

    sent: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    duplicates: int = 0
    subject_cpu_s: float = 0.0  # the worker (or, for direct, this process)
    double_cpu_s: float = 0.0

    @property
    def delivered(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


@dataclass
class Double:
    """A private Exotel double (its own port) with ``apps`` registered and tokens in ``secrets``."""

    ctl: AsyncDoubleControl
    pid: int
    apps: list[str]
    tokens: dict[str, str]
    secrets: Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a (child) process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@asynccontextmanager
async def double(apps: int, work: Path) -> AsyncIterator[Double]:
    """Start the double as a child process with ``apps`` apps and 100 ms latency."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603, ASYNC220 - set-up, before anything is timed
        [sys.executable, "-m", "workers.exotel_double", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with AsyncDoubleControl(f"http://127.0.0.1:{port}") as ctl:
            for _ in range(100):
                try:
                    await ctl.health()
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            names = [f"app{i:03d}" for i in range(apps)]
            tokens = {app: f"tok-{uuid.uuid4().hex}" for app in names}
            for app in names:
                await ctl.register_app(CUSTOMER, app, tokens[app])
            secrets = work / "secrets.json"
            secrets.write_bytes(
                json_codec.dumps({"exotel_apps": {f"{CUSTOMER}/{a}": t for a, t in tokens.items()}})
            )
            await ctl.set_latency(LATENCY_S * 1000)
            yield Double(ctl, proc.pid, names, tokens, secrets)
    finally:
        proc.terminate()
        proc.wait(timeout=30)  # noqa: ASYNC101 - tear-down


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    settings: Settings


@asynccontextmanager
async def worker(dbl: Double, in_flight: int, work: Path) -> AsyncIterator[Worker]:
    """``exopipe worker settings`` on fresh topics, pointed at the double (not yet warmed up)."""
    env = bench_env(
        EXOPIPE_EXOTEL_BASE_URL=dbl.ctl.api_base_url,
        EXOPIPE_SECRETS_FILE=str(dbl.secrets),
        EXOPIPE_APPLIER_IN_FLIGHT=str(in_flight),
        EXOPIPE_APPLIER_RECONCILE_INTERVAL="0",
        EXOPIPE_WORKER_DATA_DIR=str(work / f"data-{uuid.uuid4().hex[:6]}"),
    )
    settings = settings_of(env)
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    await wait_for_leaders(settings, settings.topic_prefix)
    log = work / f"worker-{settings.topic_prefix}log"
    with running(["worker", "settings"], env, log) as proc:
        yield Worker(proc, settings)


def _command(app: str, i: int) -> Any:
    data = {
        "command_id": f"bench-{uuid.uuid4()}",
        "customer_id": CUSTOMER,
        "app_id": app,
        "settings": {"popup_url": f"https://bench.example.com/{app}/{i}"},
    }
    return make_event(SETTINGS_COMMAND, data, source="bench", customer_id=CUSTOMER, app_id=app)


async def run_worker(dbl: Double, wrk: Worker, per_app: int, limit_s: float = 300) -> Run:
    """Produce ``per_app`` commands for every app at once; time until every result is read."""
    settings = wrk.settings
    spec = settings.topic(SETTINGS_RESULT)
    reader = new_reader(settings, client_id="exopipe-bench-settings")
    await reader.start()
    tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
    reader.assign(tps)
    await reader.seek_to_end(*tps)
    for tp in tps:
        await reader.position(tp)
    events = [_command(app, i) for i in range(per_app) for app in dbl.apps]
    run = Run(sent=len(events))
    sent_at: dict[str, float] = {}
    arrived: set[str] = set()
    topic = settings.topic(SETTINGS_COMMAND).name
    try:
        async with started_producer(settings) as producer:
            cpu0, dcpu0 = cpu_seconds(wrk.proc.pid), cpu_seconds(dbl.pid)
            started = time.perf_counter()
            for event in events:
                sent_at[event.data["command_id"]] = time.perf_counter()
                key = f"{CUSTOMER}/{event.data['app_id']}".encode()
                await producer.send(topic, event.to_bytes(), key=key)
            await producer.flush()
            while len(arrived) < len(events):
                if time.perf_counter() - started > limit_s:
                    break
                if wrk.proc.poll() is not None:
                    raise SystemExit("settings bench: the worker exited during the run")
                batches = await reader.getmany(timeout_ms=100, max_records=5000)
                now = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        command_id = parse_event(record.value).data["command_id"]
                        if command_id in arrived:
                            run.duplicates += 1
                        elif command_id in sent_at:
                            arrived.add(command_id)
                            run.latencies_ms.append((now - sent_at[command_id]) * 1000)
            run.seconds = time.perf_counter() - started
            run.subject_cpu_s = cpu_seconds(wrk.proc.pid) - cpu0
            run.double_cpu_s = cpu_seconds(dbl.pid) - dcpu0
    finally:
        await reader.stop()
    return run


async def warm_up(dbl: Double, wrk: Worker, limit_s: float = 120) -> None:
    """One command per app until every result is out: start-up and first fetches not timed."""
    run = await run_worker(dbl, wrk, 1, limit_s)
    if run.delivered < run.sent:
        raise SystemExit(f"settings bench: {run.sent - run.delivered} warm-up results missing")


async def run_direct(dbl: Double, per_app: int, in_flight: int, pool_size: int = 8) -> Run:
    """The same PUTs from plain httpx clients, ``in_flight`` connections in all, no Kafka.

    Connections are split into clients of ``pool_size`` as the worker's client does (the least
    busy client takes the next call); ``pool_size=in_flight`` is one client with one big pool.
    """
    slots = asyncio.Semaphore(in_flight)
    count = -(-in_flight // pool_size)
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
    clients = [httpx.AsyncClient(timeout=30, limits=limits) for _ in range(count)]
    busy = [0] * count
    run = Run(sent=len(dbl.apps) * per_app)
    base = dbl.ctl.api_base_url

    async def one_app(app: str) -> None:
        for i in range(per_app):  # in order per app, as the worker does
            async with slots:
                pick = min(range(count), key=busy.__getitem__)
                busy[pick] += 1
                try:
                    response = await clients[pick].put(
                        f"{base}/{CUSTOMER}/apps/{app}/settings",
                        content=json_codec.dumps({"popup_url": f"https://d.example.com/{i}"}),
                        headers={
                            "Authorization": f"Bearer {dbl.tokens[app]}",
                            "Content-Type": "application/json",
                        },
                    )
                finally:
                    busy[pick] -= 1
                response.raise_for_status()
            # Like a command produced at the start: its latency runs from there.
            run.latencies_ms.append((time.perf_counter() - started) * 1000)

    try:
        cpu0, dcpu0 = _own_cpu_seconds(), cpu_seconds(dbl.pid)
        started = time.perf_counter()
        await asyncio.gather(*(one_app(app) for app in dbl.apps))
        run.seconds = time.perf_counter() - started
        run.subject_cpu_s = _own_cpu_seconds() - cpu0
        run.double_cpu_s = cpu_seconds(dbl.pid) - dcpu0
    finally:
        for client in clients:
            await client.aclose()
    await dbl.ctl.clear_requests()  # the double keeps a log of every request
    return run


async def main(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="exopipe-bench-settings-") as tmp:
        work = Path(tmp)
        async with double(args.apps, work) as dbl:
            for in_flight in args.in_flight:
                direct: list[Run] = []
                one: list[Run] = []
                worked: list[Run] = []
                async with worker(dbl, in_flight, work) as wrk:
                    await warm_up(dbl, wrk)
                    await dbl.ctl.clear_requests()
                    for _ in range(args.repeat):
                        if not args.no_direct:
                            direct.append(await run_direct(dbl, args.per_app, in_flight))
                        if args.one_pool:
                            one.append(await run_direct(dbl, 1, in_flight, in_flight))
                        worked.append(await run_worker(dbl, wrk, args.per_app))
                        await dbl.ctl.clear_requests()
                rows.append((in_flight, direct, one, worked))
    total = args.apps * args.per_app
    print(
        f"\n{args.apps} apps x {args.per_app} commands = {total} per run, latency "
        f"{LATENCY_S * 1000:.0f} ms, median of {args.repeat}\n"
    )
    print(
        "| in-flight | bound N/latency (cmd/s) | direct httpx (cmd/s) | worker (cmd/s) "
        "| worker / bound | worker / direct | worker CPU ms/cmd | double CPU ms/req "
        "| one-pool httpx (cmd/s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for in_flight, direct, one, worked in rows:
        bound = in_flight / LATENCY_S
        direct_rate = median([r.rate for r in direct]) if direct else float("nan")
        rate = median([r.rate for r in worked])
        cpu = median([r.subject_cpu_s * 1000 / r.sent for r in worked])
        dcpu = median([r.double_cpu_s * 1000 / r.sent for r in worked])
        print(
            f"| {in_flight} | {bound:.0f} | {direct_rate:.0f} | {rate:.0f} | {rate / bound:.2f} "
            f"| {rate / direct_rate:.2f} | {cpu:.2f} | {dcpu:.2f} "
            f"| {median([r.rate for r in one]) if one else float('nan'):.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--per-app", type=int, default=15)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-direct", action="store_true", help="worker runs only (profiling)")
    parser.add_argument(
        "--one-pool", action="store_true", help="also one httpx client with one pool, 1 PUT/app"
    )
    asyncio.run(main(parser.parse_args()))
