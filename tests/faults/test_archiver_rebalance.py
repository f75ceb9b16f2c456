"""A second archiver joins during a steady recording load and then leaves (SIGTERM): partitions
move twice, yet every event has exactly one object in S3 with the right sha256 and an archived
record, nothing is on the failed topic and no multipart upload is left incomplete.

A handover can archive an event again when its offset was not committed yet: the re-sent
archived record is allowed, counted and printed, and must be the same record (one CloudEvent id
per recording). Runs on the shared stack; only our own worker processes are stopped.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from tests.faults.rebalance import (
    ASSIGNED,
    Joiner,
    Load,
    committed_offsets,
    drain,
    lost_report,
)
from tests.faults.rebalance import wait_for_text as wait_for
from tests.faults.test_object_store_faults import check_archived_once
from tests.integration.archiver.conftest import (
    ArchiverRig,
    WorkerProcess,
    archiver_env,
    double,
    make_rig,
    ready_event_obj,
)
from topics.catalog import RECORDING_ARCHIVED, WEBHOOK_RECORDING_READY
from workers.exotel_double.control import DoubleControl
from workers.kafka import produce_event, started_producer

double = double  # the shared double's control client (a session fixture)  # noqa: PLW0127
PER_ROUND = 3
ROUND_S = 0.5
MAX_ROUNDS = 80  # 240 recordings at most
TAIL_ROUNDS = 10  # 5 s of load after the second worker left
SIZE = 128 * 1024
WORK_S = 5.0  # both workers share the load at least this long
_ARCHIVED = re.compile(r"archived \S+ \(partition")


async def _load_across_two_handovers(
    rig: ArchiverRig, second: WorkerProcess, served: dict[str, str]
) -> Load:
    """The first worker runs, a steady load starts, the second worker joins and leaves."""
    first = rig.worker
    topic = rig.settings.topic(WEBHOOK_RECORDING_READY)
    async with started_producer(rig.settings) as producer:

        async def send_round(i: int) -> None:
            for j in range(PER_ROUND):
                name = rig.name(f"r{i}-{j}")
                call_sid = f"CA{name}"
                recording = await asyncio.to_thread(rig.register, name, SIZE)
                served[call_sid] = recording["sha256"]
                event = ready_event_obj(call_sid, rig.url(name))
                meta = await produce_event(producer, topic, event, call_sid)
                load.where[call_sid] = (meta.partition, meta.offset)

        async def both_work() -> None:
            """A while, and until the newcomer has archived a few recordings (real work)."""
            await asyncio.sleep(WORK_S)
            await _until_archived(second, 2 * PER_ROUND, load)

        load = Load(send_round, interval=ROUND_S, tail=TAIL_ROUNDS, max_rounds=MAX_ROUNDS)
        joiner = Joiner(second, second.logs)
        first.start()
        try:
            await wait_for(first.logs, ASSIGNED, deadline=time.monotonic() + 60, alive=first.alive)
            load.start()
            await _until_archived(first, 2 * PER_ROUND, load)  # the first worker is busy
            await joiner.join_and_leave(load, work=both_work)
            await load.finish()
        finally:
            await load.cancel()
    return load


def _archived_by(worker: WorkerProcess) -> int:
    return len(_ARCHIVED.findall(worker.logs()))


async def _until_archived(worker: WorkerProcess, count: int, load: Load) -> None:
    deadline = time.monotonic() + 30
    while _archived_by(worker) < count:
        assert time.monotonic() < deadline and load.running(), worker.logs()[-3000:]
        await asyncio.sleep(0.2)


async def test_a_worker_joins_and_leaves_during_load(
    stack_env: dict[str, str], double: DoubleControl, tmp_path: Path
) -> None:
    began = time.monotonic()
    env = archiver_env(stack_env, tmp_path, double)
    rig = await make_rig(env, double, tmp_path)
    first, second = rig.worker, WorkerProcess(env, tmp_path / "worker-b")
    served: dict[str, str] = {}  # call_sid -> sha256 of the recording the double serves
    try:
        load = await _load_across_two_handovers(rig, second, served)
        sent = set(load.where)
        print(
            f"rounds {load.rounds}, sent {len(sent)}, load over at {time.monotonic() - began:.1f}s"
        )

        found = await drain(
            rig.settings, RECORDING_ARCHIVED, sent, lambda e: e.data["call_sid"], wait=25
        )
        missing = sent - {e.data["call_sid"] for e in found}
        if missing:  # say where each lost event was, before the general checks
            group = f"{rig.settings.topic_prefix}exopipe-archiver"
            topic = rig.settings.topic(WEBHOOK_RECORDING_READY).name
            committed = await committed_offsets(rig.settings, group, topic)
            logs = {"first worker": first.logs(), "second worker": second.logs()}
            raise AssertionError(lost_report(missing, load.where, committed, logs))
        # One object per recording with its sha256, nothing failed, no incomplete upload, no
        # credential anywhere; re-sent archived records are the same record.
        duplicates = await check_archived_once(rig, served, wait_seconds=10)
        print(
            f"duplicate records {duplicates}, archived by the second worker "
            f"{_archived_by(second)}, done at {time.monotonic() - began:.1f}s"
        )
    finally:
        await asyncio.to_thread(second.stop)
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(rig.drop_bucket)
