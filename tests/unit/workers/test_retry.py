from __future__ import annotations

import random

import pytest

from workers.errors import PermanentError, RetryableError
from workers.retry import RetriesExhausted, RetryPolicy, retry_async


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def test_retries_until_success_with_capped_backoff() -> None:
    recorder = Recorder()
    calls: list[int] = []

    async def flaky(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 4:
            raise RetryableError("503")
        return "ok"

    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=2.5)
    result = await retry_async(
        flaky, policy, what="test", rng=random.Random(7), sleep=recorder.sleep
    )
    assert result == "ok"
    assert calls == [1, 2, 3, 4]
    ceilings = [1.0, 2.0, 2.5]
    assert all(0 <= s <= c for s, c in zip(recorder.sleeps, ceilings, strict=True))


async def test_retry_after_wins_but_is_capped() -> None:
    recorder = Recorder()
    hints = iter([3.0, 500.0])

    async def limited(attempt: int) -> int:
        if attempt < 3:
            raise RetryableError("429", retry_after=next(hints))
        return attempt

    policy = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=60)
    assert await retry_async(limited, policy, what="t", sleep=recorder.sleep) == 3
    assert recorder.sleeps == [3.0, 60]


async def test_gives_up_after_max_attempts() -> None:
    recorder = Recorder()

    async def down(attempt: int) -> None:
        raise RetryableError(f"down {attempt}")

    with pytest.raises(RetriesExhausted) as caught:
        await retry_async(down, RetryPolicy(max_attempts=3), what="t", sleep=recorder.sleep)
    assert caught.value.attempts == 3
    assert "down 3" in str(caught.value.last)
    assert len(recorder.sleeps) == 2


async def test_permanent_errors_are_not_retried() -> None:
    recorder = Recorder()
    calls = 0

    async def bad(attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("400")

    with pytest.raises(PermanentError):
        await retry_async(bad, RetryPolicy(), what="t", sleep=recorder.sleep)
    assert calls == 1 and recorder.sleeps == []
