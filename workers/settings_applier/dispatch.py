"""Run commands concurrently across apps, in order within an app, and ack in offset order.

Three rules, each for a reason:

* **Per-app order.** Commands are chained by their app key (``customer_id/app_id``): a command
  starts only when the previous one for the same app has finished. A command's de-duplication
  key (its ``command_id``) is chained too, so a re-sent copy waits for the original's outcome.
* **Bounded.** At most ``max_pending`` commands are held (running or waiting behind their app);
  :meth:`Dispatcher.submit` blocks when that many are held, which stops the agent reading. API
  concurrency is bounded separately (the applier's slots), so one slow or failing app holds one
  slot and the rest of its partition keeps moving.
* **Acks in offset order.** faust commits the highest run of consecutive acked offsets, but its
  gap check is off by one and absent before a partition's first commit (faust-streaming #606);
  acks are therefore released strictly in offset order per partition
  (:class:`~workers.plumbing.ordered_acks.OrderedAcks`), so the committed offset can never pass a
  command whose final result is not on Kafka yet.

This module knows nothing of faust, Kafka or HTTP: it takes callables, so it is unit-tested alone.
It must never ack a command before its handler returned, and never ack one whose handler raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from workers.plumbing.ordered_acks import OrderedAcks

__all__ = ["Dispatcher", "Job"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One command to run: where it came from, what it is chained on, and how to ack it."""

    tp: Hashable
    offset: int
    chains: tuple[str, ...]
    payload: Any
    ack: Callable[[], Awaitable[Any]]


class Dispatcher:
    """Schedules :class:`Job` s; ``handler(job)`` does the work, ``on_fatal`` hears failures."""

    def __init__(
        self,
        handler: Callable[[Job], Awaitable[None]],
        *,
        max_pending: int,
        on_fatal: Callable[[BaseException], Awaitable[None]],
    ) -> None:
        self._handler = handler
        self._on_fatal = on_fatal
        self._pending = asyncio.Semaphore(max_pending)
        self._acks: OrderedAcks[Job] = OrderedAcks(self._ack)
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failed = False

    @property
    def held(self) -> int:
        """Jobs submitted and not yet acked (running, waiting, or done behind an earlier one)."""
        return self._acks.in_flight()

    async def submit(self, job: Job) -> None:
        """Start ``job`` once a pending slot is free (blocks the caller until then)."""
        await self._pending.acquire()
        self._acks.start(job.tp, job)
        before = [self._tails[key] for key in job.chains if key in self._tails]
        task = asyncio.create_task(self._run(job, before))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        for key in job.chains:
            self._tails[key] = task
        task.add_done_callback(lambda t, keys=job.chains: self._forget(keys, t))

    async def _run(self, job: Job, before: list[asyncio.Task[None]]) -> None:
        if before:
            # Wait for the earlier commands of this app, whatever became of them.
            await asyncio.wait(before)
        if self._failed:
            # Something before failed fatally: the worker is going down; leave this unacked.
            return
        try:
            await self._handler(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed = True
            log.exception(
                "command at %s offset %s could not be finished; stopping without acking it",
                job.tp,
                job.offset,
            )
            await self._on_fatal(exc)
            return
        await self._acks.done(job.tp, job)  # acks the finished prefix of its partition

    async def _ack(self, job: Job) -> None:
        await job.ack()
        self._pending.release()

    def _forget(self, keys: tuple[str, ...], task: asyncio.Task[None]) -> None:
        for key in keys:
            if self._tails.get(key) is task:
                del self._tails[key]

    async def drain(self) -> None:
        """Wait for every submitted job to finish (used by tests and benchmarks)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def cancel(self) -> None:
        """Stop running jobs; their commands stay unacked and are redelivered later."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
