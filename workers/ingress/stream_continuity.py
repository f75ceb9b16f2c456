"""The continuity check of a live stream: each frame's ``sequence_number`` against those before it.

A gap, a duplicate or a frame out of order is marked on the frame's record and counted, never
dropped: the frame is still forwarded (a live call must not lose audio to bookkeeping). Exotel
numbers a stream's frames from 1 (``start``); ``connected`` carries no number.

Memory stays flat in stream length: the checker keeps the highest number seen and the numbers
below it not seen yet, as ranges (at most :data:`MAX_HOLES` of them; past that the oldest is
forgotten, and a frame from it that comes later still is marked a duplicate). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_HOLES", "UNCHECKED", "Continuity", "Mark"]

MAX_HOLES = 1024
_FIRST = 1  # Exotel's first sequence_number (the start frame)


@dataclass(frozen=True)
class Mark:
    """A frame's place in its stream, as the record's ``continuity`` says it."""

    status: str  # ok, gap, duplicate, out_of_order, unchecked
    expected: int | None
    missing: int = 0

    def to_data(self) -> dict[str, Any]:
        return {"status": self.status, "expected": self.expected, "missing": self.missing}


UNCHECKED = Mark("unchecked", None, 0)


@dataclass
class Continuity:
    """Marks frames and counts what it found; :meth:`mark` looks, :meth:`commit` remembers.

    The two steps are apart so that a frame refused after it was marked (its record broke the
    schema) leaves no trace: continuity is that of the frames forwarded.
    """

    highest: int | None = None
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    # Numbers below ``highest`` not seen yet: [start, end) ranges, oldest first.
    _holes: list[list[int]] = field(default_factory=list)

    def mark(self, number: int | None) -> Mark:
        if number is None:
            return UNCHECKED
        expected = _FIRST if self.highest is None else self.highest + 1
        if self.highest is None and number < _FIRST:
            return Mark("ok", number)  # a stream numbered from 0: nothing before it is missing
        if number == expected:
            return Mark("ok", expected)
        if number > expected:
            return Mark("gap", expected, number - expected)
        if self._hole_of(number) is not None:
            return Mark("out_of_order", expected)
        return Mark("duplicate", expected)

    def commit(self, number: int | None, mark: Mark) -> None:
        """Remember a forwarded frame (``mark`` is what :meth:`mark` said of it)."""
        if number is None:
            return
        if mark.status == "gap":
            self.gaps += 1
            self.missing += mark.missing
            assert mark.expected is not None  # noqa: S101 - a gap always has an expected number
            self._holes.append([mark.expected, number])
            if len(self._holes) > MAX_HOLES:
                del self._holes[0]
        elif mark.status == "out_of_order":
            self.out_of_order += 1
            self._fill(number)
        elif mark.status == "duplicate":
            self.duplicates += 1
        if self.highest is None or number > self.highest:
            self.highest = number

    def _hole_of(self, number: int) -> int | None:
        # Late frames are usually from the latest holes: look from the newest back.
        for i in range(len(self._holes) - 1, -1, -1):
            start, end = self._holes[i]
            if start <= number < end:
                return i
        return None

    def _fill(self, number: int) -> None:
        i = self._hole_of(number)
        if i is None:
            return
        start, end = self._holes[i]
        pieces = [[s, e] for s, e in ((start, number), (number + 1, end)) if s < e]
        self._holes[i : i + 1] = pieces
        if len(self._holes) > MAX_HOLES:
            del self._holes[0]
