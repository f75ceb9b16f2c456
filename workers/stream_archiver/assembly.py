"""One stream's audio being put together: frames in, a sealed WAV file out.

Frames are taken in arrival (offset) order. Media go to their track's spill file as they come
(``tracks.py``: inbound, or no track, is one file; outbound another), after the reserved header
space, so memory holds one write buffer per open track whatever the stream's length. A media
frame marked ``duplicate`` is counted, not written; ``out_of_order`` frames are written where
they arrive; a gap is counted (``gaps``, ``missing``). A record that is a second copy of one
already taken (same connection, same ``frame_index`` or lower: a producer's retry) is ignored
altogether, so a replay yields the same bytes.

Sealed, a stream of one track is that track's file with its header: a mono WAV of its audio as it
arrived, gaps joined. A stream of both tracks becomes a new two-channel file (``stereo.py``),
each channel placed by the frames' ``timestamp_ms`` from the stream's first media timestamp, so
a track's lost frames are silence and the channels stay aligned.

:meth:`StreamAssembly.take` runs on the event loop (a buffered write to the page cache);
:meth:`StreamAssembly.seal` and :meth:`StreamAssembly.discard` block: call them in a thread.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from workers.archiver.keys import safe_segment
from workers.stream_archiver.frames import Frame
from workers.stream_archiver.spill import SpillDir
from workers.stream_archiver.stereo import interleave, stereo_bytes
from workers.stream_archiver.tracks import INBOUND, OUTBOUND, SLACK_MS, TrackSpill, channel_of
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
    channels: int = 1

    @property
    def duration_ms(self) -> int:
        return self.audio.duration_ms(self.data_bytes, self.channels)


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
        self.audio: AudioFormat | None = None  # fixed when the first spill file is created
        self.counts = Counts()
        self._media_format: dict[str, Any] | None = None
        self._spill = spill
        self._tracks: dict[int, TrackSpill] = {}  # by channel
        self._origin_ms: int | None = None  # the first written media frame's timestamp
        self._stereo: Path | None = None
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
            media = frame.data["media"]
            self._write(channel_of(media["track"]), audio, media["timestamp_ms"])
            self.counts.media_frames += 1
        return True

    def _write(self, channel: int, audio: bytes, timestamp_ms: int | None) -> None:
        track = self._track(channel)
        if timestamp_ms is None:
            track.write(audio, None, 0)
            return
        if self._origin_ms is None:
            self._origin_ms = timestamp_ms
        place = self._bytes_of_ms(max(0, timestamp_ms - self._origin_ms))
        track.write(audio, place, self._bytes_of_ms(SLACK_MS))

    def _bytes_of_ms(self, ms: int) -> int:
        assert self.audio is not None  # noqa: S101 - set by _track
        return ms * self.audio.sample_rate // 1000 * self.audio.bytes_per_sample

    def _count(self, frame: Frame) -> None:
        counts = self.counts
        if frame.continuity == "gap":
            counts.gaps += 1
            counts.missing += frame.missing
        elif frame.continuity == "duplicate":
            counts.duplicates += 1
        elif frame.continuity == "out_of_order":
            counts.out_of_order += 1

    def _track(self, channel: int) -> TrackSpill:
        track = self._tracks.get(channel)
        if track is None:
            # The format is the start frame's, or PCM at 8 kHz when media come without one.
            if self.audio is None:
                self.audio = format_of(self._media_format)
            path, file = self._spill.create(safe_segment(self.stream_sid))
            track = self._tracks[channel] = TrackSpill(path, file, self.audio.header_size)
        return track

    @property
    def data_bytes(self) -> int:
        """Audio bytes taken, over every track."""
        return sum(track.data_bytes for track in self._tracks.values())

    def seal(self) -> Sealed:
        """The finished WAV: one track's file with its header, or both interleaved (blocking)."""
        if len(self._tracks) == 2:
            return self._seal_stereo()
        (track,) = self._tracks.values() if self._tracks else (self._track(INBOUND),)
        assert self.audio is not None and track.file is not None  # noqa: S101 - set by _track
        writer = track.file
        if track.data_bytes & 1:
            writer.write(b"\0")  # RIFF chunks are padded to an even size
        writer.seek(0)
        writer.write(wav_header(self.audio, track.data_bytes))
        track.close()
        return self._sealed(track.path, track.data_bytes, 1)

    def _seal_stereo(self) -> Sealed:
        audio = self.audio
        assert audio is not None  # noqa: S101 - set by _track
        inbound, outbound = self._tracks[INBOUND], self._tracks[OUTBOUND]
        for track in (inbound, outbound):
            track.close()
        width = audio.bytes_per_sample
        data_bytes = stereo_bytes(inbound, outbound, width)
        self._stereo, out = self._spill.create(safe_segment(self.stream_sid))
        with out:
            out.write(wav_header(audio, data_bytes, channels=2))
            interleave(inbound, outbound, width, out)
        return self._sealed(self._stereo, data_bytes, 2)

    def _sealed(self, path: Path, data_bytes: int, channels: int) -> Sealed:
        assert self.audio is not None  # noqa: S101 - set by _track
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as wav:
            while chunk := wav.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return Sealed(path, size, digest.hexdigest(), self.audio, data_bytes, channels)

    def discard(self) -> None:
        """Close and delete the spill files, if there are any (blocking)."""
        paths = [track.path for track in self._tracks.values()]
        for track in self._tracks.values():
            track.close()
        if self._stereo is not None:
            paths.append(self._stereo)
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
