"""The continuity guard: a record faust dropped at a handover is read again, never passed.

The Kafka side is a fake here (a partition's records as a list of offsets, a committed offset);
``tests/integration/workers/test_offset_guard_kafka.py`` checks the real positions reader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from workers.offset_guard import (
    MAX_SEEKS_PER_GAP,
    ContinuityGuard,
    GapNotRecovered,
    admitted_events,
)

TP = ("commands", 3)


@dataclass
class Message:
    offset: int
    generation_id: int = 1
    tp: tuple[str, int] = TP
    acked: bool = False


class FakePositions:
    """A partition holding ``offsets`` (holes allowed) and a group that committed ``committed``."""

    def __init__(self, offsets: list[int], committed: int) -> None:
        self.offsets = offsets
        self.committed_offset = committed
        self.calls = 0

    async def committed(self, tp: object) -> int:
        self.calls += 1
        return self.committed_offset

    async def first_from(self, tp: object, offset: int) -> int | None:
        return next((o for o in self.offsets if o >= offset), None)


class Seeks:
    def __init__(self) -> None:
        self.to: list[tuple[object, int]] = []

    async def __call__(self, tp: object, offset: int) -> None:
        self.to.append((tp, offset))


async def admitted(guard: ContinuityGuard, offsets: list[int], generation: int = 1) -> list[int]:
    return [o for o in offsets if await guard.admit(Message(o, generation))]


async def test_first_record_at_the_committed_offset_goes_through() -> None:
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), seeks)
    assert await admitted(guard, [14, 15, 16]) == [14, 15, 16]
    assert seeks.to == [] and guard.gaps_found == 0


async def test_a_hole_in_the_log_is_not_a_gap() -> None:
    # Offsets 14 and 15 hold no record (transaction markers, compaction): 16 is the first.
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions([10, 11, 12, 13, 16, 17], committed=14), seeks)
    assert await admitted(guard, [16, 17]) == [16, 17]
    assert seeks.to == []


async def test_the_handover_drop_is_read_again_before_anything_later() -> None:
    """The failure a trace showed: committed 14, the new owner's first record is 15."""
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), seeks)
    # 15..17 were queued before the seek took effect; then the re-read brings 14, 15, ...
    got = await admitted(guard, [15, 16, 17, 14, 15, 16, 17, 18])
    assert got == [14, 15, 16, 17, 18]
    assert seeks.to == [(TP, 14)]
    assert guard.gaps_found == 1


async def test_a_re_read_that_passes_the_missing_record_again_seeks_again() -> None:
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), seeks)
    # The re-read lost 14 again (it starts at 15, at or below what was already turned away).
    got = await admitted(guard, [15, 16, 15, 16, 14, 15])
    assert got == [14, 15]
    assert seeks.to == [(TP, 14), (TP, 14)]


async def test_a_record_that_never_comes_back_stops_the_worker_instead_of_skipping() -> None:
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), seeks)
    with pytest.raises(GapNotRecovered, match="record 14"):
        for _ in range(MAX_SEEKS_PER_GAP + 1):
            assert await admitted(guard, [15, 16]) == []
    assert len(seeks.to) == MAX_SEEKS_PER_GAP


async def test_each_generation_checks_its_first_record_again() -> None:
    positions = FakePositions(list(range(30)), committed=14)
    seeks = Seeks()
    guard = ContinuityGuard(positions, seeks)
    assert await admitted(guard, [14, 15], generation=1) == [14, 15]
    positions.committed_offset = 16
    # A new assignment: the first record must be the committed one again.
    assert await admitted(guard, [17], generation=2) == []
    assert seeks.to == [(TP, 16)]
    assert await admitted(guard, [16, 17], generation=2) == [16, 17]
    assert positions.calls == 2  # once per partition and generation, not per record


async def test_partitions_are_guarded_apart() -> None:
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), seeks)
    other = ("commands", 4)
    assert not await guard.admit(Message(15))  # partition 3 waits for 14
    assert await guard.admit(Message(14, tp=other))  # partition 4 is not held back
    assert await guard.admit(Message(15, tp=other))
    assert await guard.admit(Message(14))


async def test_records_below_the_commit_or_read_already_are_turned_away() -> None:
    # Below the committed offset: processed and committed before. A second copy of a record
    # already admitted: faust re-fetched it. Neither is processed again.
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), seeks)
    assert await admitted(guard, [12, 13, 14, 15, 14, 15, 16]) == [14, 15, 16]
    assert seeks.to == []


async def test_a_record_lost_after_the_first_one_is_read_again() -> None:
    """The other shape of the drop: the agent got 14, then 15 and 16 were cleared and 15 lost."""
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), seeks)
    got = await admitted(guard, [14, 16, 17, 15, 16, 17])
    assert got == [14, 15, 16, 17]
    assert seeks.to == [(TP, 15)]
    assert guard.gaps_found == 1


async def test_a_hole_inside_the_log_is_passed_without_seeking() -> None:
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions([14, 15, 18, 19], committed=14), seeks)
    assert await admitted(guard, [14, 15, 18, 19]) == [14, 15, 18, 19]
    assert seeks.to == []


async def test_a_new_gap_after_a_recovered_one_gets_its_own_seeks() -> None:
    seeks = Seeks()
    guard = ContinuityGuard(FakePositions(list(range(40)), committed=10), seeks)
    got = await admitted(guard, [11, 10, 11, 12, 14, 13, 14])
    assert got == [10, 11, 12, 13, 14]
    assert seeks.to == [(TP, 10), (TP, 13)]
    assert guard.gaps_found == 2


@dataclass
class Event:
    message: Message


class Stream:
    def __init__(self, offsets: list[int]) -> None:
        self.items = [Event(Message(o)) for o in offsets]

    async def events(self) -> AsyncIterator[Event]:
        for item in self.items:
            yield item


async def test_records_turned_away_are_released_from_faust_not_acked() -> None:
    """faust waits at every rebalance and shutdown for each record it handed out to be done;
    a copy the guard turned away must not hold that up (it did: a worker could not stop)."""
    stream = Stream([15, 14, 15])
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), Seeks())
    got = [event.message.offset async for event in admitted_events(stream, guard)]
    assert got == [14, 15]
    turned_away, first, second = (event.message for event in stream.items)
    assert turned_away.acked is True  # released: faust stops waiting for it
    assert first.acked is False and second.acked is False  # admitted: the agent acks them
