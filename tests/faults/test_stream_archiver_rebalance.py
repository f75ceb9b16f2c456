"""A second stream archiver joins while 50 live streams run at real-time pace through the real
ingress, then leaves (SIGTERM): partitions move twice with streams open on them.

Outcome: every stream ends as exactly one object holding every sample it sent (read back with
plain boto3 and Python's ``wave`` module), one archived record id per stream, no incomplete
upload, no spill file left, and each worker's peak RSS under a bound. A handover reads the open
streams again from their first record; a stream archived but not yet committed is found in S3
again: its copy is allowed, counted and printed, and must be the same record with
``already_archived: true``. Runs on the shared stack; only our own processes are stopped.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.processes import peak_rss_mib
from tests.faults.rebalance import (
    ASSIGNED,
    Joiner,
    Load,
    committed_offsets,
    drain,
    lost_report,
    positions,
    wait_for_text,
)
from tests.faults.test_stream_archiver_s3_faults import check_one_whole_object_each
from tests.faults.test_stream_broker_faults import PacedStream
from tests.integration.archiver.conftest import WorkerProcess
from tests.integration.stream_archiver.conftest import StreamRig, make_rig, stream_env
from tests.integration.stream_archiver.test_stream_archive import _no_spill_files_left
from tests.integration.stream_stack import CUSTOMER, plain_s3, stream_url, with_ingress
from tests.stream_records import pcm_chunks
from topics.catalog import STREAM_ARCHIVED, STREAM_AUDIO
from topics.events import CloudEvent
from workers import json_codec
from workers.demo.processes import Children
from workers.exotel_double.stream_frames import StreamIdentity

STREAMS = 50  # live at once: the load starts new ones as others end
ROUND_S = 0.5
MAX_ROUNDS = 240  # 2 minutes of load at most
TAIL_ROUNDS = 10  # 5 s of load after the second worker left
DURATIONS_S = (5, 6, 7, 8, 9, 10, 11)  # by turns, so streams end all the time, not at once
WORK_S = 10.0  # both workers share the load at least this long
CHUNK = 3200
# Peak RSS measured 122 to 160 MiB a worker (RELIABILITY.md 2b). The bound is 25 % above that,
# and below what a worker holding the run's audio would reach (about 55 MB of PCM, more as
# records, on top of what it needs).
PEAK_RSS_MIB = 200
_ARCHIVED = re.compile(r"stream \S+ (?:already )?archived: ")
_DROPPED = re.compile(r"(\d+) open streams dropped \(the partition moved\)")


@dataclass
class LiveStreams(Mapping[str, list[bytes]]):
    """The load's streams by stream_sid; as a mapping, the audio each one sent (regenerated)."""

    url: str
    senders: dict[str, tuple[PacedStream, int]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def live(self) -> int:
        return sum(not stream.finish.is_set() for stream, _ in self.senders.values())

    def open_one(self, session: aiohttp.ClientSession) -> None:
        """Start a stream that sends for its turn of ``DURATIONS_S``, then stops."""
        seed = len(self.senders)
        sid = f"R-{seed}-{random.randbytes(4).hex()}"
        who = StreamIdentity(stream_sid=sid, call_sid=f"C-{sid}", account_sid=CUSTOMER)
        stream = PacedStream(self.url, who=who, audio=_in_order(seed))
        self.senders[sid] = (stream, seed)
        self.tasks.append(asyncio.create_task(stream.run(session)))
        duration = DURATIONS_S[seed % len(DURATIONS_S)]
        asyncio.get_running_loop().call_later(duration, stream.finish.set)

    def __getitem__(self, sid: str) -> list[bytes]:
        stream, seed = self.senders[sid]
        return pcm_chunks(stream.sent_media, chunk_bytes=CHUNK, seed=seed)

    def __iter__(self) -> Iterator[str]:
        return iter(self.senders)

    def __len__(self) -> int:
        return len(self.senders)


def _in_order(seed: int) -> Callable[[int], bytes]:
    """The chunks of ``pcm_chunks(..., seed=seed)``, one a call (the sender asks in order)."""
    rng = random.Random(seed)
    return lambda _n: rng.randbytes(CHUNK)


def _dropped(*workers: WorkerProcess) -> int:
    """Open streams a worker let go of when their partition moved (read again by the next)."""
    return sum(int(n) for w in workers for n in _DROPPED.findall(w.logs()))


def _archived_by(worker: WorkerProcess) -> int:
    return len(_ARCHIVED.findall(worker.logs()))


async def _until_archived(worker: WorkerProcess, count: int, load: Load) -> None:
    deadline = time.monotonic() + 60
    while _archived_by(worker) < count:
        assert time.monotonic() < deadline and load.running(), worker.logs()[-3000:]
        await asyncio.sleep(0.2)


async def _load_across_two_handovers(
    rig: StreamRig, second: WorkerProcess, streams: LiveStreams, peaks: dict[str, float]
) -> Load:
    """The first worker runs, the live streams start, the second worker joins and leaves."""
    first = rig.worker
    async with aiohttp.ClientSession() as session:

        async def send_round(_i: int) -> None:
            while streams.live() < STREAMS:
                streams.open_one(session)

        async def both_work() -> None:
            """A while, and until the newcomer has archived a few streams (real work)."""
            await asyncio.sleep(WORK_S)
            await _until_archived(second, 5, load)
            assert second.proc is not None
            peaks["second"] = peak_rss_mib(second.proc.pid)

        load = Load(send_round, interval=ROUND_S, tail=TAIL_ROUNDS, max_rounds=MAX_ROUNDS)
        first.start()
        try:
            deadline = time.monotonic() + 60
            await wait_for_text(first.logs, ASSIGNED, deadline=deadline, alive=first.alive)
            load.start()
            await _until_archived(first, 5, load)  # the first worker is busy
            await Joiner(second, second.logs).join_and_leave(load, work=both_work)
            await load.finish()
            async with asyncio.timeout(90):  # each stream sends its stop and is closed
                await asyncio.gather(*streams.tasks)
        finally:
            await load.cancel()
            for task in streams.tasks:
                task.cancel()
            await asyncio.gather(*streams.tasks, return_exceptions=True)
    return load


async def _say_where_lost(rig: StreamRig, missing: set[str], logs: dict[str, str]) -> str:
    """The lost-records report, each stream placed at its first record on the audio topic."""

    def first_record(value: bytes) -> str | None:
        data = json_codec.loads(value)["data"]
        return data["stream_sid"] if data["frame_index"] == 0 else None

    topic = rig.settings.topic(STREAM_AUDIO).name
    places = await positions(rig.settings, topic, first_record)
    where = {sid: places.get(sid, [(-1, -1)])[0] for sid in missing}
    committed = await committed_offsets(rig.settings, rig.group, topic)
    return lost_report(missing, where, committed, logs)


def _copies(found: list[CloudEvent]) -> int:
    """Re-sent archived records: each must say ``already_archived`` (the object was found)."""
    seen: set[str] = set()
    copies = 0
    for event in found:
        sid = event.data["stream_sid"]
        if sid in seen:
            copies += 1
            assert event.data["already_archived"] is True, event.data
        seen.add(sid)
    return copies


async def test_a_second_stream_archiver_joins_and_leaves_under_50_live_streams(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    began = time.monotonic()
    env = with_ingress(stream_env(stack_env, tmp_path), tmp_path)
    rig = await make_rig(env, tmp_path, s3=plain_s3(env))
    first, second = rig.worker, WorkerProcess(env, tmp_path / "worker-b", name="stream-archiver")
    port = env.settings.ingress.port
    streams = LiveStreams(stream_url(port))
    peaks: dict[str, float] = {}
    children = Children(tmp_path)
    try:
        children.start("ingress", ["ingress"], env.process_env())
        await children.wait_healthy(f"http://127.0.0.1:{port}/readyz", 60)
        load = await _load_across_two_handovers(rig, second, streams, peaks)
        sent = set(streams)
        print(f"rounds {load.rounds}, streams {len(sent)}, "
              f"frames {sum(s.sent_media for s, _ in streams.senders.values())}, "
              f"load over at {time.monotonic() - began:.1f}s")  # fmt: skip
        codes = {stream.close_code for stream, _ in streams.senders.values()}
        assert codes == {1000}, codes  # every stream ended by its stop, none cut

        found = await drain(
            rig.settings, STREAM_ARCHIVED, sent, lambda e: e.data["stream_sid"], wait=60
        )
        missing = sent - {e.data["stream_sid"] for e in found}
        if missing:
            logs = {"first worker": first.logs(), "second worker": second.logs()}
            raise AssertionError(await _say_where_lost(rig, missing, logs))
        copies = _copies(found)
        await check_one_whole_object_each(rig, streams, found)
        await _no_spill_files_left(rig)
        assert first.proc is not None
        peaks["first"] = peak_rss_mib(first.proc.pid)  # alive: it archived to the end
        dropped = _dropped(first, second)
        print(f"copies of records {copies}, archived by the second worker "
              f"{_archived_by(second)}, open streams moved {dropped}, peak RSS MiB {peaks}, "
              f"done at {time.monotonic() - began:.1f}s")  # fmt: skip
        assert dropped > 0  # the partitions moved with streams open on them
        assert max(peaks.values()) < PEAK_RSS_MIB, peaks
    finally:
        children.stop_all()
        await asyncio.to_thread(second.stop)
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(rig.drop)
