"""The agent's bookkeeping with a stand-in faust app: acks only in order, only what is archived."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from tests.stream_records import StreamScript, pcm_chunks
from topics.catalog import STREAM_AUDIO
from topics.events import CloudEvent, deterministic_id, format_time, make_event
from workers.ingress.stream_journal import OpenStream
from workers.ingress.stream_restart import restarted_closed
from workers.stream_archiver.agents import Archivist, running_archivist
from workers.stream_archiver.partition import Ending
from workers.stream_archiver.spill import SpillDir

TOPIC = "t.exotel.stream.audio"
TP0 = TP(TOPIC, 0)


@dataclass
class FakeConsumer:
    acked: list[tuple[TP, int]] = field(default_factory=list)
    ends: dict[TP, int] = field(default_factory=dict)
    flow_active: bool = True

    def ack(self, message: Any) -> bool:
        self.acked.append((message.tp, message.offset))
        return True

    def assignment(self) -> set[TP]:
        return {TP0}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends.get(tp, 0) for tp in tps}


@dataclass
class FakeApp:
    consumer: FakeConsumer = field(default_factory=FakeConsumer)
    consumer_generation_id: int = 1
    rebalancing: bool = False
    in_recovery: bool = False
    crashed: list[BaseException] = field(default_factory=list)
    sensors: Any = field(default_factory=lambda: SimpleNamespace(on_message_out=lambda *a: None))

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


class FakeArchive:
    """Archives when told to (``gate``), or at once; fails when ``fail`` is set."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: Exception | None = None

    async def archive(self, ending: Ending) -> Any:
        sid = ending.assembly.stream_sid
        self.started.append(sid)
        if sid in self.gates:
            await self.gates[sid].wait()
        if self.fail is not None:
            raise self.fail
        sealed = await asyncio.to_thread(ending.assembly.seal)
        return SimpleNamespace(data={"already_archived": False, "size": sealed.size})


class Rig:
    def __init__(self, archivist: Archivist, app: FakeApp, archive: FakeArchive) -> None:
        self.archivist, self.app, self.archive = archivist, app, archive
        self.offset = 0
        self.published: list[Any] = []

    async def feed(self, *events: CloudEvent, generation: int = 1) -> None:
        for event in events:
            message = SimpleNamespace(
                tp=TP0, offset=self.offset, generation_id=generation, acked=False
            )
            await self.archivist.handle(SimpleNamespace(message=message, value=event.to_bytes()))
            assert message.acked  # released from faust's tracking at once
            self.offset += 1

    def acked(self) -> list[int]:
        return [offset for _, offset in self.app.consumer.acked]

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not self.archivist._tasks:
                return


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    app, archive = FakeApp(), FakeArchive()
    published: list[Any] = []

    async def publish(event: Any) -> None:
        published.append(event)

    async with running_archivist(
        app=app, spill=SpillDir(tmp_path / "spill"), archive=archive, publish=publish,
        quiet_s=30.0, concurrency=2,
    ) as archivist:  # fmt: skip
        made = Rig(archivist, app, archive)
        made.published = published
        yield made


def _stream(sid: str, frames: int = 3, seed: int = 1) -> tuple[StreamScript, list[CloudEvent]]:
    s = StreamScript(sid)
    return s, [s.connected(), s.start(), *(s.media(c) for c in pcm_chunks(frames, seed=seed))]


async def test_offsets_are_acked_in_order_only_once_every_earlier_stream_is_archived(
    rig: Rig,
) -> None:
    one, one_records = _stream("S1")
    two, two_records = _stream("S2", seed=2)
    await rig.feed(*one_records[:2], *two_records, *one_records[2:])
    rig.archive.gates["S1"] = asyncio.Event()
    await rig.feed(two.closed())
    await rig.settle()
    assert rig.archive.started == ["S2"] and len(rig.published) == 1
    assert rig.acked() == []  # S1 began at offset 0 and is not archived
    await rig.feed(one.closed())
    await asyncio.sleep(0.05)
    assert rig.archive.started == ["S2", "S1"]
    assert rig.acked() == []  # S1's archive is still on its way
    rig.archive.gates["S1"].set()
    await rig.settle()
    assert rig.acked() == list(range(rig.offset))
    assert len(rig.published) == 2
    assert list(rig.archivist.spill.path.iterdir()) == [rig.archivist.spill.path / ".lock"]


async def test_a_failed_archive_stops_the_worker_unacked(rig: Rig) -> None:
    s, records = _stream("S1")
    rig.archive.fail = RuntimeError("boom")
    await rig.feed(*records, s.closed())
    await rig.settle()
    assert [str(e) for e in rig.app.crashed] == ["boom"]
    assert rig.acked() == [] and rig.published == []


async def test_a_new_generation_drops_open_streams_and_reads_them_again(rig: Rig) -> None:
    s, records = _stream("S1")
    await rig.feed(*records)
    (old_state,) = rig.archivist.partitions.values()
    files = [p for p in rig.archivist.spill.path.iterdir() if p.suffix == ".wav"]
    assert len(files) == 1
    rig.app.consumer_generation_id = 2
    rig.offset = 0  # faust reads again from the committed offset
    again = StreamScript("S1", connection_id=s.connection_id)
    await rig.feed(again.connected(), again.start(), generation=2)
    assert not files[0].exists()  # the old generation's spill file is gone
    assert rig.archivist.partitions[TP0] is not old_state


async def test_a_quiet_partition_read_to_its_end_abandons_its_streams(rig: Rig) -> None:
    s, records = _stream("S1")
    await rig.feed(*records)
    (state,) = rig.archivist.partitions.values()
    later = state._last_read + 31
    rig.app.consumer.ends[TP0] = rig.offset + 1  # one more record is on Kafka: wait for it
    assert await rig.archivist.check_quiet(later) == 0
    rig.app.consumer.ends[TP0] = rig.offset
    rig.app.rebalancing = True
    assert await rig.archivist.check_quiet(later) == 0
    rig.app.rebalancing = False
    assert await rig.archivist.check_quiet(later) == 1
    await rig.settle()
    assert rig.archive.started == ["S1"]
    assert rig.acked() == list(range(rig.offset))


async def test_a_partition_no_longer_assigned_is_forgotten(rig: Rig) -> None:
    _, records = _stream("S1")
    await rig.feed(*records)
    rig.app.consumer.assignment = lambda: set()
    assert await rig.archivist.check_quiet(0.0) == 0
    assert rig.archivist.partitions == {}
    assert [p.name for p in rig.archivist.spill.path.iterdir()] == [".lock"]


async def test_a_record_fetched_before_the_last_rebalance_is_left_alone(rig: Rig) -> None:
    s, records = _stream("S1")
    await rig.feed(records[0], generation=2)
    rig.app.consumer_generation_id = 2
    state = rig.archivist.partitions[TP0]
    await rig.feed(*records[1:], generation=1)  # still in faust's buffer from before
    assert rig.archivist.partitions[TP0] is state
    assert state.ledger.pending() == 1 and state.open_streams == 1


async def test_a_closed_written_by_a_restarted_ingress_ends_the_stream_at_once(rig: Rig) -> None:
    s, records = _stream("S1")
    await rig.feed(*records)
    left = OpenStream(s.connection_id, "S1", s.customer_id, s.app_id, format_time(s.started))
    now = s.at(10)
    data = restarted_closed(left, now)
    closed = make_event(
        STREAM_AUDIO,
        data,
        source="/ingress/acme/app1/stream",
        event_id=deterministic_id("stream", s.connection_id, str(data["frame_index"])),
        time=now,
        customer_id=s.customer_id,
        app_id=s.app_id,
    )
    endings: list[Ending] = []
    archive = rig.archive.archive

    async def watched(ending: Ending) -> Any:
        endings.append(ending)
        return await archive(ending)

    rig.archive.archive = watched
    await rig.feed(closed)
    await rig.settle()
    assert [(e.assembly.stream_sid, e.reason) for e in endings] == [("S1", "ingress_restarted")]
    assert rig.acked() == list(range(rig.offset))
