"""The streams open on one partition, in one consumer generation, and when each one ends.

A stream opens at its first record: its ``connected`` or ``start`` record (or any record with
``frame_index`` 0). Not always ``frame_index`` 0: the ingress numbers the frames it refuses too.
It ends at its ``closed`` record. Any other record of a stream that is not open belongs to a
stream archived before the committed offset (a restart reads from the first record of the
oldest open stream, so later streams' tails come again): it is skipped. Such a tail may hold
that stream's ``start`` (its ``connected`` came before the committed offset): the stream is then
built again from its start, which holds all its audio, so it comes out with the same bytes and
is found archived.

A stream that stops without ``closed`` (the ingress crashed) would hold its partition's commits
back forever. It is archived as ``abandoned`` once it has been quiet for ``quiet_s``: when a
later record of the same partition was received (its ``received_at``) that long after the
stream's last one, so a replay decides the same way; or, when the partition has had no record
at all, after that long on this worker's clock (:meth:`PartitionStreams.quiet_since`, which the
caller uses only once it knows the partition is read to its end).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from workers.stream_archiver.assembly import StreamAssembly
from workers.stream_archiver.frames import BadFrame, Frame
from workers.stream_archiver.ledger import OffsetLedger
from workers.stream_archiver.metrics import RECORDS_SKIPPED
from workers.stream_archiver.spill import SpillDir

__all__ = ["ABANDONED", "Ending", "PartitionStreams"]

log = logging.getLogger(__name__)
ABANDONED = "abandoned"
_OPENING = frozenset({"connected", "start"})


@dataclass(frozen=True)
class Ending:
    """A stream that is complete: archive it, then :meth:`PartitionStreams.archived` it."""

    assembly: StreamAssembly
    reason: str  # the closed record's reason, or "abandoned"
    ended_at: str


class PartitionStreams:
    """Open streams of partition ``tp`` in consumer generation ``generation``."""

    def __init__(self, tp: Any, generation: int, spill: SpillDir, quiet_s: float) -> None:
        self.tp = tp
        self.generation = generation
        self.ledger = OffsetLedger()
        self.skipped = 0  # records of streams archived before (tails read again)
        self.bad = 0  # records that could not be read, or whose audio was not base64
        self._spill = spill
        self._quiet_s = quiet_s
        # By the order of their last record: the head is the stream quiet the longest.
        self._open: OrderedDict[str, StreamAssembly] = OrderedDict()
        self._last_read = time.monotonic()
        self.next_offset: int | None = None

    def skip(self, offset: int) -> None:
        """The record at ``offset`` cannot be read: it is done with, and holds nothing back."""
        self.bad += 1
        RECORDS_SKIPPED.labels("bad").inc()
        self.ledger.handed(offset)
        self.next_offset = offset + 1
        self._last_read = time.monotonic()

    def take(self, offset: int, frame: Frame) -> list[Ending]:
        """Handle the record at ``offset``; return the streams it shows complete."""
        self.ledger.handed(offset)
        self.next_offset = offset + 1
        self._last_read = time.monotonic()
        assembly = self._open.get(frame.stream_sid)
        if assembly is None:
            if frame.frame_index != 0 and frame.event not in _OPENING:
                self.skipped += 1
                RECORDS_SKIPPED.labels("archived_before").inc()
                if frame.event == "closed":
                    log.info(
                        "%s: closed at offset %s for stream %s, which is not open here: it was "
                        "archived before the committed offset",
                        self.tp, offset, frame.stream_sid,
                    )  # fmt: skip
                return self._quiet_before(frame)
            assembly = StreamAssembly(frame, offset, self._spill)
            self.ledger.hold(offset)
            self._open[frame.stream_sid] = assembly
        else:
            self._open.move_to_end(frame.stream_sid)
        ended = self._quiet_before(frame)
        try:
            assembly.take(frame)
        except BadFrame as exc:
            self.bad += 1
            RECORDS_SKIPPED.labels("bad").inc()
            log.warning("%s: record at offset %s of stream %s skipped: %s",
                        self.tp, offset, frame.stream_sid, exc)  # fmt: skip
        if frame.event == "closed":
            del self._open[frame.stream_sid]
            ended.append(Ending(assembly, frame.data["closed"]["reason"], frame.received_at))
        return ended

    def _quiet_before(self, frame: Frame) -> list[Ending]:
        """Streams whose last record was received ``quiet_s`` or more before ``frame``."""
        ended = []
        while self._open:
            sid, head = next(iter(self._open.items()))
            if sid == frame.stream_sid:
                break
            if (frame.received - head.last_received).total_seconds() < self._quiet_s:
                break
            del self._open[sid]
            ended.append(Ending(head, ABANDONED, head.ended_at))
        return ended

    def quiet_since(self, now: float) -> bool:
        """Whether no record has come for ``quiet_s`` on this worker's clock (monotonic)."""
        return bool(self._open) and now - self._last_read >= self._quiet_s

    def abandon_all(self) -> list[Ending]:
        """End every open stream as abandoned (the partition is quiet and read to its end)."""
        ended = [Ending(a, ABANDONED, a.ended_at) for a in self._open.values()]
        self._open.clear()
        return ended

    def archived(self, ending: Ending) -> list[range]:
        """``ending``'s stream is archived: the offsets that may now be acknowledged."""
        self.ledger.release(ending.assembly.first_offset)
        return self.ledger.ackable()

    def drop(self) -> list[StreamAssembly]:
        """Forget every open stream (the partition moved): their spill files, for the caller."""
        dropped = list(self._open.values())
        self._open.clear()
        return dropped

    @property
    def open_streams(self) -> int:
        return len(self._open)
