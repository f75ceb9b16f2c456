"""The continuity guard: records faust dropped at a handover are read and processed, in order,
before anything later; second copies are turned away.

The Kafka side is a fake here (a partition's records as a list of offsets, a committed offset);
``tests/integration/workers/test_offset_guard_kafka.py`` checks the real reader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from workers.errors import RetryableError
from workers.offset_guard import ContinuityGuard, GapNotFilled, guarded_events

TP = ("commands", 3)


@dataclass
class Message:
    offset: int
    generation_id: int = 1
    tp: tuple[str, int] = TP
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
    other = ("commands", 4)
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
