"""The audio the double streams: a tone over a seeded noise floor, 16-bit little-endian mono PCM.

Deterministic so that a test can regenerate what was sent and compare it sample by sample with
what came out of the archive. A pure tone repeats itself chunk after chunk, so a duplicated or
reordered chunk would compare equal; the noise floor (a seeded PRNG per 320-byte block, +-128)
makes every block different, and it is keyed by the block's place in the stream, not by the
chunk size, so the same ``(seed, sample_rate)`` gives the same samples however the stream is cut
into frames.
Produced chunk by chunk, never held whole: a session may last 60 minutes.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "BLOCK_BYTES",
    "SAMPLE_RATES",
    "SAMPLE_WIDTH",
    "ToneAudio",
]

SAMPLE_WIDTH = 2  # bytes: 16-bit PCM
SAMPLE_RATES = (8000, 16000, 24000)
# Exotel's chunks are multiples of 320 bytes; the noise is keyed per block of that size.
BLOCK_BYTES = 320
_TONE_AMPLITUDE = 8000  # about -12 dBFS: clearly audible, far from clipping; noise is +-128


@dataclass(frozen=True)
class ToneAudio:
    """``total_bytes`` of audio (a multiple of :data:`BLOCK_BYTES`) at ``sample_rate``."""

    seed: str
    sample_rate: int = 8000
    total_bytes: int = 0
    tone_hz: float = 440.0

    @classmethod
    def lasting(
        cls, seconds: float, seed: str, sample_rate: int = 8000, tone_hz: float = 440.0
    ) -> ToneAudio:
        """``seconds`` of audio, rounded to whole 320-byte blocks (20 ms at 8 kHz)."""
        blocks = round(seconds * sample_rate * SAMPLE_WIDTH / BLOCK_BYTES)
        return cls(seed, sample_rate, blocks * BLOCK_BYTES, tone_hz)

    @property
    def duration_ms(self) -> int:
        return self.total_bytes * 1000 // (self.sample_rate * SAMPLE_WIDTH)

    def seconds_of(self, size: int) -> float:
        """How long ``size`` bytes of this audio play."""
        return size / (self.sample_rate * SAMPLE_WIDTH)

    def chunks(self, chunk_bytes: int) -> Iterator[bytes]:
        """The audio in ``chunk_bytes`` pieces (a multiple of 320); the last may be shorter."""
        if chunk_bytes <= 0 or chunk_bytes % BLOCK_BYTES:
            raise ValueError(f"chunk_bytes must be a positive multiple of {BLOCK_BYTES}")
        per_chunk = chunk_bytes // BLOCK_BYTES
        blocks = self.total_bytes // BLOCK_BYTES
        for first in range(0, blocks, per_chunk):
            count = min(per_chunk, blocks - first)
            yield b"".join(self._block(first + i) for i in range(count))

    def pcm(self) -> bytes:
        """All of it at once: for tests comparing what came back (keep those short)."""
        return b"".join(self.chunks(BLOCK_BYTES * 50))

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(BLOCK_BYTES * 50):
            digest.update(chunk)
        return digest.hexdigest()

    def _block(self, index: int) -> bytes:
        samples = BLOCK_BYTES // SAMPLE_WIDTH
        tone = _tone(self.sample_rate, self.tone_hz, index * samples)
        # Filler noise, not a secret: a seeded PRNG is what makes the audio reproducible.
        noise = random.Random(f"exotel-double-audio:{self.seed}:{index}").randbytes(samples)  # noqa: S311
        block = array("h", [t + n - 128 for t, n in zip(tone, noise, strict=True)])
        if sys.byteorder == "big":
            block.byteswap()
        return block.tobytes()


@functools.lru_cache(maxsize=1024)
def _tone(sample_rate: int, tone_hz: float, first: int) -> tuple[int, ...]:
    """One block of the tone from sample ``first``. For a whole number of Hz the phase is taken
    modulo the tone's period in samples, so the few distinct blocks are computed once and a long
    stream stays exact; the block is built per 20 ms, so this keeps a stream's CPU small."""
    period = sample_rate // math.gcd(sample_rate, int(tone_hz)) if tone_hz.is_integer() else None
    if period is not None and first >= period:
        return _tone(sample_rate, tone_hz, first % period)
    step = 2 * math.pi * tone_hz / sample_rate
    count = BLOCK_BYTES // SAMPLE_WIDTH
    phases = [(first + n) % period if period else first + n for n in range(count)]
    return tuple(round(_TONE_AMPLITUDE * math.sin(step * phase)) for phase in phases)
