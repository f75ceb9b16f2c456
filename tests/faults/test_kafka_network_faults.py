"""Network faults between the pipeline's processes and Kafka, through our TCP fault proxy: 0.3 s
of latency per chunk, then every connection reset (new ones too), then a blackhole, healed by
resetting the connections it held. The blackhole outlasts what matters to each client: the
ingress producer's 30 s request timeout, the consumer-group sessions of the archiver (10 s), the
settings worker (6 s) and the enricher (8 s). The same invariants as for a broker that is paused
or killed, checked with unique ids; duplicates are counted apart.

A proxy in front of a broker is bypassed as soon as clients learn the broker's advertised
listener, so the private Kafka here (other ports, another home) advertises the proxy's port: the
proxy listens on a port chosen before the broker starts, and every client connection, bootstrap
or not, goes through it. The KRaft controller's listener does not: the broker keeps its quorum
while its clients are cut off. Each test checks that its process has no connection that bypasses
the proxy.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import PipelineEnv
from tests.integration.archiver.conftest import archiver_env, make_rig, ready_event
from tests.integration.archiver.conftest import double as recording_double
from tests.integration.enricher.conftest import Inputs, at, enricher_env, workers
from tests.integration.enricher.conftest import Worker as Enricher
from tests.integration.ingress.test_spool_restart import free_port, new_private_kafka
from tests.integration.kafka_io import collect, read_raw
from tests.integration.settings_applier.conftest import (
    Apps,
    Worker,
    assert_applied_once_in_order,
    command_event,
    results,
)
from topics.catalog import (
    CALL_PARTITIONS,
    MISSED_CALL_ENRICHED,
    SETTINGS_COMMAND,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_RECORDING_READY,
    WEBHOOK_REJECTED,
)
from topics.events import CloudEvent, format_time
from workers import json_codec
from workers.config import Settings
from workers.exotel_double.control import AsyncDoubleControl, DoubleControl
from workers.kafka import admin_client, new_producer, started_producer
from workers.localstack.manager import LocalStack
from workers.plumbing.faust_app import new_app
from workers.topic_admin import apply_catalog

from .rebalance import ASSIGNED, Load, committed_offsets, drain, lost_report, positions
from .tcp_proxy import FaultProxy
from .test_broker_faults import WebhookLoad, drain_and_read, ingress_with_topics
from .test_enricher_rebalance import (
    RING_S,
    _caller,
    _check_record,
    _missed_at,
    _sid_on,
    _stage_two_notes,
    _with_popup,
)
from .test_object_store_faults import check_archived_once, wait_until_archived

# The shared double's control client (a session fixture), under another name: ``double`` is the
# settings worker's in-process double (the suite's conftest).
recording_double = recording_double  # noqa: PLW0127
# The enricher's fixtures: its variables (on this module's Kafka) and its worker processes.
enricher_env, workers = enricher_env, workers  # noqa: PLW0127

LATENCY_S = 0.3  # per chunk, each way
LATENCY_PHASE_S = 6.0
RESET_PHASE_S = 4.0
# The ingress's producer gives up on a request after 30 s (workers.kafka.new_producer), so the
# blackhole outlasts it: the producer times out, reconnects into the blackhole, and only the heal
# lets its batches through.
INGRESS_BLACKHOLE_S = 35.0
# The archiver's consumer group forgets a member after 10 s without heartbeats (the test's
# EXOPIPE_RECORDING_SESSION_TIMEOUT): the worker comes back to a rebalance.
ARCHIVER_BLACKHOLE_S = 15.0
# The settings worker's group forgets it after 6 s (EXOPIPE_APPLIER_SESSION_TIMEOUT of the
# settings fixtures): the same, twice over.
SETTINGS_BLACKHOLE_S = 12.0
# The enricher's group forgets it after 8 s (EXOPIPE_ENRICHER_SESSION_TIMEOUT_SECONDS of its
# fixtures): the same, twice over.
ENRICHER_BLACKHOLE_S = 16.0

# What faust logs while a table recovery waits for changelog records that never come.
RECOVERY_HANG = "No event received for active tp"
CALLS = 6
APPS = 8
ROUND_S = 1.0  # one command per app each round
MAX_ROUNDS = 90
APPLIED_LINE = ": applied (attempts"
# Sent before the faults, at the end of the latency (all at once, so that the resets find the
# worker with work in hand), after the heal.
RECORDINGS = (24, 24, 8)
SIZE = 2 * 1024 * 1024
ARCHIVED_LINE = re.compile(r"\barchived (CA\S+) \(partition")
CALLERS = CALL_PARTITIONS  # the enricher's load: caller i's calls all go to partition i
MISSED_MAX_ROUNDS = 60  # one missed call per caller each round (ROUND_S)


@pytest.fixture(scope="module")
async def proxied_kafka(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[LocalStack, FaultProxy]]:
    """A Kafka of this module's own whose clients all connect through a :class:`FaultProxy`."""
    port = free_port()
    kafka = new_private_kafka(tmp_path_factory.mktemp("kafka-home"), advertised_kafka_port=port)
    async with FaultProxy(kafka.port("kafka"), port=port) as proxy:
        # In a thread: its readiness probe goes through the proxy, which runs on this loop.
        await asyncio.to_thread(kafka.start_service, "kafka")
        try:
            yield kafka, proxy
        finally:
            await asyncio.to_thread(kafka.stop_service, "kafka", signal.SIGKILL)


async def network_faults(
    proxy: FaultProxy,
    blackhole_s: float,
    *,
    end_of_latency: Callable[[], Awaitable[None]] | None = None,
    on_phase: Callable[[str], None] = lambda phase: None,
) -> None:
    """Latency, then resets, then a blackhole of ``blackhole_s``, then the heal.

    ``end_of_latency`` runs last in the latency phase, and the resets begin as it returns.
    """
    on_phase("latency")
    proxy.latency(LATENCY_S)
    await asyncio.sleep(LATENCY_PHASE_S)
    if end_of_latency is not None:
        await end_of_latency()
    on_phase("reset")
    resets = proxy.resets
    proxy.reset()
    await asyncio.sleep(RESET_PHASE_S)
    assert proxy.resets > resets, "no connection was open to reset"
    on_phase("blackhole")
    proxy.blackhole()
    await asyncio.sleep(blackhole_s)
    on_phase("heal")
    proxy.heal()


@pytest.fixture
def pipeline_env(
    proxied_kafka: tuple[LocalStack, FaultProxy], env_factory: Callable[..., PipelineEnv]
) -> PipelineEnv:
    """The settings worker's fixtures (``topics_env``, ``settings_env``, ``start_worker``) on
    this module's Kafka, through the proxy. Its topics go with the module's Kafka."""
    kafka, _ = proxied_kafka
    return env_factory(EXOPIPE_KAFKA_BOOTSTRAP=kafka.endpoints().kafka_bootstrap)


def remote_ports(pid: int) -> set[int]:
    """The remote ports of ``pid``'s established TCP connections (read from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def assert_only_through_proxy(pid: int, kafka: LocalStack, proxy: FaultProxy) -> None:
    ports = remote_ports(pid)
    assert proxy.port in ports, f"no connection through the proxy: {sorted(ports)}"
    assert kafka.port("kafka") not in ports, "a Kafka connection bypasses the proxy"


async def test_ingress_loses_nothing_through_latency_resets_and_a_blackhole(
    proxied_kafka: tuple[LocalStack, FaultProxy], tmp_path: Path
) -> None:
    kafka, proxy = proxied_kafka
    settings, ingress, url = await ingress_with_topics(kafka, tmp_path, "netfault-")
    calls = [f"call-{i}-{uuid.uuid4().hex[:6]}" for i in range(CALLS)]
    load = WebhookLoad(url, calls, max_per_call=400, pause_s=0.25)
    try:
        await asyncio.to_thread(ingress.start, "/readyz")
        async with httpx.AsyncClient(timeout=15) as client:
            running = asyncio.ensure_future(load.run(client))
            try:
                await asyncio.sleep(2.0)
                assert ingress.proc is not None
                assert_only_through_proxy(ingress.proc.pid, kafka, proxy)
                on_kafka_before = load.deliveries.get("kafka", 0)
                await network_faults(proxy, INGRESS_BLACKHOLE_S)
                await asyncio.sleep(5.0)  # healed: load goes on
            finally:
                load.stop.set()
                await running
        records = await drain_and_read(settings, ingress, load, tmp_path / "spool")
        # Back to answering from Kafka once healed, not stuck on the spool.
        assert load.deliveries["kafka"] > on_kafka_before, load.deliveries
    finally:
        proxy.passthrough()
        ingress.kill()
    print(f"proxy: {proxy.connections} connections, {proxy.resets} reset")
    load.check(records)


async def test_archiver_archives_once_through_latency_resets_and_a_blackhole(
    proxied_kafka: tuple[LocalStack, FaultProxy],
    stack_env: dict[str, str],
    recording_double: DoubleControl,
    tmp_path: Path,
) -> None:
    kafka, proxy = proxied_kafka
    env = archiver_env(
        stack_env,
        tmp_path,
        recording_double,
        EXOPIPE_KAFKA_BOOTSTRAP=kafka.endpoints().kafka_bootstrap,
        EXOPIPE_RECORDING_CONCURRENCY="4",
    )
    rig = await make_rig(env, recording_double, tmp_path)
    served: dict[str, str] = {}

    def batch(stem: str, count: int) -> list[tuple[str, str]]:
        names = [rig.name(f"{stem}{i}") for i in range(count)]
        served.update({f"CA{name}": rig.register(name, SIZE)["sha256"] for name in names})
        return [(f"CA{name}", rig.url(name)) for name in names]

    first, during, after = (batch(stem, n) for stem, n in zip("bda", RECORDINGS, strict=True))
    rig.worker.start()
    try:
        await rig.send(*first)
        await wait_until_archived(rig, {call for call, _ in first}, 3, 60)
        assert rig.worker.proc is not None
        assert_only_through_proxy(rig.worker.proc.pid, kafka, proxy)

        async def send_during() -> None:
            # In one go: one event at a time through the latency would take longer than the
            # worker takes to archive them.
            async with started_producer(rig.settings) as producer:
                topic = rig.settings.topic(WEBHOOK_RECORDING_READY).name
                sent = []
                for call, url in during:
                    value = ready_event(call, url)
                    sent.append(await producer.send(topic, value, key=call.encode()))
                await asyncio.gather(*sent)

        # How many the worker had archived as each phase began (from its log: the proxy is in
        # the way of any reader), to show that the faults hit a worker with work in hand.
        progress: dict[str, int] = {}

        def archived_so_far(phase: str) -> None:
            progress[phase] = len(set(ARCHIVED_LINE.findall(rig.worker.logs())))

        await network_faults(
            proxy, ARCHIVER_BLACKHOLE_S, end_of_latency=send_during, on_phase=archived_so_far
        )
        in_hand = len(first) + len(during) - progress["reset"]
        assert in_hand > 0, f"the worker was idle when the faults began: {progress}"
        await rig.send(*after)
        duplicates = await check_archived_once(rig, served, wait_seconds=60)
        assert rig.worker.alive(), rig.worker.logs()[-3000:]
        print(
            f"recordings {len(served)}, archived as each phase began {progress} "
            f"({in_hand} not yet when the resets began), "
            f"duplicate records {duplicates}; proxy: {proxy.connections} connections, "
            f"{proxy.resets} reset"
        )
    finally:
        proxy.passthrough()
        await asyncio.to_thread(rig.worker.stop)
        await asyncio.to_thread(rig.drop_bucket)


async def test_a_worker_writes_a_record_once_when_its_acknowledgement_is_lost(
    proxied_kafka: tuple[LocalStack, FaultProxy], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The faust workers' producer (``new_app``'s) when the broker's answers are lost.

    Each round sends 10 records through the latency, then resets every connection while the
    broker's answers are held in the proxy: the producer sends the batch again, and only an
    idempotent producer has the broker drop the second copy. Every outcome, enriched record,
    settings result and ledger entry goes through this producer. Found by the archiver test
    above (records on Kafka twice, produced once according to the worker's log): faust turns
    idempotence on only for exactly-once processing, and its producer wrote 50 of 51 records
    twice here until ``new_app`` asked for it.
    """
    kafka, proxy = proxied_kafka
    settings = Settings.from_env(
        {
            "EXOPIPE_KAFKA_BOOTSTRAP": kafka.endpoints().kafka_bootstrap,
            "EXOPIPE_TOPIC_PREFIX": f"acks-{uuid.uuid4().hex[:10]}.",
            "EXOPIPE_WORKER_DATA_DIR": str(tmp_path / "worker-data"),
        }
    )
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    topic = settings.topic(WEBHOOK_RECORDING_READY).name
    producer = await new_app("acks", settings, replication=1).maybe_start_producer()

    async def send(n: int) -> None:
        call = f"CA{n}-{uuid.uuid4().hex[:6]}"
        value = ready_event(call, f"http://localhost/{call}.mp3")
        await producer.send_and_wait(
            topic, call.encode(), value, partition=None, timestamp=None, headers=None
        )

    sent = 0
    try:
        await send(sent)  # connected and metadata known: the rounds lose only answers
        sent += 1
        for _ in range(5):
            proxy.latency(LATENCY_S)
            sends = [asyncio.ensure_future(send(sent + i)) for i in range(10)]
            sent += 10
            await asyncio.sleep(LATENCY_S * 1.5)  # requests forwarded, answers held
            proxy.reset()
            await asyncio.sleep(1.0)
            proxy.passthrough()
            await asyncio.gather(*sends)
    finally:
        proxy.passthrough()
        await producer.stop()
    records = await collect(settings, WEBHOOK_RECORDING_READY, count=2 * sent, wait_seconds=5)
    ids = [event.id for _, event in records]
    # aiokafka logs each failed produce request before it sends the batch again.
    failed = [r for r in caplog.records if r.name == "aiokafka.producer.sender"]
    print(
        f"sent {sent}, on Kafka {len(ids)}, distinct {len(set(ids))}, failed requests {len(failed)}"
    )
    assert failed, "no acknowledgement was lost: nothing was tested"
    assert len(set(ids)) == sent, f"{sent - len(set(ids))} records lost"
    assert len(ids) == sent, f"{len(ids) - sent} records written twice"


async def test_settings_worker_applies_each_command_once_through_latency_resets_and_a_blackhole(
    proxied_kafka: tuple[LocalStack, FaultProxy],
    settings_env: PipelineEnv,
    apps: Apps,
    ctl: AsyncDoubleControl,
    start_worker: Callable[..., Worker],
    unique: Callable[[str], str],
) -> None:
    """One command per app every second through the whole sequence; the blackhole outlasts the
    worker's session, so it comes back to a rebalance (and to its tables' recovery)."""
    kafka, proxy = proxied_kafka
    customer = unique("cust")
    names = [unique("app") for _ in range(APPS)]
    for name in names:
        await apps.add(customer, name)
    await ctl.set_latency(50)  # calls overlap, so order would break if it were not enforced
    commands: list[CloudEvent] = []
    stop = asyncio.Event()

    async def steady_load() -> None:
        """Through one producer that outlives the faults (idempotent, so its retries write each
        command once, in order): a producer started during the faults could not connect. While
        a partition's batch waits to be sent again, the producer holds the next ones: the rounds
        missed meanwhile go out as soon as it lets them, in order."""
        topic = settings_env.settings.topic(SETTINGS_COMMAND).name
        # Longer than resets and blackhole together: no batch expires while they last.
        async with started_producer(settings_env.settings, request_timeout_ms=60_000) as producer:
            sent = []
            start = time.monotonic()
            for i in range(MAX_ROUNDS):
                for name in names:
                    url = f"https://h.example.com/{name}/{i}"
                    command = command_event(customer, name, {"popup_url": url})
                    commands.append(command)
                    key = f"{customer}/{name}".encode()
                    sent.append(await producer.send(topic, command.to_bytes(), key=key))
                next_round = start + (i + 1) * ROUND_S - time.monotonic()
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, next_round))
                    break
                except TimeoutError:
                    pass
            await asyncio.gather(*sent)

    worker = start_worker(EXOPIPE_APPLIER_IN_FLIGHT="4")
    load = asyncio.create_task(steady_load())
    # Commands applied (from the worker's log) and rounds sent as each phase began.
    progress: dict[str, int] = {}
    rounds: dict[str, int] = {}

    def applied_so_far(phase: str) -> None:
        progress[phase] = worker.log().count(APPLIED_LINE)
        rounds[phase] = len(commands) // APPS

    try:
        found = await results(settings_env, APPS, wait_seconds=60)
        # At least: the load goes on, so the next round's results may come in the same read.
        assert len(found) >= APPS, worker.log()[-3000:]
        assert_only_through_proxy(worker.process.pid, kafka, proxy)
        await network_faults(proxy, SETTINGS_BLACKHOLE_S, on_phase=applied_so_far)
        await asyncio.sleep(3 * ROUND_S)  # healed: the load goes on
        assert not load.done(), "the load ended before the heal"
    finally:
        proxy.passthrough()
        stop.set()
    await load
    total = len(commands)
    found = await results(settings_env, total, wait_seconds=60)
    if len(found) < total and RECOVERY_HANG in worker.log():
        # Known and open (RELIABILITY.md §3): after the rejoin, faust's table recovery waited for
        # changelog records that never came, and the worker, still up, processed nothing more
        # (1 run in 11). Reported as such; any other shortfall fails below.
        pytest.xfail(f"faust table recovery hung after the rejoin; {total - len(found)} unanswered")
    assert len(found) == total, (
        f"{total - len(found)} commands without a result\n{worker.log()[-3000:]}"
    )
    found = await results(settings_env, total + 1, wait_seconds=3)  # a duplicate shows here
    assert worker.process.poll() is None, worker.log()[-3000:]
    log = worker.log()
    print(
        f"commands {total} in {total // APPS} rounds, rounds sent as each phase began {rounds}, "
        f"applied {progress}; assignments {log.count('Setting newly assigned partitions')}, "
        f"gaps filled by the continuity guard {log.count('records faust dropped are read')}, "
        f"commands seen again {log.count('already has its result')}; "
        f"proxy: {proxy.connections} connections, {proxy.resets} reset"
    )
    # The faults hit a worker with commands in hand, and the blackhole cost it its membership.
    assert rounds["reset"] * APPS > progress["reset"], (rounds, progress)
    assert log.count("Setting newly assigned partitions") >= 2, "no rebalance after the heal"
    rounds_sent = total // APPS
    wanted = {n: [f"https://h.example.com/{n}/{i}" for i in range(rounds_sent)] for n in names}
    await assert_applied_once_in_order(found, commands, ctl, customer, wanted)


def straight_producer(kafka: LocalStack, proxy: FaultProxy, settings: Settings) -> AIOKafkaProducer:
    """A producer (not started) that reaches the broker at the port it listens on, past the proxy
    the broker advertises: its client's metadata maps the proxy's port back to the broker's. A
    load it writes goes on reaching Kafka while a worker's connections are delayed, reset or
    blackholed."""
    direct = kafka.port("kafka")
    producer = new_producer(settings, bootstrap_servers=f"{kafka.stack.host}:{direct}")
    cluster = producer.client.cluster
    advertised = cluster.broker_metadata

    def broker_metadata(node_id: Any) -> Any:
        broker = advertised(node_id)
        if broker is not None and broker.port == proxy.port:
            broker = broker._replace(port=direct)
        return broker

    cluster.broker_metadata = broker_metadata
    return producer


@dataclass
class _StageOne:
    """What the enricher's own topics say of each call (times in ms since the epoch): where stage
    two first read it (by-caller) and when that record was written; from the tables' changelogs,
    the due time of each hold, each release, and when its popup was joined."""

    read_at: dict[str, tuple[int, int]]
    forwarded_ms: dict[str, int] = field(default_factory=dict)
    dues: dict[str, list[int]] = field(default_factory=dict)
    released_ms: dict[str, list[int]] = field(default_factory=dict)
    popup_ms: dict[str, int] = field(default_factory=dict)

    async def read_tables(self, settings: Settings, group: str) -> None:
        async def read(name: str) -> list[Any]:
            topic = f"{group}-{name}"
            return await read_raw(
                settings.kafka_bootstrap, topic, until=lambda _: False, wait_seconds=3
            )

        for record in await read("by-caller"):
            self.forwarded_ms.setdefault(_sid(record.value), record.timestamp)
        for record in await read("pending-changelog"):
            sid = record.key.decode()
            if record.value is None:  # released (or expired)
                self.released_ms.setdefault(sid, []).append(record.timestamp)
            else:
                self.dues.setdefault(sid, []).append(json_codec.loads(record.value)["due"])
        ttl_ms = int(settings.enricher.popup_ttl_seconds * 1000)
        for record in await read("popups-changelog"):
            if record.value is not None:  # stamped when joined, due a popup TTL later
                due = json_codec.loads(record.value)["due"]
                self.popup_ms.setdefault(record.key.decode(), due - ttl_ms)

    def story(self, sid: str) -> str:
        return (
            f"{sid} (due {self.dues.get(sid)}, released {self.released_ms.get(sid)}, "
            f"forwarded {self.forwarded_ms.get(sid)} to {self.read_at[sid]})"
        )


def _sid(value: bytes) -> str:
    return json_codec.loads(value)["call_sid"]


def _check_as_read(events: list[Any], i: int, r: int, *, overtaken: int, joined: bool) -> None:
    """A call that stage one let through after ``overtaken`` later calls of its caller, or
    without its popup: one record, counted with the calls stage two had read before it."""
    assert len({e.id for e in events}) == 1, [e.id for e in events]
    data = events[0].data
    assert all(e.data == data for e in events), [e.data for e in events]
    wanted = {
        "repeat_count_24h": r + 1 - overtaken,
        "first_missed_at": format_time(at(_missed_at(i, 0))),
        "popup_seen": joined,
        "ring_seconds": float(RING_S) if joined else None,
    }
    assert {k: data[k] for k in wanted} == wanted, (data["call_sid"], data)


async def test_enricher_enriches_each_missed_call_through_latency_resets_and_a_blackhole(
    proxied_kafka: tuple[LocalStack, FaultProxy],
    enricher_env: PipelineEnv,
    workers: Callable[[PipelineEnv], Enricher],
    unique: Callable[[str], str],
) -> None:
    """One missed call per caller every second (6 callers, one per partition; a popup first for
    half of them, an Exotel retry of a previous call now and then), written straight to Kafka:
    the load goes on through every phase. The blackhole outlasts the worker's session, so it
    comes back to a rebalance (and its tables' recovery) with the calls written meanwhile to
    handle.

    Every call gets its enriched record and nothing is rejected; copies are the same record,
    counted apart. Each count is that of the caller's calls stage two had read before it, so a
    copy is never counted. Beyond that, what the load implies (count r + 1, popups joined)
    holds but where the README allows otherwise (a popup that came after the grace). A caller's
    held calls go out in the order they came: a call that overtook an earlier one fails the test,
    naming the calls and when each was held, released and forwarded."""
    kafka, proxy = proxied_kafka
    settings = enricher_env.settings
    group = f"{settings.topic_prefix}exopipe-enricher"
    missed_topic = settings.topic(WEBHOOK_MISSED_CALL).name
    inputs = Inputs(settings, straight_producer(kafka, proxy, settings))
    calls: dict[str, tuple[int, int]] = {}  # call_sid -> (caller, round)
    last: dict[int, tuple[str, bytes]] = {}  # caller -> its latest missed call (sid, value)
    resent: list[str] = []

    async def send_round(r: int) -> None:
        for i in range(CALLERS):
            sid = _sid_on(i, unique(f"c{i}r{r}"))
            if r > 0 and (r + i) % 4 == 0:  # an Exotel retry of the previous missed call
                await inputs.raw_missed(*last[i])
                resent.append(last[i][0])
            if _with_popup(i):
                await inputs.popup(sid, at(_missed_at(i, r) - RING_S), caller=_caller(i))
            value = inputs.call_event(
                WEBHOOK_MISSED_CALL, sid, at(_missed_at(i, r)), caller=_caller(i)
            )
            meta = await inputs.producer.send_and_wait(missed_topic, value, key=sid.encode())
            load.where[sid] = (meta.partition, meta.offset)
            calls[sid] = (i, r)
            last[i] = (sid, value)

    load = Load(send_round, interval=ROUND_S, tail=3, max_rounds=MISSED_MAX_ROUNDS)
    rounds: dict[str, int] = {}  # rounds written to Kafka as each phase began
    worker = await asyncio.to_thread(workers, enricher_env)
    try:
        await inputs.producer.start()
        load.start()
        found = await collect(settings, MISSED_CALL_ENRICHED, count=2 * CALLERS, wait_seconds=30)
        assert len(found) >= 2 * CALLERS and load.running(), worker.log_text()[-3000:]
        assert worker.proc is not None
        assert_only_through_proxy(worker.proc.pid, kafka, proxy)
        await network_faults(
            proxy, ENRICHER_BLACKHOLE_S, on_phase=lambda p: rounds.__setitem__(p, load.rounds)
        )
        assert load.running(), f"the load ended before the heal ({load.rounds} rounds)"
        await load.finish()
        sent = set(calls)
        events = await drain(
            settings, MISSED_CALL_ENRICHED, sent, lambda e: e.data["call_sid"], wait=45
        )
        rejected = [
            e for _, e in await collect(settings, WEBHOOK_REJECTED, count=len(sent), wait_seconds=2)
        ]
        log = worker.log_text()
        assert worker.proc.poll() is None, log[-3000:]
        by_sid: dict[str, list[Any]] = {}
        for event in events:
            by_sid.setdefault(event.data["call_sid"], []).append(event)
        print(
            f"missed calls {len(sent)} in {load.rounds} rounds (re-sent {len(resent)}), rounds "
            f"written as each phase began {rounds}; enriched {len(by_sid)}, copies "
            f"{len(events) - len(by_sid)}, rejected {len(rejected)}; assignments "
            f"{log.count(ASSIGNED)}, gaps filled by the continuity guard "
            f"{log.count('records faust dropped are read')}; proxy: {proxy.connections} "
            f"connections, {proxy.resets} reset"
        )
        missing = sent - set(by_sid)
        if missing or rejected:
            notes = await _stage_two_notes(settings, group, missing)
            extra = {s: f"caller {calls[s][0]} round {calls[s][1]}; {notes[s]}" for s in missing}
            committed = await committed_offsets(settings, group, missed_topic)
            report = lost_report(missing, load.where, committed, {"enricher": log}, extra=extra)
            reasons = [e.data["reason"][:200] for e in rejected]
            raise AssertionError(f"{len(rejected)} rejected {reasons}; {report}")
        assert set(by_sid) == sent  # no record for a call that was not sent
        # The load reached Kafka through the blackhole (so not through the proxy), and the
        # blackhole cost the worker its membership.
        assert rounds["heal"] - rounds["blackhole"] >= ENRICHER_BLACKHOLE_S / ROUND_S - 2, rounds
        assert log.count(ASSIGNED) >= 2, "no rebalance after the heal"

        # Stage two counts each call once, with the caller's calls it has read before. The load
        # implies it reads them in round order: a call read before an earlier one of its caller
        # overtook it, and its count misses that one.
        stage = _StageOne(
            {
                sid: places[0]
                for sid, places in (await positions(settings, f"{group}-by-caller", _sid)).items()
            }
        )
        overtook: dict[str, list[str]] = {}
        for i in range(CALLERS):
            mine = sorted((s for s in sent if calls[s][0] == i), key=stage.read_at.__getitem__)
            for n, sid in enumerate(mine):
                earlier = [s for s in mine[n + 1 :] if calls[s][1] < calls[sid][1]]
                if earlier:
                    overtook[sid] = earlier
        alone = {
            s for s in sent if _with_popup(calls[s][0]) and not by_sid[s][0].data["popup_seen"]
        }
        for sid, copies in by_sid.items():
            if sid in overtook or sid in alone:
                i, r = calls[sid]
                joined = _with_popup(i) and sid not in alone
                _check_as_read(copies, i, r, overtaken=len(overtook.get(sid, [])), joined=joined)
            else:
                _check_record(copies, *calls[sid])
        if overtook or alone:
            await stage.read_tables(settings, group)
        # The out-of-order rule (README): a popup that comes once the grace has run out is not
        # joined. The faults hold popups back; a popup that came within the grace must be joined.
        early = {
            s: (stage.dues.get(s), stage.popup_ms.get(s))
            for s in alone
            if s not in stage.dues or stage.popup_ms.get(s, math.inf) <= min(stage.dues[s])
        }
        assert not early, f"calls sent without the popup that came within their grace: {early}"
        # Held calls of a caller are released in the order they came (README: held for the grace
        # period): a call that overtook another is a worker bug (two were found and fixed here:
        # tests/unit/enricher/test_holds.py).
        overtakes = "; ".join(
            f"{stage.story(sid)} before {[stage.story(x) for x in earlier]}"
            for sid, earlier in overtook.items()
        )
        assert not overtook, f"calls that overtook earlier calls of their caller: {overtakes}"
        print(f"joined without their popup (it came after the grace): {len(alone)}")
    finally:
        proxy.passthrough()
        await load.cancel()
        await asyncio.to_thread(worker.stop)
        await inputs.producer.stop()
