"""The faust agent: recording_ready events in, one outcome record each, offsets in order.

One agent instance (``concurrency=1``: faust's own concurrency can commit past in-flight events,
faust-streaming #606) reads with manual acks (``stream.noack()``) and runs up to
``EXOPIPE_RECORDING_CONCURRENCY`` archive tasks at once; reading blocks while every slot is busy,
which bounds memory and disk. An event is acked only after its outcome record is on Kafka, and
:class:`~workers.plumbing.ordered_acks.OrderedAcks` releases acks in offset order, so the
committed offset never passes an event whose object does not exist yet or whose failure is not
recorded.

If an outcome cannot be produced, the worker crashes instead of acking (the event is redelivered
on restart): an exception must never silently ack a message here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import faust

from workers.archiver.archive import Archiver
from workers.archiver.outcomes import Outcome
from workers.plumbing.offset_guard import ContinuityGuard, guarded_events
from workers.plumbing.ordered_acks import OrderedAcks

__all__ = ["register_archive_agent"]

log = logging.getLogger(__name__)


def register_archive_agent(
    app: faust.App,
    source: Any,
    outputs: dict[str, Any],
    *,
    concurrency: int,
    make_archiver: Callable[[], Any],
    make_guard: Callable[[], AbstractAsyncContextManager[ContinuityGuard]],
    ready: asyncio.Event | None = None,
) -> Any:
    """Declare the agent; ``make_archiver`` is an async context manager yielding an Archiver.

    ``make_guard`` opens the :class:`~workers.plumbing.offset_guard.ContinuityGuard` that keeps
    records faust dropped at a rebalance from being committed past.
    """

    async def publish(outcome: Outcome) -> None:
        topic = outputs[outcome.spec.name]
        delivery = await topic.send(key=outcome.key.encode(), value=outcome.event.to_bytes())
        await delivery  # acks=all: on every in-sync replica before the input is acked

    @app.agent(source, concurrency=1, name="archive-recordings")
    async def archive_recordings(stream: faust.Stream) -> None:
        manual = stream.noack()
        acks: OrderedAcks[Any] = OrderedAcks(manual.ack)
        slots = asyncio.Semaphore(concurrency)
        running: set[asyncio.Task[None]] = set()

        async def process(archiver: Archiver, event: Any) -> None:
            try:
                outcome = await archiver.handle(event.value)
                await publish(outcome)
                log.info(
                    "%s %s (partition %s offset %s)",
                    outcome.kind,
                    outcome.key,
                    event.message.partition,
                    event.message.offset,
                )
                await acks.done(event.message.tp, event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception(
                    "archiving partition %s offset %s failed unexpectedly; stopping unacked",
                    event.message.partition,
                    event.message.offset,
                )
                await app.crash(exc)
            finally:
                slots.release()

        async with make_guard() as guard, make_archiver() as archiver:
            try:
                async for event in guarded_events(manual, guard):
                    if ready is not None and not ready.is_set():
                        await ready.wait()  # once, at start: know which apps are switched off
                    await slots.acquire()
                    acks.start(event.message.tp, event)
                    task = asyncio.create_task(process(archiver, event))
                    running.add(task)
                    task.add_done_callback(running.discard)
            finally:
                # Stopping: in-flight archives are cancelled (their uploads abort) and stay
                # unacked, so they are redelivered to whichever worker owns them next.
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)

    return archive_recordings
