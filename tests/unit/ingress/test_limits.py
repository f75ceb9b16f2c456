"""The per-tenant token bucket."""

from __future__ import annotations

from workers.ingress.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_per_tenant():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("c1") for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("c1")
    assert wait is not None and abs(wait - 0.5) < 1e-9
    assert limiter.acquire("c2") is None  # another tenant has its own bucket
    clock.now += 0.5
    assert limiter.acquire("c1") is None
    assert limiter.acquire("c1") is not None


def test_retry_after_rounds_up_to_whole_seconds():
    assert RateLimiter.retry_after_header(0.01) == "1"
    assert RateLimiter.retry_after_header(1.2) == "2"


def test_zero_rate_disables():
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.acquire("c1") is None for _ in range(1000))
