"""The faust agent and timers of the settings worker.

One agent instance (``concurrency=1``: faust's own agent concurrency can commit past in-flight
events, faust-streaming #606) reads with manual acks (``stream.noack()``) and hands every record
to the :class:`~workers.settings_applier.dispatch.Dispatcher`, which runs commands of different
apps concurrently and acks in offset order once a command's final result is on Kafka.

If a command cannot be finished (Kafka refuses the ledger write or the result after retries, or
a bug), the worker crashes instead of acking, and the command is redelivered on restart: an
exception must never silently ack a message here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import faust

from workers.plumbing.offset_guard import ContinuityGuard, guarded_events
from workers.settings_applier.dispatch import Dispatcher, Job
from workers.settings_applier.processor import CommandProcessor, Parsed

__all__ = ["register_agent"]

log = logging.getLogger(__name__)


def register_agent(
    app: faust.App,
    source: Any,
    *,
    max_pending: int,
    make_processor: Callable[[], AbstractAsyncContextManager[CommandProcessor]],
    make_guard: Callable[[], AbstractAsyncContextManager[ContinuityGuard]],
) -> Any:
    """Declare the agent; ``make_processor`` opens the clients for as long as the agent runs.

    ``make_guard`` opens the :class:`~workers.plumbing.offset_guard.ContinuityGuard` that keeps
    records faust dropped at a rebalance from being committed past.
    """

    @app.agent(source, concurrency=1, name="apply-settings-commands")
    async def apply_settings_commands(stream: faust.Stream) -> None:
        manual = stream.noack()
        async with make_guard() as guard, make_processor() as processor:

            async def run(job: Job) -> None:
                await processor.handle(job.payload)

            dispatcher = Dispatcher(run, max_pending=max_pending, on_fatal=app.crash)
            try:
                async for event in guarded_events(manual, guard):
                    message = event.message
                    parsed: Parsed = processor.parse(
                        message.key, message.value, message.partition, message.offset
                    )
                    await dispatcher.submit(
                        Job(
                            tp=message.tp,
                            offset=message.offset,
                            chains=parsed.chains,
                            payload=parsed,
                            ack=_acker(manual, event),
                        )
                    )
            finally:
                # Stopping: running commands are cancelled and stay unacked; whoever owns their
                # partition next redelivers them, and the ledger keeps them from running twice.
                await dispatcher.cancel()

    return apply_settings_commands


def _acker(stream: Any, event: Any) -> Callable[[], Any]:
    async def ack() -> None:
        await stream.ack(event)

    return ack
