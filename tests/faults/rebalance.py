"""Shared steps of the rebalance fault tests: a steady load, a second worker that joins during
it and then leaves (SIGTERM), and a precise account of any input record without its effect.

A lost record is reported with where it was written (partition and offset), the consumer
group's committed offset of that partition at the end, and what the workers' logs say about
it, so a failure says which handover lost what.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from tests.integration.kafka_io import collect
from topics.catalog import CALL_PARTITIONS, TopicSpec
from topics.events import CloudEvent
from workers.config import Settings
from workers.kafka import admin_client, new_reader

__all__ = [
    "ASSIGNED",
    "Joiner",
    "Load",
    "committed_offsets",
    "drain",
    "lost_report",
    "positions",
    "wait_for_text",
]

# faust's consumer logs this line when a rebalance hands it partitions.
ASSIGNED = "Setting newly assigned partitions"
# Log lines worth showing with any loss: faust's table recovery waiting for changelog records
# that never come, a crashed agent, a rebalance waiting for a record nobody will ack, errors.
TROUBLE = ("No event received for active tp", "Crashed", "wait_empty: Waiting", "[ERROR]")


async def wait_for_text(
    log: Callable[[], str],
    text: str,
    *,
    deadline: float,
    count: int = 1,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Wait (without blocking the loop) until ``text`` is in ``log()`` ``count`` times."""
    while log().count(text) < count:
        assert alive(), f"the worker exited while waiting for {text!r}:\n{log()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} in time:\n{log()[-3000:]}"
        await asyncio.sleep(0.2)


@dataclass
class Load:
    """A steady load: ``send_round(i)`` every ``interval`` seconds, on a task of its own.

    It runs until :meth:`finish` is called, then ``tail`` more rounds, and never more than
    ``max_rounds`` in all (the bound). ``where`` maps each record's id to the (partition, offset)
    it was written at; ``send_round`` fills it.
    """

    send_round: Callable[[int], Awaitable[None]]
    interval: float
    tail: int
    max_rounds: int
    where: dict[str, tuple[int, int]] = field(default_factory=dict)
    rounds: int = 0
    _stop_at: int | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self.rounds < self.max_rounds and (
            self._stop_at is None or self.rounds < self._stop_at
        ):
            started = time.monotonic()
            await self.send_round(self.rounds)
            self.rounds += 1
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def finish(self) -> None:
        """Send ``tail`` more rounds, then stop; raise what the load task raised."""
        assert self._task is not None
        self._stop_at = self.rounds + self.tail
        await self._task

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class Joiner:
    """The second worker: a fixture's process object (``start()`` and ``stop()`` block, so they
    run off the loop; ``proc`` is its ``Popen``) and how to read its log."""

    worker: Any
    log: Callable[[], str]

    def alive(self) -> bool:
        proc = self.worker.proc
        return proc is None or proc.poll() is None

    async def join_and_leave(self, load: Load, *, work: Callable[[], Awaitable[None]]) -> None:
        """Join during ``load`` (a rebalance), ``work`` a while, leave by SIGTERM (another one).

        Fails if the load is over before either handover: then the test would not test them.
        """
        await asyncio.to_thread(self.worker.start)
        await wait_for_text(self.log, ASSIGNED, deadline=time.monotonic() + 60, alive=self.alive)
        assert load.running(), f"the load ended before the second worker joined ({load.rounds})"
        await work()
        await asyncio.to_thread(self.worker.stop)
        code = self.worker.proc.returncode
        assert code == 0, f"the second worker exited {code}:\n{self.log()[-3000:]}"
        assert load.running(), f"the load ended before the second worker left ({load.rounds})"


async def drain(
    settings: Settings,
    spec: TopicSpec,
    wanted: set[str],
    ident: Callable[[CloudEvent], str],
    *,
    wait: float,
) -> list[CloudEvent]:
    """Every record of ``spec`` once each id in ``wanted`` has one (or ``wait`` runs out).

    Duplicates count towards a reader's total, so this waits on the distinct ids, then reads
    once more for one record beyond what it has: a late re-sent record shows up there.
    """
    deadline = time.monotonic() + wait
    found = await collect(settings, spec, count=len(wanted), wait_seconds=wait)
    while not wanted <= {ident(e) for _, e in found} and time.monotonic() < deadline:
        found = await collect(settings, spec, count=len(found) + 1, wait_seconds=3)
    found = await collect(settings, spec, count=len(found) + 1, wait_seconds=3)
    return [event for _, event in found]


async def positions(
    settings: Settings, topic: str, ident: Callable[[bytes], str | None]
) -> dict[str, list[tuple[int, int]]]:
    """Where each record of a call-keyed ``topic`` is, by ``ident(value)``, in offset order."""
    reader = new_reader(settings)
    await reader.start()
    found: dict[str, list[tuple[int, int]]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(CALL_PARTITIONS)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        while [tp for tp, end in ends.items() if await reader.position(tp) < end]:
            for tp, records in (await reader.getmany(timeout_ms=1000)).items():
                for record in records:
                    key = ident(record.value)
                    if key is not None:
                        found.setdefault(key, []).append((tp.partition, record.offset))
    finally:
        await reader.stop()
    return found


async def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (absent: nothing committed)."""
    async with admin_client(settings) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def _about(log: str, ids: Iterable[str], places: Iterable[tuple[int, int]]) -> list[str]:
    """The log lines that name a missing id or a neighbour of its place, or show trouble."""
    near = [
        re.compile(rf"partition {p} offset {o}\b") for p, o0 in places for o in (o0 - 1, o0, o0 + 1)
    ]
    wanted = list(ids)
    return [
        line
        for line in log.splitlines()
        if any(t in line for t in TROUBLE)
        or any(i in line for i in wanted)
        or any(r.search(line) for r in near)
    ]


def lost_report(
    missing: Iterable[str],
    where: dict[str, tuple[int, int]],
    committed: dict[int, int],
    logs: dict[str, str],
    *,
    extra: dict[str, str] | None = None,
) -> str:
    """Each missing id with its input partition/offset, the committed offset, and log lines."""
    lost = sorted(missing, key=lambda i: where[i])
    lines = [f"{len(lost)} input records without their effect:"]
    for ident in lost:
        p, o = where[ident]
        note = f"; {extra[ident]}" if extra and ident in extra else ""
        lines.append(
            f"  {ident}: partition {p} offset {o} (group committed {committed.get(p)}){note}"
        )
    places = [where[i] for i in lost]
    for name, log in logs.items():
        about = _about(log, lost, places)
        lines.append(f"-- {name}: {len(about)} lines about them")
        lines.extend(f"   {line[:300]}" for line in about[:40])
    return "\n".join(lines)
