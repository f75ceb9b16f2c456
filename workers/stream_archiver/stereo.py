"""Two tracks' spill files into one two-channel WAV body, streaming (blocking: call from a thread).

Each channel is its track's audio with the noted silences put back in (``tracks.py``); the
shorter channel is padded with silence to the longer one's length. Read and written in blocks
of :data:`BLOCK_SAMPLES`, so a one-hour stream takes as little memory as a one-second one.
"""

from __future__ import annotations

from typing import BinaryIO

from workers.stream_archiver.tracks import TrackSpill

__all__ = ["BLOCK_SAMPLES", "ChannelReader", "interleave", "stereo_bytes"]

BLOCK_SAMPLES = 64 * 1024  # per channel and block: 128 KiB of 16-bit audio


class ChannelReader:
    """A closed track's samples as a channel: its audio, its silences, then silence for ever."""

    def __init__(self, track: TrackSpill) -> None:
        self._file = open(track.path, "rb")  # noqa: SIM115 - closed by close()
        self._file.seek(track.header_size)
        self._left = track.data_bytes  # audio bytes not read yet
        self._notes = track.silences()
        self._note = next(self._notes, None)
        self._read = 0  # audio bytes read so far

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes of the channel."""
        out = bytearray()
        while len(out) < size:
            need = size - len(out)
            note = self._note
            if note is not None and note[0] == self._read:
                take = min(need, note[1])
                out += bytes(take)
                rest = note[1] - take
                self._note = (note[0], rest) if rest else next(self._notes, None)
            elif self._left:
                until = note[0] - self._read if note is not None else self._left
                piece = self._file.read(min(need, until, self._left))
                if not piece:
                    raise OSError(f"{self._file.name}: shorter than the audio written to it")
                out += piece
                self._read += len(piece)
                self._left -= len(piece)
            else:
                out += bytes(need)
        return bytes(out)

    def close(self) -> None:
        self._file.close()


def stereo_bytes(inbound: TrackSpill, outbound: TrackSpill, width: int) -> int:
    """The data size of the two-channel WAV: the longer channel, in whole samples, twice."""
    samples = -(-max(inbound.length, outbound.length) // width)
    return samples * width * 2


def interleave(inbound: TrackSpill, outbound: TrackSpill, width: int, out: BinaryIO) -> int:
    """Write the channels' samples interleaved (inbound first) to ``out``; return bytes written."""
    total = stereo_bytes(inbound, outbound, width) // 2
    left, right = ChannelReader(inbound), ChannelReader(outbound)
    code = "B" if width == 1 else "H"
    written = 0
    try:
        while written < total * 2:
            size = min(BLOCK_SAMPLES * width, total - written // 2)
            block = bytearray(size * 2)
            view = memoryview(block).cast(code)
            view[0::2] = memoryview(left.read(size)).cast(code)
            view[1::2] = memoryview(right.read(size)).cast(code)
            out.write(block)
            written += len(block)
    finally:
        left.close()
        right.close()
    return written
