"""The retry policy's counters, as /metrics shows them."""

from __future__ import annotations

import pytest

from workers.errors import RetryableError
from workers.retry import EXHAUSTED, RETRIES, RetriesExhausted, RetryPolicy, retry_async


async def _no_sleep(_: float) -> None:
    return None


async def test_retries_and_exhaustion_are_counted() -> None:
    retries, exhausted = RETRIES._value.get(), EXHAUSTED._value.get()

    async def always_fails(attempt: int) -> None:
        raise RetryableError("down")

    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    with pytest.raises(RetriesExhausted):
        await retry_async(always_fails, policy, what="test", sleep=_no_sleep)
    assert RETRIES._value.get() - retries == 2
    assert EXHAUSTED._value.get() - exhausted == 1
