"""Request limits: a body size cap that stops reading early, a deadline for the whole body, and a
per-tenant token bucket.

The body is read chunk by chunk, so a chunked body without ``Content-Length`` is refused as soon
as it passes the cap, never buffered whole; a body that trickles in slower than the deadline
allows is refused too (aiohttp itself has no read timeout for a body in progress). The rate
limit runs after authentication, so only tenants from the secrets file get a bucket (the table
cannot be grown by strangers).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

__all__ = ["BodySlow", "BodyTooLarge", "RateLimiter", "read_body"]

_CHUNK = 16 * 1024


class BodyTooLarge(Exception):
    """The body passed ``limit``; ``head`` is its start (at most ``limit`` bytes), ``size`` the
    declared length, else how many bytes arrived before reading stopped."""

    def __init__(self, limit: int, head: bytes, size: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit
        self.head = head
        self.size = size


class BodySlow(Exception):
    """The body did not arrive within ``timeout_s``; ``head`` is what came, ``size`` its length."""

    def __init__(self, timeout_s: float, head: bytes, size: int) -> None:
        super().__init__(f"body not received within {timeout_s} s")
        self.timeout_s = timeout_s
        self.head = head
        self.size = size


async def read_body(request: web.Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The whole body if it is at most ``limit`` bytes and arrives within ``timeout_s``; else
    :class:`BodyTooLarge` or :class:`BodySlow`, as early as either is known."""
    declared = request.content_length
    if declared is not None and declared > limit:
        # Believe the header: no need to read a byte of a body that announces itself too big.
        raise BodyTooLarge(limit, b"", declared)
    content = request.content
    if content.is_eof():
        # The whole body is here already (a webhook is small; it came with its headers): take it
        # without a read loop or a timer.
        body = content.read_nowait()
        if len(body) > limit:
            raise BodyTooLarge(limit, body[:limit], len(body))
        return body
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    parts.append(chunk)
                    raise BodyTooLarge(limit, b"".join(parts)[:limit], size)
                parts.append(chunk)
    except TimeoutError:
        raise BodySlow(timeout_s or 0.0, b"".join(parts)[:limit], size) from None
    return b"".join(parts)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets per tenant: ``rate`` tokens a second up to ``burst``; rate 0 disables."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = max(1.0, float(burst))
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, tenant: str) -> float | None:
        """Take a token: ``None`` when allowed, else the seconds to wait (for Retry-After)."""
        if self._rate <= 0:
            return None
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    @staticmethod
    def retry_after_header(wait: float) -> str:
        """Retry-After takes whole seconds; round up so a client that obeys it gets a token."""
        return str(max(1, math.ceil(wait)))
