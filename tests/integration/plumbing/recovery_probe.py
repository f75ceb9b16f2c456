"""The smoke test's counting worker, whose next table recovery can be made to receive nothing.

Run as ``python -m tests.integration.plumbing.recovery_probe APP_ID SOURCE SINK [lose]``: the
worker of ``tests/integration/plumbing/faust_probe.py`` on one partition (a count per key in a
changelog-backed table, each new count sent to SINK), with the project's recovery watch beside it
on a short stall time. With ``lose``, right after the recovery has sought its changelog
partitions, faust's read offset of each is moved far ahead: faust's drain loop then drops every
changelog record, and the recovery waits for records that never come (the hang
``workers/plumbing/recovery_watch.py`` describes).
"""

from __future__ import annotations

import sys
from typing import Any

import faust

from tests.integration.plumbing.faust_probe import build
from workers.plumbing.recovery_watch import RecoveryWatchService

STALL_AFTER_S = 6.0


def lose_changelog_records(app: faust.App) -> None:
    """After the recovery seeks its active changelog partitions, leave faust's read offset past
    every record in them (once is enough: the recovery never ends on its own)."""
    recovery = app.tables.recovery
    seek_offsets = recovery._seek_offsets

    async def seek_then_lose(consumer: Any, tps: Any, offsets: Any, title: str) -> None:
        await seek_offsets(consumer, tps, offsets, title)
        if title == "active":
            for tp in tps:
                app.consumer._read_offset[tp] = 10**9

    recovery._seek_offsets = seek_then_lose


if __name__ == "__main__":
    app_id, source, sink = sys.argv[1:4]
    app = build(app_id, source, sink, partitions=1)
    if sys.argv[4:5] == ["lose"]:
        lose_changelog_records(app)
    watch = RecoveryWatchService(app, stall_after_s=STALL_AFTER_S)
    faust.Worker(app, watch, loglevel="info").execute_from_commandline()
