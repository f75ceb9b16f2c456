"""Get a table recovery that has stopped receiving changelog records going again.

Why: a worker's tables are rebuilt from their changelogs after every rebalance, and nothing is
processed until that recovery ends. Once in 11 runs of the settings network-fault test, after
the worker rejoined its group, the recovery waited for changelog records that never came ("No
event received for active tp ... since recovery start"), and the worker, up and healthy, did
nothing more. faust's own log then says so every 5 s, forever. The likely cause is the one the
continuity guard works around for input records: faust's drain loop drops fetched records whose
offset is below its read offset for the partition, and that read offset can be left past where
the recovery reads from (robinhood/faust #542 fixed one case of it, a seek to offset 0; recovery
hangs of the same look: faust-streaming #74).

What the watch does: every ``CHECK_EVERY_S`` during a recovery it notes, per active changelog
partition with records left to read, the offset read so far. A partition whose offset has not
moved for ``STALL_AFTER_S`` is sought again to that offset through faust's consumer, as the
recovery itself does when it starts (which also resets faust's read offset). A partition sought
``SEEKS_BEFORE_STOP`` times in a row without progress stops the worker: restarted, it recovers
from scratch, which beats waiting forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from mode import Service
from prometheus_client import Counter

__all__ = ["FaustRecovery", "RecoveryStalled", "RecoveryWatch", "RecoveryWatchService"]

log = logging.getLogger(__name__)

RECOVERY_SEEKS = Counter(
    "exopipe_worker_recovery_partitions_sought",
    "Changelog partitions whose table recovery had stopped receiving records, sought again.",
)
CHECK_EVERY_S = 5.0
# faust's own warning comes after 30 s without a record; a broker that answers sends records
# within a fetch wait (half a second), so 30 s without progress is no slowness.
STALL_AFTER_S = 30.0
SEEKS_BEFORE_STOP = 3


class RecoveryStalled(RuntimeError):
    """A recovery made no progress even after being sought again: restart the worker."""


class RecoveryView(Protocol):
    """What the watch needs to know of a faust app's table recovery."""

    def recovering(self) -> bool:
        """Whether a table recovery is running."""
        ...

    def remaining(self) -> dict[Any, int]:
        """Active changelog partitions with records left to read -> the offset read so far."""
        ...

    async def seek(self, offsets: dict[Any, int]) -> None:
        """Fetch these partitions again from these offsets."""
        ...


class RecoveryWatch:
    """``await watch.check(now)`` every few seconds: seeks what has stalled, returns it."""

    def __init__(
        self,
        recovery: RecoveryView,
        on_fatal: Callable[[BaseException], Awaitable[Any]] | None = None,
        stall_after_s: float = STALL_AFTER_S,
    ) -> None:
        self._recovery = recovery
        self._on_fatal = on_fatal
        self._stall_after_s = stall_after_s
        self._since: dict[Any, tuple[int, float]] = {}  # tp -> (offset, when first seen there)
        self._seeks: dict[Any, int] = {}  # tp -> seeks in a row that brought nothing
        self.sought = 0

    async def check(self, now: float) -> list[Any]:
        if not self._recovery.recovering():
            self._since.clear()
            self._seeks.clear()
            return []
        remaining = self._recovery.remaining()
        for tp in set(self._since) - set(remaining):
            del self._since[tp]
            self._seeks.pop(tp, None)
        stalled: dict[Any, int] = {}
        for tp, offset in remaining.items():
            seen = self._since.get(tp)
            if seen is None or seen[0] != offset:
                if seen is not None:
                    self._seeks.pop(tp, None)  # it moved on
                self._since[tp] = (offset, now)
            elif now - seen[1] >= self._stall_after_s:
                stalled[tp] = max(offset, 0)
        if not stalled:
            return []
        for tp in stalled:
            self._seeks[tp] = self._seeks.get(tp, 0) + 1
            if self._seeks[tp] > SEEKS_BEFORE_STOP:
                exc = RecoveryStalled(
                    f"table recovery of {tp} has read nothing past offset {stalled[tp]} after "
                    f"{SEEKS_BEFORE_STOP} seeks; stopping so that a restart recovers afresh"
                )
                log.error("%s", exc)
                if self._on_fatal is not None:
                    await self._on_fatal(exc)
                raise exc
        log.warning(
            "table recovery has read nothing for %.0f s from %s; seeking them again",
            self._stall_after_s,
            ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in stalled.items()),
        )
        await self._recovery.seek(stalled)
        for tp, offset in stalled.items():
            self._since[tp] = (offset, now)
        self.sought += len(stalled)
        RECOVERY_SEEKS.inc(len(stalled))
        return list(stalled)


class FaustRecovery:
    """:class:`RecoveryView` of a faust app (public attributes of its ``Recovery`` service)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def recovering(self) -> bool:
        return bool(self._app.in_recovery)

    def remaining(self) -> dict[Any, int]:
        recovery = self._app.tables.recovery
        offsets = recovery.active_offsets
        return {
            tp: offsets[tp]
            for tp, highwater in list(recovery.active_highwaters.items())
            if highwater is not None and offsets[tp] is not None and highwater > offsets[tp]
        }

    async def seek(self, offsets: dict[Any, int]) -> None:
        await self._app.consumer.seek_wait(offsets)


class RecoveryWatchService(Service):
    """Runs a :class:`RecoveryWatch` beside a faust app, as a service of its ``Worker``."""

    def __init__(self, app: Any, stall_after_s: float = STALL_AFTER_S, **kwargs: Any) -> None:
        self.watch = RecoveryWatch(FaustRecovery(app), app.crash, stall_after_s)
        super().__init__(**kwargs)

    @Service.task
    async def _watch(self) -> None:
        while not self.should_stop:
            await self.sleep(CHECK_EVERY_S)
            try:
                await self.watch.check(time.monotonic())
            except RecoveryStalled:
                return  # the worker is stopping
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. a rebalance under way: look again later
                log.warning("recovery watch: check failed: %r", exc)
