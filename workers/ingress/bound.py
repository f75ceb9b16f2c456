"""The produce bound: wait for a send until it is done or its time is up, one timer for all.

``asyncio.wait(..., timeout=)`` arms a timer per call and cancels it again: a tenth of the
ingress's time went there under load. Every wait here has the same length, so deadlines come in
arrival order: a queue of waiters and one timer, set for the oldest deadline still pending,
serve them all. Waiting never cancels the send, also when the waiting caller is cancelled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import Any

__all__ = ["Bound"]


class Bound:
    """Waits of ``seconds`` each, for one event loop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._waiting: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def wait(self, future: asyncio.Future[Any]) -> None:
        """Return once ``future`` is done or ``seconds`` have passed, whichever comes first."""
        if future.done():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(partial(_wake, waiter))
        waiting = self._waiting
        while waiting and waiting[0][1].done():
            waiting.popleft()  # settled before their deadline: the queue keeps the pending ones
        deadline = loop.time() + self.seconds
        waiting.append((deadline, waiter))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire, loop)
        await waiter

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, waiter in self._waiting:
            _wake(waiter)
        self._waiting.clear()

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        waiting = self._waiting
        while waiting:
            deadline, waiter = waiting[0]
            if not waiter.done():
                if deadline > now:
                    break
                waiter.set_result(None)
            waiting.popleft()
        if waiting:
            self._timer = loop.call_at(waiting[0][0], self._expire, loop)


def _wake(waiter: asyncio.Future[None], _: object = None) -> None:
    if not waiter.done():
        waiter.set_result(None)
