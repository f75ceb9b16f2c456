"""One track of a stream on disk: its audio as it arrived, and where its timestamps put silence.

Why both: a stream of one track is archived as it always was (a mono WAV of its audio in arrival
order, gaps joined), and whether a second track comes is known only at the stream's end. So each
track's audio is written the same way, and a frame whose timestamp lands later than the end of
what its track holds is noted (the track's bytes before it, and the silence that fills up to its
place). Only a two-channel WAV reads the notes, to keep the channels aligned: 16 bytes per jump
in a track's timestamps (a lost frame), nothing per frame, so memory stays flat.

Placement (:meth:`TrackSpill.write`): a frame goes at its timestamp's place when that is more
than :data:`SLACK_MS` past the track's end (silence fills the hole); otherwise right after what
the track holds, so timestamps rounded to the millisecond never shift a sample, and a frame that
comes late (``out_of_order``) is written where it arrives, as in a mono WAV.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["INBOUND", "OUTBOUND", "SLACK_MS", "TrackSpill", "channel_of"]

INBOUND, OUTBOUND = 0, 1  # channel numbers (0-based): the caller first, the agent second
SLACK_MS = 2  # two roundings of a millisecond timestamp: within it a frame follows on


def channel_of(track: str | None) -> int:
    """The channel of a media frame's ``track``: outbound is the agent's, anything else inbound."""
    return OUTBOUND if track == "outbound" else INBOUND


class TrackSpill:
    """A track's spill file (``header_size`` bytes reserved in front) and its silence notes."""

    def __init__(self, path: Path, file: BinaryIO, header_size: int) -> None:
        self.path = path
        self.file: BinaryIO | None = file
        self.header_size = header_size
        self.data_bytes = 0  # audio written, as it arrived
        self.length = 0  # bytes of the track as a channel: audio and silence
        self._notes = array("q")  # pairs: data_bytes before the frame, silence bytes
        file.write(bytes(header_size))

    def write(self, audio: bytes, place: int | None, slack: int) -> None:
        """Append ``audio``; ``place``: its timestamp's byte in the channel (None: no timestamp).

        ``slack`` is :data:`SLACK_MS` in bytes: within it of the end, the frame follows on.
        """
        assert self.file is not None  # noqa: S101 - written only while open
        if place is not None and place - self.length > slack:
            self._notes.extend((self.data_bytes, place - self.length))
            self.length = place
        self.file.write(audio)
        self.data_bytes += len(audio)
        self.length += len(audio)

    def silences(self) -> Iterator[tuple[int, int]]:
        """The notes in order: (bytes of audio before the silence, bytes of silence)."""
        notes = self._notes
        return ((notes[i], notes[i + 1]) for i in range(0, len(notes), 2))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
