"""The produce bound: one timer for every wait, each answered at its own deadline or earlier."""

from __future__ import annotations

import asyncio

import pytest

from workers.ingress.bound import Bound


async def test_returns_as_soon_as_the_send_is_done():
    loop = asyncio.get_running_loop()
    bound = Bound(5.0)
    send = loop.create_future()
    loop.call_later(0.01, send.set_result, "ack")
    started = loop.time()
    await bound.wait(send)
    assert send.done() and loop.time() - started < 1.0
    await bound.wait(send)  # already done: returns at once


async def test_returns_at_the_deadline_and_leaves_the_send_alone():
    loop = asyncio.get_running_loop()
    bound = Bound(0.05)
    send = loop.create_future()
    started = loop.time()
    await bound.wait(send)
    assert 0.05 <= loop.time() - started < 0.5
    assert not send.done()  # still the producer's: it may yet be acknowledged
    send.set_result("late ack")
    bound.close()


async def test_each_wait_gets_its_own_deadline_from_one_timer():
    loop = asyncio.get_running_loop()
    bound = Bound(0.1)
    sends = [loop.create_future() for _ in range(3)]
    woken: dict[int, float] = {}

    async def waiter(n: int) -> None:
        await bound.wait(sends[n])
        woken[n] = loop.time()

    started = loop.time()
    first = asyncio.create_task(waiter(0))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(waiter(1))
    third = asyncio.create_task(waiter(2))
    await asyncio.sleep(0)
    sends[2].set_result("ack")  # done early: wakes at once, not at its deadline
    await asyncio.gather(first, second, third)
    assert woken[2] - started < 0.1
    assert 0.1 <= woken[0] - started < woken[1] - started
    assert 0.15 <= woken[1] - started < 0.6
    assert not sends[0].done() and not sends[1].done()
    bound.close()


async def test_a_cancelled_caller_does_not_cancel_the_send():
    loop = asyncio.get_running_loop()
    bound = Bound(5.0)
    send = loop.create_future()
    task = asyncio.create_task(bound.wait(send))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not send.cancelled()
    send.set_result("ack")
    # The next wait drops the settled entry and still works.
    other = loop.create_future()
    loop.call_later(0.01, other.set_result, "ack")
    await bound.wait(other)
    assert len(bound._waiting) <= 1
    bound.close()


async def test_close_wakes_whoever_still_waits():
    loop = asyncio.get_running_loop()
    bound = Bound(60.0)
    send = loop.create_future()
    task = asyncio.create_task(bound.wait(send))
    await asyncio.sleep(0.01)
    bound.close()
    await asyncio.wait_for(task, 1.0)
    assert not send.done()
