"""A record that meets faust's not-yet-refreshed metadata at a first start waits and is handled;
it is never rejected for it. If the tables never become ready, the error goes up (the worker
stops unacked) instead of the record being dropped."""

from __future__ import annotations

import pytest
from faust.exceptions import PartitionsMismatch

from workers.enricher.agents import Position
from workers.enricher.app import TABLES_READY_WAITS_S, handle_when_tables_ready

WHERE = Position("exotel.webhook.missed_call", 2, 40)


class Handler:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[bytes | None, Position]] = []

    async def __call__(self, value: bytes | None, where: Position) -> None:
        self.calls.append((value, where))
        if len(self.calls) <= self.failures:
            raise PartitionsMismatch("changelog topic x-handled-changelog has 0 partitions")


async def test_the_record_is_handled_once_the_tables_are_ready() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    handler = Handler(failures=2)
    await handle_when_tables_ready(handler, b"{}", WHERE, sleep=sleep)
    assert handler.calls == [(b"{}", WHERE)] * 3
    assert waits == list(TABLES_READY_WAITS_S[:2])


async def test_tables_that_never_become_ready_stop_the_worker() -> None:
    async def sleep(seconds: float) -> None:
        return None

    handler = Handler(failures=100)
    with pytest.raises(PartitionsMismatch):
        await handle_when_tables_ready(handler, b"{}", WHERE, sleep=sleep)
    assert len(handler.calls) == len(TABLES_READY_WAITS_S) + 1
