"""The per-tenant token bucket and the body reader's two ways (body already here, or not yet)."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request

from workers.ingress.limits import BodySlow, BodyTooLarge, RateLimiter, read_body


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


def _request(chunks: list[bytes], eof: bool):
    """A POST whose body stream holds ``chunks`` (and has ended when ``eof``)."""
    loop = asyncio.get_running_loop()
    payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
    for chunk in chunks:
        payload.feed_data(chunk)
    if eof:
        payload.feed_eof()
    return make_mocked_request("POST", "/v1/c/a/popup", payload=payload)


async def test_a_body_already_received_is_taken_whole():
    assert await read_body(_request([b"ab", b"cd"], eof=True), 4, 1.0) == b"abcd"
    assert await read_body(_request([], eof=True), 4, 1.0) == b""


async def test_a_body_already_received_over_the_limit_is_refused():
    with pytest.raises(BodyTooLarge) as caught:
        await read_body(_request([b"ab", b"cde"], eof=True), 4, 1.0)
    assert (caught.value.head, caught.value.size, caught.value.limit) == (b"abcd", 5, 4)


async def test_a_body_still_arriving_times_out():
    with pytest.raises(BodySlow) as caught:
        await read_body(_request([b"ab"], eof=False), 4, 0.05)
    assert (caught.value.head, caught.value.size) == (b"ab", 2)
