"""The recovery watch: a table recovery that stopped receiving changelog records is sought again,
and stops the worker when seeking does not help. The faust side is a fake here;
``tests/integration/plumbing/test_recovery_watch_kafka.py`` runs a real one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest

from workers.plumbing.recovery_watch import (
    SEEKS_BEFORE_STOP,
    STALL_AFTER_S,
    RecoveryStalled,
    RecoveryWatch,
)


class TP(NamedTuple):
    topic: str
    partition: int


LEDGER = TP("ledger-changelog", 0)
APPS = TP("apps-changelog", 1)


@dataclass
class FakeRecovery:
    running: bool = True
    read: dict[Any, int] = field(default_factory=dict)  # tp -> offset read, records left
    seeks: list[dict[Any, int]] = field(default_factory=list)

    def recovering(self) -> bool:
        return self.running

    def remaining(self) -> dict[Any, int]:
        return dict(self.read)

    async def seek(self, offsets: dict[Any, int]) -> None:
        self.seeks.append(dict(offsets))


async def test_a_partition_that_reads_nothing_for_the_stall_time_is_sought_again() -> None:
    recovery = FakeRecovery(read={LEDGER: 41, APPS: -1})
    watch = RecoveryWatch(recovery)
    assert await watch.check(0.0) == []
    recovery.read[APPS] = 7  # moving: never sought
    assert await watch.check(STALL_AFTER_S - 1) == []
    assert await watch.check(STALL_AFTER_S) == [LEDGER]
    assert recovery.seeks == [{LEDGER: 41}]
    recovery.read[APPS] = 12
    assert await watch.check(STALL_AFTER_S + 1) == []  # the ledger gets its time again


async def test_nothing_read_yet_is_sought_from_the_start() -> None:
    recovery = FakeRecovery(read={APPS: -1})
    watch = RecoveryWatch(recovery)
    await watch.check(0.0)
    assert await watch.check(STALL_AFTER_S) == [APPS]
    assert recovery.seeks == [{APPS: 0}]


async def test_no_recovery_or_nothing_left_means_no_seek() -> None:
    recovery = FakeRecovery(running=False, read={LEDGER: 3})
    watch = RecoveryWatch(recovery)
    assert await watch.check(0.0) == []
    assert await watch.check(10 * STALL_AFTER_S) == []
    recovery.running, recovery.read = True, {}
    assert await watch.check(20 * STALL_AFTER_S) == []
    assert recovery.seeks == []


async def test_a_new_recovery_starts_the_clock_again() -> None:
    recovery = FakeRecovery(read={LEDGER: 3})
    watch = RecoveryWatch(recovery)
    await watch.check(0.0)
    recovery.running = False  # that recovery ended; the next one starts at the same offset
    await watch.check(STALL_AFTER_S / 2)
    recovery.running = True
    await watch.check(STALL_AFTER_S)
    assert await watch.check(STALL_AFTER_S * 1.5) == []
    assert recovery.seeks == []


async def test_seeks_that_bring_nothing_stop_the_worker() -> None:
    stopped: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        stopped.append(exc)

    recovery = FakeRecovery(read={LEDGER: 5})
    watch = RecoveryWatch(recovery, on_fatal=crash)
    now = 0.0
    await watch.check(now)
    for _ in range(SEEKS_BEFORE_STOP):
        now += STALL_AFTER_S
        assert await watch.check(now) == [LEDGER]
    with pytest.raises(RecoveryStalled):
        await watch.check(now + STALL_AFTER_S)
    assert len(stopped) == 1
    assert len(recovery.seeks) == SEEKS_BEFORE_STOP


async def test_progress_after_a_seek_resets_the_count() -> None:
    recovery = FakeRecovery(read={LEDGER: 5})
    watch = RecoveryWatch(recovery)
    now = 0.0
    await watch.check(now)
    for _ in range(SEEKS_BEFORE_STOP + 2):
        now += STALL_AFTER_S
        assert await watch.check(now) == [LEDGER]
        recovery.read[LEDGER] += 1  # the seek helped, then it stalled again
        await watch.check(now)
    assert len(recovery.seeks) == SEEKS_BEFORE_STOP + 2
