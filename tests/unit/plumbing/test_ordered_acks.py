"""In-order acks per partition, and the faust commit behaviour (#606) they exist to work around."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from workers.plumbing.ordered_acks import OrderedAcks


@dataclass(frozen=True)
class Msg:
    tp: str
    offset: int


@dataclass(frozen=True, eq=False)
class Ev:
    message: Msg


def events(tp: str, *offsets: int) -> list[Ev]:
    return [Ev(Msg(tp, offset)) for offset in offsets]


async def test_acks_wait_for_every_earlier_offset_of_the_partition() -> None:
    acked: list[int] = []

    async def ack(event: Ev) -> None:
        acked.append(event.message.offset)

    acks = OrderedAcks(ack)
    e10, e11, e12 = events("p0", 10, 11, 12)
    (other,) = events("p1", 3)
    for event in (e10, e11, e12, other):
        acks.start(event.message.tp, event)
    assert await acks.done("p0", e12) == 0
    assert await acks.done("p0", e11) == 0
    assert await acks.done("p1", other) == 1  # another partition is not held back
    assert acked == [3]
    assert await acks.done("p0", e10) == 3
    assert acked == [3, 10, 11, 12]
    assert acks.in_flight() == 0


async def test_an_unfinished_event_holds_back_everything_after_it() -> None:
    acked: list[int] = []

    async def ack(event: Ev) -> None:
        acked.append(event.message.offset)

    acks = OrderedAcks(ack)
    evs = events("p0", *range(5))
    for event in evs:
        acks.start("p0", event)
    for event in evs[1:]:
        await acks.done("p0", event)
    assert acked == []
    assert acks.in_flight() == 5


async def test_finishing_an_item_that_was_never_started_is_an_error() -> None:
    async def ack(event: Ev) -> None:
        raise AssertionError("nothing may be acked")

    acks = OrderedAcks(ack)
    (started, stranger) = events("p0", 1, 2)
    acks.start("p0", started)
    with pytest.raises(KeyError):
        await acks.done("p0", stranger)
    assert acks.in_flight() == 1


def _faust_new_offset(committed: int | None, acked: list[int]) -> int | None:
    """Run faust's own ``Consumer._new_offset`` on a partition's bookkeeping."""
    fake: Any = SimpleNamespace(
        _acked=defaultdict(list, {"tp": list(acked)}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {"tp": committed}),
        _acked_index=defaultdict(set, {"tp": set(acked)}),
    )
    return Consumer._new_offset(fake, "tp")


def test_faust_commits_past_an_in_flight_offset_when_acks_arrive_out_of_order() -> None:
    # Committed 10 means offsets < 10 are done and 10 is next. With 10 still in flight and 11
    # acked, a correct consumer would not move; faust 0.15.3 commits 12 (#606). Before the first
    # commit of a partition (committed None) it checks nothing at all.
    assert _faust_new_offset(10, [11]) == 12
    assert _faust_new_offset(None, [5, 6]) == 7
    # What OrderedAcks guarantees faust sees: a run starting at the committed offset.
    assert _faust_new_offset(10, [10, 11]) == 12
    assert _faust_new_offset(10, [12]) is None
