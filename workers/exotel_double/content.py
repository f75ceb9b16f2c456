"""Deterministic recording bytes, produced chunk by chunk and never held whole in memory.

Recordings in tests run to hundreds of MiB (the archiver's size limits and multipart uploads need
them), so content is a pure function of ``(seed, chunk index)``: any chunk can be regenerated on
demand, the double streams it, and the sha256 a test compares against is computed the same way.

A chunk is its index (8 bytes) and then the seed's own random block: chunks out of order, lost or
repeated change the sha256 all the same, and the double serves at the speed of a file server
(about 1 GB/s here) instead of generating random bytes per chunk (280 MB/s, which made the
double, not the archiver, the limit of the archiver's bench).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from functools import lru_cache

__all__ = ["CHUNK_SIZE", "iter_content", "sha256_of"]

CHUNK_SIZE = 64 * 1024


def iter_content(size: int, seed: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield ``size`` bytes in chunks of at most ``chunk_size`` (the same bytes for one seed)."""
    if size < 0:
        raise ValueError("size must be >= 0")
    index = 0
    remaining = size
    while remaining > 0:
        block = _block(seed, index)
        index += 1
        for start in range(0, len(block), chunk_size):
            if remaining <= 0:
                break
            piece = block[start : start + min(chunk_size, remaining)]
            remaining -= len(piece)
            yield piece


def sha256_of(size: int, seed: str) -> str:
    """Hex sha256 of the content, computed by streaming (call it off the event loop)."""
    digest = hashlib.sha256()
    for chunk in iter_content(size, seed):
        digest.update(chunk)
    return digest.hexdigest()


def _block(seed: str, index: int) -> bytes:
    return index.to_bytes(8, "big") + _seed_filler(seed)


@lru_cache(maxsize=64)
def _seed_filler(seed: str) -> bytes:
    """The random rest of every chunk of ``seed``'s content (a chunk less its 8-byte index)."""
    # Filler bytes, not secrets: a seeded PRNG is what makes the content reproducible.
    return random.Random(f"exotel-double:{seed}").randbytes(CHUNK_SIZE - 8)  # noqa: S311
