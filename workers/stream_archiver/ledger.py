"""Which offsets of one partition may be committed: never the first record of an unarchived stream.

Streams are interleaved on a partition, and a stream's audio exists only in its spill file until
it is archived. So the committed offset must stay at or before the first record of the oldest
stream still open (or being archived): a restart then reads every such stream again from its
beginning. Everything before that point is done.

The ledger keeps, per partition, the offsets handed on but not yet acknowledged as a few runs
(``[start, end)``; one run unless the partition has holes), and the first offset of every
stream held back. Both are small whatever the streams' lengths: memory does not grow with them.
:meth:`OffsetLedger.ackable` gives the offsets that may now be acknowledged, in order, once each.
Pure logic, no faust.
"""

from __future__ import annotations

from collections import deque

__all__ = ["OffsetLedger"]


class OffsetLedger:
    """Offsets handed on (in increasing order) and the streams holding them back."""

    def __init__(self) -> None:
        self._runs: deque[list[int]] = deque()  # [start, end) handed on, not yet released
        # First offsets of the streams held back, in the order they opened (= offset order).
        self._holds: dict[int, None] = {}

    def handed(self, offset: int) -> None:
        """Record ``offset`` as processed (offsets come in increasing order)."""
        if self._runs and self._runs[-1][1] == offset:
            self._runs[-1][1] = offset + 1
        elif self._runs and offset < self._runs[-1][1]:
            raise ValueError(f"offset {offset} handed on after {self._runs[-1][1] - 1}")
        else:
            self._runs.append([offset, offset + 1])

    def hold(self, first_offset: int) -> None:
        """A stream opened at ``first_offset``: nothing from there on may be acknowledged."""
        if self._holds and first_offset <= next(reversed(self._holds)):
            raise ValueError(f"stream held at {first_offset} after a later one")
        self._holds[first_offset] = None

    def release(self, first_offset: int) -> None:
        """The stream opened at ``first_offset`` is archived (or dropped): it holds nothing back."""
        del self._holds[first_offset]

    def ackable(self) -> list[range]:
        """The offsets that may be acknowledged now (each returned once), as ranges in order."""
        limit = next(iter(self._holds)) if self._holds else None
        ready: list[range] = []
        while self._runs:
            start, end = self._runs[0]
            if limit is not None and end > limit:
                if start < limit:
                    ready.append(range(start, limit))
                    self._runs[0][0] = limit
                break
            ready.append(range(start, end))
            self._runs.popleft()
        return ready

    @property
    def held(self) -> int:
        """Streams holding offsets back."""
        return len(self._holds)

    def pending(self) -> int:
        """Offsets handed on and not yet returned by :meth:`ackable`."""
        return sum(end - start for start, end in self._runs)
