"""Stream archiver unit fixtures: records fed into one partition's streams, spill files in tmp."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from topics.events import CloudEvent
from workers.stream_archiver.frames import read_frame
from workers.stream_archiver.partition import Ending, PartitionStreams
from workers.stream_archiver.spill import SpillDir

QUIET = 60.0


class Feed:
    """Records into one partition's streams at consecutive offsets."""

    def __init__(self, spill: SpillDir) -> None:
        self.streams = PartitionStreams("tp0", 1, spill, QUIET)
        self.offset = 0
        self.ended: list[Ending] = []

    def close(self) -> None:
        for assembly in [*self.streams.drop(), *(e.assembly for e in self.ended)]:
            assembly.discard()

    def __call__(self, *events: CloudEvent) -> list[Ending]:
        new = []
        for event in events:
            new += self.streams.take(self.offset, read_frame(event.to_bytes()))
            self.offset += 1
        self.ended += new
        return new


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feed]:
    spill = SpillDir(tmp_path / "spill")
    spill.open()
    records = Feed(spill)
    yield records
    records.close()
    spill.close()
