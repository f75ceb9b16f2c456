"""The continuity guard: records faust dropped at a handover are read and processed, in order,
before anything later; second copies are turned away.

The Kafka side is a fake here (a partition's records as a list of offsets, a committed offset);
``tests/integration/plumbing/test_offset_guard_kafka.py`` checks the real reader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NamedTuple

import pytest

from workers.errors import RetryableError
from workers.plumbing.offset_guard import (
    STALL_AFTER_S,
    STALL_SEEKS_BEFORE_STOP,
    ContinuityGuard,
    GapNotFilled,
    guarded_events,
)


class TP(NamedTuple):
    topic: str
    partition: int


TP3 = TP("commands", 3)


@dataclass
class Message:
    offset: int
    generation_id: int = 1
    tp: TP = TP3
    acked: bool = False


@dataclass
class Event:
    message: Message
    filled: bool = False


@dataclass
class Record:
    offset: int


@dataclass
class FakePositions:
    """A partition holding ``offsets`` (holes allowed) and a group that committed ``committed``."""

    offsets: list[int]
    committed_offset: int
    readable: bool = True
    reachable: bool = True
    asked: int = 0
    reads: list[tuple[int, int]] = field(default_factory=list)

    async def committed(self, tp: object) -> int:
        self.asked += 1
        if not self.reachable:
            raise RetryableError("the group coordinator did not answer")
        return self.committed_offset

    async def ends(self, tps: list[object]) -> dict[object, int]:
        return {tp: max(self.offsets, default=-1) + 1 for tp in tps}

    async def records(self, tp: object, start: int, end: int) -> AsyncIterator[Record]:
        self.reads.append((start, end))
        if not self.readable:
            raise GapNotFilled(f"records {start} to {end - 1} could not be read")
        for offset in self.offsets:
            if start <= offset < end:
                yield Record(offset)


def rebuild(record: Record, like: Event) -> Event:
    return Event(Message(record.offset, like.message.generation_id, like.message.tp), filled=True)


def new_guard(positions: FakePositions) -> ContinuityGuard:
    return ContinuityGuard(positions, rebuild)


async def passed(guard: ContinuityGuard, offsets: list[int], generation: int = 1) -> list[str]:
    """What the guard hands on for these records: ``"14"`` as received, ``"14*"`` read by it."""
    out = []
    for offset in offsets:
        async for event in guard.sift(Event(Message(offset, generation))):
            out.append(f"{event.message.offset}{'*' if event.filled else ''}")
    return out


async def test_records_from_the_committed_offset_on_pass_as_they_are() -> None:
    positions = FakePositions(list(range(30)), committed_offset=14)
    assert await passed(new_guard(positions), [14, 15, 16]) == ["14", "15", "16"]
    assert positions.reads == []


async def test_the_handover_drop_is_read_and_processed_first() -> None:
    """The failure a trace showed: committed 14, the new owner's first record is 15."""
    guard = new_guard(FakePositions(list(range(30)), committed_offset=14))
    assert await passed(guard, [15, 16]) == ["14*", "15", "16"]
    assert guard.filled == 1


async def test_records_lost_after_the_first_one_are_read_too() -> None:
    """The other shape: the agent got 14, then 15 to 17 were cleared and skipped."""
    guard = new_guard(FakePositions(list(range(30)), committed_offset=14))
    assert await passed(guard, [14, 18, 19]) == ["14", "15*", "16*", "17*", "18", "19"]


async def test_holes_in_the_log_are_not_filled() -> None:
    # 14, 15 and 17 hold no record (transaction markers, compaction).
    guard = new_guard(FakePositions([10, 11, 12, 13, 16, 18], committed_offset=14))
    assert await passed(guard, [18]) == ["16*", "18"]
    assert await passed(guard, [16, 18]) == []  # copies of what was handed on


async def test_second_copies_and_committed_records_are_turned_away_and_released() -> None:
    guard = new_guard(FakePositions(list(range(30)), committed_offset=14))
    below, copy = Event(Message(13)), Event(Message(14))
    assert await passed(guard, [14]) == ["14"]
    for event in (below, copy):
        assert [e async for e in guard.sift(event)] == []
        # Released: faust no longer waits for it at a rebalance; never acked (committed).
        assert event.message.acked is True


async def test_each_generation_starts_again_from_the_committed_offset() -> None:
    positions = FakePositions(list(range(30)), committed_offset=14)
    guard = new_guard(positions)
    assert await passed(guard, [14, 15], generation=1) == ["14", "15"]
    positions.committed_offset = 15  # 15 was acked but not committed before the handover
    assert await passed(guard, [17], generation=2) == ["15*", "16*", "17"]
    assert positions.asked == 2  # once per partition and generation, not per record


async def test_partitions_are_guarded_apart() -> None:
    guard = new_guard(FakePositions(list(range(30)), committed_offset=14))
    other = TP("commands", 4)
    handed = [e async for e in guard.sift(Event(Message(14, tp=other)))]
    assert [e.message.offset for e in handed] == [14]
    assert await passed(guard, [15]) == ["14*", "15"]


@pytest.mark.parametrize(
    ("trouble", "error", "first"),
    [({"readable": False}, GapNotFilled, 16), ({"reachable": False}, RetryableError, 14)],
    ids=["records-unreadable", "committed-offset-unknown"],
)
async def test_what_the_guard_cannot_read_stops_the_worker_instead_of_being_skipped(
    trouble: dict[str, bool], error: type[Exception], first: int
) -> None:
    stopped: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        stopped.append(exc)

    positions = FakePositions(list(range(30)), committed_offset=14, **trouble)
    guard = ContinuityGuard(positions, rebuild, on_fatal=crash)
    with pytest.raises(error):
        await passed(guard, [first])
    assert len(stopped) == 1


class Stream:
    def __init__(self, offsets: list[int]) -> None:
        self.items = [Event(Message(o)) for o in offsets]

    async def events(self) -> AsyncIterator[Event]:
        for item in self.items:
            yield item


async def test_guarded_events_hand_on_the_stream_in_offset_order() -> None:
    stream = Stream([15, 16, 14])
    guard = new_guard(FakePositions(list(range(30)), committed_offset=14))
    got = [(e.message.offset, e.filled) async for e in guarded_events(stream, guard)]
    assert got == [(14, True), (15, False), (16, False)]
    assert stream.items[2].message.acked is True  # the late real copy of 14: released


# ---- the stall check: dropped records with nothing after them -------------------------------


@dataclass
class FakeConsumer:
    """faust's side: what this worker owns, its generation, whether it is settled, its seeks."""

    owned: set[TP] = field(default_factory=lambda: {TP3, TP("other-topic", 3)})
    generation_id: int = 1
    is_settled: bool = True
    seeks: list[tuple[TP, int]] = field(default_factory=list)

    def assigned(self) -> set[TP]:
        return self.owned

    def generation(self) -> int:
        return self.generation_id

    def settled(self) -> bool:
        return self.is_settled

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


TOPICS = frozenset({"commands"})


def idle_guard(positions: FakePositions, **kwargs: object) -> ContinuityGuard:
    guard = ContinuityGuard(positions, rebuild, **kwargs)  # type: ignore[arg-type]
    guard.idle_since = 0.0
    return guard


async def look_twice(guard: ContinuityGuard, consumer: FakeConsumer, at: float) -> list[TP]:
    """Two stall checks ``STALL_AFTER_S`` apart, the agent idle: what the second one sought."""
    assert await guard.check_stalled(consumer, TOPICS, now=at) == []  # records seen behind
    return await guard.check_stalled(consumer, TOPICS, now=at + STALL_AFTER_S)


async def test_a_partition_whose_last_records_were_dropped_is_sought_back() -> None:
    """16 and 17 are on Kafka, faust handed on up to 15, and nothing more comes."""
    guard = idle_guard(FakePositions(list(range(18)), committed_offset=14))
    assert await passed(guard, [14, 15]) == ["14", "15"]
    guard.idle_since = 0.0
    consumer = FakeConsumer()
    assert await look_twice(guard, consumer, at=STALL_AFTER_S) == [TP3]
    assert consumer.seeks == [(TP3, 16)]  # only the agent's topic, from the first missing one
    assert await passed(guard, [16, 17]) == ["16", "17"]


async def test_a_partition_with_nothing_handed_on_is_sought_from_the_committed_offset() -> None:
    """A new assignment, and faust hands on no record at all."""
    positions = FakePositions(list(range(40)), committed_offset=20)
    guard = idle_guard(positions)
    assert await passed(guard, [20], generation=1) == ["20"]  # an older generation's state
    positions.committed_offset = 31  # another owner went on to 30 meanwhile
    guard.idle_since = 0.0
    consumer = FakeConsumer(generation_id=2)
    assert await look_twice(guard, consumer, at=STALL_AFTER_S) == [TP3]
    assert consumer.seeks == [(TP3, 31)]
    assert positions.asked == 2  # once per partition and generation, not per look
    assert await passed(guard, [31], generation=2) == ["31"]


async def test_records_that_have_just_arrived_are_not_a_stall() -> None:
    """The agent idle for long, then a record: faust gets ``STALL_AFTER_S`` to hand it on."""
    positions = FakePositions(list(range(16)), committed_offset=14)
    guard = idle_guard(positions)
    assert await passed(guard, [14, 15]) == ["14", "15"]
    guard.idle_since = 0.0
    consumer = FakeConsumer()
    assert await guard.check_stalled(consumer, TOPICS, now=100.0) == []  # nothing behind
    positions.offsets.append(16)
    assert await guard.check_stalled(consumer, TOPICS, now=102.0) == []
    assert await guard.check_stalled(consumer, TOPICS, now=101.0 + STALL_AFTER_S) == []
    assert consumer.seeks == []
    assert await passed(guard, [16]) == ["16"]  # faust handed it on in time
    guard.idle_since = 0.0
    assert await guard.check_stalled(consumer, TOPICS, now=200.0) == []


@pytest.mark.parametrize(
    ("idle_since", "settled"),
    [(None, True), (STALL_AFTER_S + 1.0, True), (0.0, False)],
    ids=["agent-busy", "not-idle-long-enough", "rebalancing-or-recovering"],
)
async def test_no_seek_unless_the_agent_has_waited_long_enough_with_faust_settled(
    idle_since: float | None, settled: bool
) -> None:
    guard = idle_guard(FakePositions(list(range(18)), committed_offset=14))
    consumer = FakeConsumer()
    # 14 to 17 seen behind at STALL_AFTER_S, so a stall from 2 * STALL_AFTER_S on.
    assert await guard.check_stalled(consumer, TOPICS, now=STALL_AFTER_S) == []
    guard.idle_since, consumer.is_settled = idle_since, settled
    assert await guard.check_stalled(consumer, TOPICS, now=STALL_AFTER_S * 2) == []
    assert consumer.seeks == []
    guard.idle_since, consumer.is_settled = 0.0, True  # the same look, all conditions met
    assert await guard.check_stalled(consumer, TOPICS, now=STALL_AFTER_S * 2) == [TP3]


async def test_no_seek_when_what_is_past_the_expected_offset_is_holes() -> None:
    positions = FakePositions([14, 15], committed_offset=14)
    positions.ends = _end_at(19)  # type: ignore[method-assign]  # 16 to 18 compacted away
    guard = idle_guard(positions)
    assert await passed(guard, [14, 15]) == ["14", "15"]
    guard.idle_since = 0.0
    consumer = FakeConsumer()
    assert await look_twice(guard, consumer, at=STALL_AFTER_S) == []
    assert consumer.seeks == []
    assert await passed(guard, [19]) == ["19"]  # and the holes are not looked for again
    assert positions.reads == [(16, 19)]


def _end_at(end: int) -> object:
    async def ends(tps: list[object]) -> dict[object, int]:
        return dict.fromkeys(tps, end)

    return ends


async def test_seeks_that_bring_nothing_stop_the_worker_instead_of_waiting_forever() -> None:
    stopped: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        stopped.append(exc)

    guard = idle_guard(FakePositions(list(range(18)), committed_offset=14), on_fatal=crash)
    consumer = FakeConsumer()
    assert await look_twice(guard, consumer, at=STALL_AFTER_S) == [TP3]
    now = STALL_AFTER_S * 2
    for _ in range(STALL_SEEKS_BEFORE_STOP - 1):
        now += STALL_AFTER_S
        assert await guard.check_stalled(consumer, TOPICS, now=now) == [TP3]
    assert stopped == []
    with pytest.raises(GapNotFilled):
        await guard.check_stalled(consumer, TOPICS, now=now + STALL_AFTER_S)
    assert len(stopped) == 1
    assert len(consumer.seeks) == STALL_SEEKS_BEFORE_STOP


async def test_a_record_handed_on_after_a_seek_resets_the_count_of_fruitless_seeks() -> None:
    guard = idle_guard(FakePositions(list(range(30)), committed_offset=14))
    consumer = FakeConsumer()
    now = 0.0
    for offset in range(14, 14 + STALL_SEEKS_BEFORE_STOP + 2):
        guard.idle_since = now
        assert await look_twice(guard, consumer, at=now + STALL_AFTER_S) == [TP3]
        assert await passed(guard, [offset]) == [str(offset)]
        now += 3 * STALL_AFTER_S
    assert len(consumer.seeks) == STALL_SEEKS_BEFORE_STOP + 2


async def test_guarded_events_mark_the_agent_busy_while_it_handles_a_record() -> None:
    guard = new_guard(FakePositions(list(range(30)), committed_offset=14))
    seen = []
    async for _event in guarded_events(Stream([14, 15]), guard):
        seen.append(guard.idle_since)
    assert seen == [None, None]
    assert guard.idle_since is not None  # waiting again once the stream has no more


async def test_guarded_events_hand_on_in_order_records_as_sift_would() -> None:
    """The in-order shortcut (no generator per record) gives what ``sift`` gives for a stream
    with a second copy, a dropped record and a new generation."""
    offsets = [14, 15, 15, 17, 18, 16]
    via_stream = new_guard(FakePositions(list(range(30)), committed_offset=14))
    got = [(e.message.offset, e.filled) async for e in guarded_events(Stream(offsets), via_stream)]
    via_sift = new_guard(FakePositions(list(range(30)), committed_offset=14))
    expected = await passed(via_sift, offsets)
    assert [f"{o}{'*' if filled else ''}" for o, filled in got] == expected
    assert expected == ["14", "15", "16*", "17", "18"]
    assert via_stream.in_order(Event(Message(19))) is True
    assert via_stream.in_order(Event(Message(19, generation_id=2))) is False  # new generation
    assert via_stream.in_order(Event(Message(21))) is False  # 20 is missing: sift reads it
