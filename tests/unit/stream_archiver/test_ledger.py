"""The commit rule: never past the first record of a stream that is not archived yet."""

from __future__ import annotations

import pytest

from workers.stream_archiver.ledger import OffsetLedger


def _flat(ranges: list[range]) -> list[int]:
    return [offset for r in ranges for offset in r]


def test_with_no_stream_open_every_offset_handed_on_is_ackable_at_once() -> None:
    ledger = OffsetLedger()
    for offset in range(5):
        ledger.handed(offset)
    assert _flat(ledger.ackable()) == [0, 1, 2, 3, 4]
    assert ledger.ackable() == []  # each offset once


def test_an_open_stream_holds_back_its_first_offset_and_everything_after() -> None:
    ledger = OffsetLedger()
    ledger.handed(10)  # a tail of an older stream
    ledger.hold(11)
    for offset in range(11, 20):
        ledger.handed(offset)
    assert _flat(ledger.ackable()) == [10]
    ledger.hold(15)  # a second stream opens, interleaved
    ledger.release(15)  # ...and is archived first: nothing moves, the older one still holds
    assert ledger.ackable() == []
    ledger.hold(20)
    ledger.handed(20)
    ledger.handed(21)
    ledger.release(11)
    assert _flat(ledger.ackable()) == list(range(11, 20))  # up to the next open stream
    ledger.release(20)
    assert _flat(ledger.ackable()) == [20, 21]
    assert ledger.pending() == 0 and ledger.held == 0


def test_holes_in_the_offsets_are_kept_out_of_the_acks() -> None:
    ledger = OffsetLedger()
    ledger.hold(0)
    for offset in (0, 1, 2, 5, 6, 9):
        ledger.handed(offset)
    assert ledger.pending() == 6
    ledger.release(0)
    assert _flat(ledger.ackable()) == [0, 1, 2, 5, 6, 9]


def test_memory_is_a_few_runs_however_long_the_stream() -> None:
    ledger = OffsetLedger()
    ledger.hold(0)
    for offset in range(100_000):
        ledger.handed(offset)
    assert len(ledger._runs) == 1
    ledger.release(0)
    assert ledger.ackable() == [range(0, 100_000)]


def test_offsets_and_streams_must_come_in_order() -> None:
    ledger = OffsetLedger()
    ledger.handed(5)
    with pytest.raises(ValueError):
        ledger.handed(3)
    ledger.hold(7)
    with pytest.raises(ValueError):
        ledger.hold(6)
