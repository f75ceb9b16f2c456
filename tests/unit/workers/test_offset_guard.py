"""The continuity guard: a record faust dropped at a handover is read again, never passed.

The Kafka side is a fake here (a partition's records as a list of offsets, a committed offset);
``tests/integration/workers/test_offset_guard_kafka.py`` checks the real positions reader.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from workers.offset_guard import MAX_SEEKS_PER_GAP, ContinuityGuard, GapNotRecovered

TP = ("commands", 3)


@dataclass
class Message:
    offset: int
    generation_id: int = 1
    tp: tuple[str, int] = TP


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


async def test_records_older_than_the_commit_are_not_held_back() -> None:
    # A record below the committed offset is a redelivery: faust ignores its ack; let it be.
    guard = ContinuityGuard(FakePositions(list(range(30)), committed=14), Seeks())
    assert await admitted(guard, [12, 13, 14]) == [12, 13, 14]
