"""The one retry policy: capped exponential backoff with full jitter, bounded attempts, logged.

Only :class:`~workers.errors.RetryableError` is retried; a server's ``Retry-After`` hint wins
over the computed delay (capped too, so a hostile hint cannot park a worker for hours).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import Counter

from workers.errors import RetryableError

__all__ = ["RetryPolicy", "RetriesExhausted", "retry_async"]

log = logging.getLogger(__name__)

# Process-wide counts for /metrics (each process is one worker, so the scrape target says which);
# no label: ``what`` names calls and URLs, which must never become label values.
RETRIES = Counter("exopipe_retries", "Retryable failures that were retried.")
EXHAUSTED = Counter("exopipe_retries_exhausted", "Operations that ran out of attempts.")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None, *, rng: random.Random) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(0, ceiling)


class RetriesExhausted(Exception):
    """Every attempt failed with a retryable error; ``last`` is the final one."""

    def __init__(self, attempts: int, last: RetryableError) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.attempts = attempts
        self.last = last


async def retry_async(
    operation: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation(attempt)`` until it succeeds, raises a non-retryable error, or runs out.

    ``PermanentError`` and any other exception propagate at once.
    """
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    attempt = 1
    while True:
        try:
            return await operation(attempt)
        except RetryableError as exc:
            if attempt >= policy.max_attempts:
                EXHAUSTED.inc()
                raise RetriesExhausted(attempt, exc) from exc
            RETRIES.inc()
            wait = policy.delay(attempt, exc.retry_after, rng=rng)
            log.warning(
                "%s failed (attempt %d, %d retries remaining), retrying in %.2fs: %s",
                what,
                attempt,
                policy.max_attempts - attempt,
                wait,
                exc,
            )
            await sleep(wait)
            attempt += 1
