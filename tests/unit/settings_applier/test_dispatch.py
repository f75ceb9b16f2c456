"""Per-app order, concurrency across apps, bounded pending, and acks strictly in offset order."""

from __future__ import annotations

import asyncio

from workers.settings_applier.dispatch import Dispatcher, Job


class Recorder:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.started: list[int] = []
        self.running = 0
        self.peak = 0
        self.gates: dict[int, asyncio.Event] = {}
        self.fatal: list[BaseException] = []

    def job(self, offset: int, app: str, tp: str = "p0") -> Job:
        async def ack() -> None:
            self.acked.append(offset)

        return Job(tp=tp, offset=offset, chains=(f"app:{app}",), payload=offset, ack=ack)

    async def handler(self, job: Job) -> None:
        self.started.append(job.offset)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            gate = self.gates.get(job.offset)
            if gate is not None:
                await gate.wait()
            else:
                await asyncio.sleep(0.01)
            if job.payload == "boom":
                raise RuntimeError("kafka is gone")
        finally:
            self.running -= 1

    async def on_fatal(self, exc: BaseException) -> None:
        self.fatal.append(exc)


async def test_one_app_in_order_others_concurrently() -> None:
    rec = Recorder()
    dispatcher = Dispatcher(rec.handler, max_pending=100, on_fatal=rec.on_fatal)
    for offset in range(30):
        await dispatcher.submit(rec.job(offset, app=f"a{offset % 3}"))
    await dispatcher.drain()
    for app in range(3):
        mine = [o for o in rec.started if o % 3 == app]
        assert mine == sorted(mine)
    assert rec.peak == 3  # three apps at once, never two commands of one app
    assert rec.acked == list(range(30))


async def test_a_slow_app_does_not_stall_others_but_holds_the_commit_point() -> None:
    rec = Recorder()
    rec.gates[0] = asyncio.Event()  # offset 0 (app "slow") hangs
    dispatcher = Dispatcher(rec.handler, max_pending=100, on_fatal=rec.on_fatal)
    await dispatcher.submit(rec.job(0, app="slow"))
    for offset in range(1, 10):
        await dispatcher.submit(rec.job(offset, app=f"fast{offset}"))
    await asyncio.sleep(0.1)
    assert set(rec.started) == set(range(10))  # the others ran
    assert rec.acked == []  # but nothing is acked past the unfinished offset 0
    assert dispatcher.held == 10
    rec.gates[0].set()
    await dispatcher.drain()
    assert rec.acked == list(range(10))


async def test_partitions_ack_independently() -> None:
    rec = Recorder()
    rec.gates[0] = asyncio.Event()
    dispatcher = Dispatcher(rec.handler, max_pending=100, on_fatal=rec.on_fatal)
    await dispatcher.submit(rec.job(0, app="x", tp="p0"))
    await dispatcher.submit(rec.job(1, app="y", tp="p1"))
    await asyncio.sleep(0.05)
    assert rec.acked == [1]
    rec.gates[0].set()
    await dispatcher.drain()
    assert rec.acked == [1, 0]


async def test_submit_blocks_at_max_pending() -> None:
    rec = Recorder()
    rec.gates[0] = asyncio.Event()
    dispatcher = Dispatcher(rec.handler, max_pending=2, on_fatal=rec.on_fatal)
    await dispatcher.submit(rec.job(0, app="a"))
    await dispatcher.submit(rec.job(1, app="b"))
    third = asyncio.create_task(dispatcher.submit(rec.job(2, app="c")))
    await asyncio.sleep(0.05)
    assert not third.done()
    rec.gates[0].set()
    await asyncio.wait_for(third, 1)
    await dispatcher.drain()
    assert rec.acked == [0, 1, 2]


async def test_a_fatal_failure_acks_nothing_after_it() -> None:
    rec = Recorder()
    dispatcher = Dispatcher(rec.handler, max_pending=10, on_fatal=rec.on_fatal)
    boom = rec.job(1, app="a")
    boom.payload = "boom"
    await dispatcher.submit(rec.job(0, app="a"))
    await dispatcher.submit(boom)
    await dispatcher.submit(rec.job(2, app="a"))
    await dispatcher.drain()
    assert rec.acked == [0]
    assert len(rec.fatal) == 1
    assert 2 not in rec.started  # the app's next command does not run after a fatal failure
