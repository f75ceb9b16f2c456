"""The archiver against a failing object store: S3 stopped mid-run then started again, and the
network to it slowed, reset and blackholed through our fault proxy. Invariants, checked with
unique call sids: every recording_ready event has an outcome; every recording is archived
exactly once with the right sha256; the failed topic holds only permanent failures (none are
expected here); no multipart upload is left incomplete; no secret in S3 metadata, records or logs.

The S3 server is a private S3Proxy (other port, another home), reached through
:class:`FaultProxy`; Kafka and the Exotel double are the shared stack's.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.archiver.conftest import (
    PASSWORD,
    ArchiverRig,
    archiver_env,
    double,
    make_rig,
)
from tests.integration.ingress.test_spool_restart import free_port
from tests.integration.kafka_io import collect
from topics.catalog import RECORDING_ARCHIVED, RECORDING_FAILED
from topics.events import CloudEvent
from workers.config import Settings
from workers.exotel_double.control import DoubleControl
from workers.localstack.manager import LocalStack

from .tcp_proxy import FaultProxy

double = double  # the shared double's control client (a session fixture)  # noqa: PLW0127
RECORDINGS = 24
SIZE = 256 * 1024


@pytest.fixture(scope="module")
def private_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """An S3Proxy of this module's own, which the tests may kill and start at will."""
    shared = LocalStack(Settings.from_env())
    settings = Settings.from_env(
        {
            "EXOPIPE_STACK_HOME": str(tmp_path_factory.mktemp("s3-home")),
            "EXOPIPE_STACK_S3_PORT": str(free_port()),
            "EXOPIPE_STACK_S3PROXY_VERSION": shared.stack.s3proxy_version,
        }
    )
    stack = LocalStack(settings)
    lib = stack.lib_dir("s3proxy")  # reuse the shared stack's jars
    lib.parent.mkdir(parents=True, exist_ok=True)
    if shared.lib_dir("s3proxy").is_dir():
        lib.symlink_to(shared.lib_dir("s3proxy"), target_is_directory=True)
    stack.start_service("s3proxy")
    try:
        yield stack
    finally:
        stack.stop_service("s3proxy", signal.SIGKILL)


@pytest.fixture
async def proxy(private_s3: LocalStack) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(private_s3.port("s3proxy")) as fault_proxy:
        yield fault_proxy


async def run_with_fault(
    stack_env: dict[str, str],
    double: DoubleControl,
    tmp_path: Path,
    proxy: FaultProxy,
    fault: Callable[[ArchiverRig], Awaitable[None]],
) -> str:
    """Run 24 recordings through the archiver with ``fault`` injected; the worker's log."""
    env = archiver_env(
        stack_env,
        tmp_path,
        double,
        EXOPIPE_S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
        EXOPIPE_RECORDING_CONCURRENCY="4",
    )
    rig = await make_rig(env, double, tmp_path)
    names = [rig.name(f"r{i}") for i in range(RECORDINGS)]
    served = {f"CA{name}": rig.register(name, SIZE)["sha256"] for name in names}
    rig.worker.start()
    try:
        await rig.send(*((f"CA{name}", rig.url(name)) for name in names))
        # Let the run get going, then break the object store under it.
        await wait_until_archived(rig, set(served), 3, 60)
        await fault(rig)
        await check_archived_once(rig, served, wait_seconds=60)
        return rig.worker.logs()
    finally:
        rig.worker.stop()
        proxy.passthrough()
        await asyncio.to_thread(rig.drop_bucket)


async def wait_until_archived(rig: ArchiverRig, calls: set[str], count: int, seconds: float) -> int:
    """Wait until ``count`` of ``calls`` have an archived record (the worker must stay up)."""
    deadline = time.monotonic() + seconds
    while True:
        found = await collect(
            rig.settings,
            RECORDING_ARCHIVED,
            count=count,
            wait_seconds=1,
            where=lambda _key, event: event.data.get("call_sid") in calls,
        )
        distinct = len({e.data["call_sid"] for _, e in found})
        if distinct >= count:
            return distinct
        assert rig.worker.alive() and time.monotonic() < deadline, rig.worker.logs()[-3000:]


async def check_archived_once(rig: ArchiverRig, served: dict[str, str], wait_seconds: float) -> int:
    """Every recording in ``served`` (call sid -> sha256) ends archived, once; the duplicates.

    Waits up to ``wait_seconds`` for an archived record of each, then checks: nothing on the
    failed topic, exactly one object per recording with the right sha256, no incomplete
    multipart upload, no credential in object metadata, records or the worker's logs. Re-sent
    archived records are counted and returned, not hidden.
    """
    ours = set(served)

    def mine(_key: bytes | None, event) -> bool:  # type: ignore[no-untyped-def]
        return event.data.get("call_sid") in ours

    async def archived(count: int, wait: float) -> list[tuple[bytes | None, CloudEvent]]:
        return await collect(
            rig.settings, RECORDING_ARCHIVED, count=count, wait_seconds=wait, where=mine
        )

    found = await archived(len(ours), wait_seconds)
    # Duplicates count towards a reader's total, so wait on the distinct calls.
    deadline = time.monotonic() + wait_seconds
    while {e.data["call_sid"] for _, e in found} != ours and time.monotonic() < deadline:
        found = await archived(len(found) + 1, 5)
    found = await archived(len(found) + 1, 3)  # one more, briefly: duplicates show up here
    failed = await collect(rig.settings, RECORDING_FAILED, count=1, wait_seconds=2, where=mine)
    transient = [e.data for _, e in failed if not e.data["permanent"]]
    assert transient == [], f"transient failures dead-lettered: {transient[:3]}"
    assert failed == [], [e.data["reason"] for _, e in failed]
    calls = [e.data["call_sid"] for _, e in found]
    duplicates = len(calls) - len(set(calls))
    print(f"archived {len(set(calls))}/{len(ours)}, duplicate records {duplicates}")
    assert set(calls) == ours, f"no outcome for {len(ours - set(calls))} recordings"

    ids: dict[str, set[str]] = {}
    for _, event in found:
        ids.setdefault(event.data["call_sid"], set()).add(event.id)
    # A re-sent record is the same record: one CloudEvent id per recording.
    assert all(len(v) == 1 for v in ids.values()), ids
    keys = await asyncio.to_thread(rig.keys)
    assert len(keys) == len(ours)
    assert await asyncio.to_thread(rig.incomplete_uploads) == []
    for _, event in found:
        key, sha = event.data["key"], event.data["sha256"]
        assert sha == served[event.data["call_sid"]]
        assert await asyncio.to_thread(rig.object_sha256, key) == sha
        head = await asyncio.to_thread(rig.s3.head_object, Bucket=rig.bucket, Key=key)
        assert PASSWORD not in repr(head["Metadata"]) and PASSWORD not in event.to_bytes().decode()
    assert PASSWORD not in rig.worker.logs()
    return duplicates


async def test_s3_stopped_mid_run_then_started(
    stack_env: dict[str, str],
    double: DoubleControl,
    tmp_path: Path,
    proxy: FaultProxy,
    private_s3: LocalStack,
) -> None:
    async def stop_s3_for_15s(rig: ArchiverRig) -> None:
        await asyncio.to_thread(private_s3.stop_service, "s3proxy", signal.SIGKILL)
        try:
            await asyncio.sleep(15)
        finally:
            await asyncio.to_thread(private_s3.start_service, "s3proxy")

    logs = await run_with_fault(stack_env, double, tmp_path, proxy, stop_s3_for_15s)
    assert "object store unavailable, trying again" in logs  # the outage outlasted the attempts


async def test_latency_resets_and_blackhole_between_archiver_and_s3(
    stack_env: dict[str, str], double: DoubleControl, tmp_path: Path, proxy: FaultProxy
) -> None:
    async def network_faults(rig: ArchiverRig) -> None:
        proxy.latency(0.2)
        await asyncio.sleep(4)
        proxy.reset()
        await asyncio.sleep(3)
        proxy.blackhole()
        await asyncio.sleep(5)
        proxy.heal()

    await run_with_fault(stack_env, double, tmp_path, proxy, network_faults)
    assert proxy.resets > 0  # connections were really cut
