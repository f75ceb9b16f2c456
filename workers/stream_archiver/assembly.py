"""One stream's audio being put together: frames in, a sealed WAV file out.

Frames are taken in arrival (offset) order. Media go to the stream's spill file as they come,
after the reserved header space, so memory holds one write buffer per open stream whatever the
stream's length. A media frame marked ``duplicate`` is counted, not written; ``out_of_order``
frames are written where they arrive; a gap is counted (``gaps``, ``missing``) and not filled.
A record that is a second copy of one already taken (same connection, same ``frame_index`` or
lower: a producer's retry) is ignored altogether, so a replay yields the same bytes.

:meth:`StreamAssembly.take` runs on the event loop (a buffered write to the page cache);
:meth:`StreamAssembly.seal` and :meth:`StreamAssembly.discard` block: call them in a thread.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from workers.archiver.keys import safe_segment
from workers.stream_archiver.frames import Frame
from workers.stream_archiver.spill import SpillDir
from workers.stream_archiver.wav import AudioFormat, format_of, wav_header

__all__ = ["Counts", "Sealed", "StreamAssembly"]

_HASH_CHUNK = 1024 * 1024


@dataclass
class Counts:
    """What the stream held, as the archived record reports it."""

    media_frames: int = 0
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0


@dataclass(frozen=True)
class Sealed:
    """The finished WAV on disk: its size and the sha256 of all its bytes."""

    path: Path
    size: int
    sha256: str
    audio: AudioFormat
    data_bytes: int

    @property
    def duration_ms(self) -> int:
        return self.audio.duration_ms(self.data_bytes)


class StreamAssembly:
    """The open stream whose first record is ``first`` (at ``first_offset`` of its partition)."""

    def __init__(self, first: Frame, first_offset: int, spill: SpillDir) -> None:
        self.stream_sid = first.stream_sid
        self.customer_id = first.customer_id
        self.app_id = first.app_id
        self.first_offset = first_offset
        # The start record's time (the first record's until one comes): it dates the object
        # key, the same whether the stream is built again from its connected or its start.
        self.started_at = first.received_at
        self._started = False
        self.ended_at = first.received_at
        self.last_received: datetime = first.received
        self.call_sid: str | None = None
        self.audio: AudioFormat | None = None  # fixed when the spill file is created
        self.counts = Counts()
        self.data_bytes = 0
        self._media_format: dict[str, Any] | None = None
        self._spill = spill
        self._path: Path | None = None
        self._file: BinaryIO | None = None
        self._last_index: dict[str, int] = {}  # connection_id -> highest frame_index taken

    def take(self, frame: Frame) -> bool:
        """Add ``frame``; False when it is a second copy of a frame already taken (ignored)."""
        last = self._last_index.get(frame.connection_id)
        if last is not None and frame.frame_index <= last:
            return False
        written = frame.event == "media" and frame.continuity != "duplicate"
        audio = frame.audio() if written else b""  # BadFrame before anything is counted
        self._last_index[frame.connection_id] = frame.frame_index
        self.last_received = frame.received
        self.ended_at = frame.received_at
        self._count(frame)
        if frame.event == "start":
            if not self._started:
                self._started = True
                self.started_at = frame.received_at
            start = frame.data["start"]
            self.call_sid = start["call_sid"]
            self._media_format = start["media_format"]
        elif written:
            self._writer().write(audio)
            self.data_bytes += len(audio)
            self.counts.media_frames += 1
        return True

    def _count(self, frame: Frame) -> None:
        counts = self.counts
        if frame.continuity == "gap":
            counts.gaps += 1
            counts.missing += frame.missing
        elif frame.continuity == "duplicate":
            counts.duplicates += 1
        elif frame.continuity == "out_of_order":
            counts.out_of_order += 1

    def _writer(self) -> BinaryIO:
        if self._file is None:
            # The format is the start frame's, or PCM at 8 kHz when media come without one.
            self.audio = format_of(self._media_format)
            self._path, self._file = self._spill.create(safe_segment(self.stream_sid))
            self._file.write(bytes(self.audio.header_size))
        return self._file

    def seal(self) -> Sealed:
        """Write the header in front of the audio, close the file, hash it (blocking)."""
        writer = self._writer()
        assert self._path is not None and self.audio is not None  # noqa: S101 - set by _writer
        if self.data_bytes & 1:
            writer.write(b"\0")  # RIFF chunks are padded to an even size
        writer.seek(0)
        writer.write(wav_header(self.audio, self.data_bytes))
        writer.close()
        self._file = None
        digest = hashlib.sha256()
        size = 0
        with open(self._path, "rb") as wav:
            while chunk := wav.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return Sealed(self._path, size, digest.hexdigest(), self.audio, self.data_bytes)

    def discard(self) -> None:
        """Close and delete the spill file, if there is one (blocking)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
