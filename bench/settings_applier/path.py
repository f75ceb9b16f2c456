"""Bench path ``settings_applier``: the settings worker beside plain httpx clients doing the same
PUTs, at 64 and at 16 in flight, against a 100 ms Exotel API.

The subject is ``exopipe worker settings`` (``EXOPIPE_APPLIER_IN_FLIGHT`` = N) applying a burst of
commands, many apps, several commands each, produced up front; a command's latency runs from its
produce to its result read back from Kafka (so it includes its wait in the burst). The baseline,
in the same run against the same double: plain httpx clients doing the same PUTs with N in
flight, in order per app, no Kafka (clients of 8 connections, as the worker's). A fixed bound
(N / 100 ms) moves with the machine; the ratio to the same run's clients does not. Target: the
worker >= 0.9x the clients at each N (row ``settings_applier`` at 64, ``settings_applier_16``).
Full runs also record, once, one httpx client with one pool of 64 connections (``extra``), the
layout the worker used before. Runs alternate (direct, worker, direct, worker ...); medians of 3
(1 small run with ``quick``).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from bench.results import PathResult, median
from bench.settings_applier.bench_throughput import (
    LATENCY_S,
    Double,
    Run,
    Worker,
    double,
    run_direct,
    run_worker,
    warm_up,
    worker,
)

__all__ = ["measure"]

IN_FLIGHT = (64, 16)
TARGET = 0.9  # of the plain httpx clients, same N, same run


async def _measure(quick: bool) -> dict[int, tuple[list[Run], list[Run], Run | None]]:
    runs, apps, per_app = (1, 64, 5) if quick else (3, 200, 15)
    found: dict[int, tuple[list[Run], list[Run], Run | None]] = {}
    with tempfile.TemporaryDirectory(prefix="exopipe-bench-settings-") as tmp:
        work = Path(tmp)
        async with double(apps, work) as dbl, AsyncExitStack() as early:
            # Quick: both workers start at once, so their start-ups overlap (the 16 one waits
            # idle while the 64 one is measured); full runs start each when its turn comes.
            started = {n: await early.enter_async_context(worker(dbl, n, work)) for n in IN_FLIGHT}
            if not quick:
                await early.aclose()
                started = {}
            for in_flight in IN_FLIGHT:
                # At 16 in flight a run is bound by the API's latency: fewer commands per app.
                commands = per_app if in_flight == 64 else max(1, per_app // 4)
                direct: list[Run] = []
                worked: list[Run] = []
                one_pool = None
                async with _own_or(started.get(in_flight), dbl, in_flight, work) as wrk:
                    await warm_up(dbl, wrk)
                    await dbl.ctl.clear_requests()
                    for _ in range(runs):
                        direct.append(await run_direct(dbl, commands, in_flight))
                        worked.append(await run_worker(dbl, wrk, commands))
                        await dbl.ctl.clear_requests()
                    if not quick and in_flight == 64:
                        # For the record: one client, one pool of 64 (what the worker did before).
                        one_pool = await run_direct(dbl, 1, in_flight, in_flight)
                found[in_flight] = (direct, worked, one_pool)
    return found


@asynccontextmanager
async def _own_or(
    running: Worker | None, dbl: Double, in_flight: int, work: Path
) -> AsyncIterator[Worker]:
    """The worker already running for ``in_flight``, or one started (and stopped) here."""
    if running is not None:
        yield running
        return
    async with worker(dbl, in_flight, work) as wrk:
        yield wrk


def _result(
    in_flight: int, direct: list[Run], worked: list[Run], one_pool: Run | None
) -> PathResult:
    bound = in_flight / LATENCY_S
    rate = median([r.rate for r in worked])
    direct_rate = median([r.rate for r in direct])
    return PathResult(
        path="settings_applier" if in_flight == 64 else f"settings_applier_{in_flight}",
        unit="commands/s",
        rate=rate,
        baseline=f"plain httpx clients, same PUTs, {in_flight} in flight",
        baseline_rate=direct_rate,
        p50_ms=median([r.p(50) for r in worked]),
        p99_ms=median([r.p(99) for r in worked]),
        baseline_p50_ms=median([r.p(50) for r in direct]),
        baseline_p99_ms=median([r.p(99) for r in direct]),
        delivered=min(r.delivered for r in worked),
        sent=worked[0].sent,
        target=f">= {TARGET:.1f}x the httpx clients at {in_flight} in flight, same run",
        met=rate >= TARGET * direct_rate and all(r.delivered == r.sent for r in worked),
        runs=len(worked),
        extra={
            "in_flight": in_flight,
            "bound_rate": bound,
            "ratio_vs_bound": rate / bound,
            "worker_runs": [round(r.rate, 1) for r in worked],
            "direct_runs": [round(r.rate, 1) for r in direct],
            "duplicates": sum(r.duplicates for r in worked),
            "worker_cpu_ms_per_command": median([r.subject_cpu_s * 1000 / r.sent for r in worked]),
            "double_cpu_ms_per_request": median([r.double_cpu_s * 1000 / r.sent for r in worked]),
            "direct_cpu_ms_per_request": median([r.subject_cpu_s * 1000 / r.sent for r in direct]),
            "one_pool_httpx_rate": one_pool.rate if one_pool else None,
            "one_pool_httpx_cpu_ms_per_request": (
                one_pool.subject_cpu_s * 1000 / one_pool.sent if one_pool else None
            ),
        },
    )


def measure(quick: bool) -> list[PathResult]:
    found = asyncio.run(_measure(quick))
    return [_result(n, *found[n]) for n in IN_FLIGHT]
