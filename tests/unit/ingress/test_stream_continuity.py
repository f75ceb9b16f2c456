"""The sequence_number check: every frame is marked, counted, and none is dropped."""

from __future__ import annotations

from workers.ingress.stream_continuity import MAX_HOLES, Continuity, Mark


def feed(checker: Continuity, numbers: list[int | None]) -> list[Mark]:
    marks = []
    for number in numbers:
        mark = checker.mark(number)
        checker.commit(number, mark)
        marks.append(mark)
    return marks


def test_in_order_from_one_is_all_ok():
    checker = Continuity()
    marks = feed(checker, [None, 1, 2, 3])
    assert [m.status for m in marks] == ["unchecked", "ok", "ok", "ok"]
    assert [m.expected for m in marks] == [None, 1, 2, 3]
    assert (checker.gaps, checker.missing, checker.duplicates, checker.out_of_order) == (0, 0, 0, 0)


def test_gap_then_late_frame_then_duplicate():
    checker = Continuity()
    marks = feed(checker, [1, 2, 5, 3, 3, 6, 4])
    assert [(m.status, m.expected, m.missing) for m in marks] == [
        ("ok", 1, 0),
        ("ok", 2, 0),
        ("gap", 3, 2),
        ("out_of_order", 6, 0),  # 3 was skipped by the gap: late, not a repeat
        ("duplicate", 6, 0),  # 3 again
        ("ok", 6, 0),
        ("out_of_order", 7, 0),  # 4, the last hole
    ]
    assert (checker.gaps, checker.missing, checker.duplicates, checker.out_of_order) == (1, 2, 1, 2)
    assert checker.highest == 6


def test_a_repeat_of_the_highest_is_a_duplicate():
    checker = Continuity()
    assert [m.status for m in feed(checker, [1, 2, 2])] == ["ok", "ok", "duplicate"]


def test_a_stream_that_starts_late_has_a_gap_and_one_from_zero_is_ok():
    late = Continuity()
    assert feed(late, [4])[0] == Mark("gap", 1, 3)
    zero = Continuity()
    assert [m.status for m in feed(zero, [0, 1, 2])] == ["ok", "ok", "ok"]


def test_mark_alone_remembers_nothing():
    checker = Continuity()
    feed(checker, [1])
    assert checker.mark(5).status == "gap"
    assert checker.mark(2) == Mark("ok", 2)  # the gap was looked at, not committed
    assert checker.gaps == 0


def test_holes_are_bounded_and_the_oldest_forgotten():
    checker = Continuity()
    numbers = [1] + [3 * i for i in range(1, MAX_HOLES + 10)]  # a hole before every one
    feed(checker, numbers)
    assert checker.gaps == MAX_HOLES + 9
    assert len(checker._holes) == MAX_HOLES
    assert checker.mark(2).status == "duplicate"  # its hole was forgotten
    assert checker.mark(3 * (MAX_HOLES + 8) + 1).status == "out_of_order"  # a recent hole
