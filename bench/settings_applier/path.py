"""Bench path ``settings_applier``: commands/s with 64 in flight against a 100 ms Exotel API.

The subject is ``exopipe worker settings`` (``EXOPIPE_APPLIER_IN_FLIGHT=64``) applying a burst of
commands, many apps, several commands each, produced up front; a command's latency runs from its
produce to its result read back from Kafka (so it includes its wait in the burst). The issue's
bound is in-flight / latency = 640 commands/s; the same run also measures plain httpx clients
doing the same PUTs with 64 in flight against the same double (no Kafka; 8 clients of 8
connections, as the worker's), and the baseline is whichever of the two is lower: what this
machine allows. ``met`` compares with the bound. Full runs also record, once, one httpx client
with one pool of 64 connections (``extra``), the layout the worker used before.
Runs alternate (direct, worker, direct, worker ...); medians of 3 (1 small run with ``quick``).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.results import PathResult, median
from bench.settings_applier.bench_throughput import (
    LATENCY_S,
    Run,
    double,
    run_direct,
    run_worker,
    warm_up,
    worker,
)

__all__ = ["measure"]

IN_FLIGHT = 64
TARGET = 0.8  # of the bound


async def _measure(quick: bool) -> tuple[list[Run], list[Run], Run | None]:
    runs, apps, per_app = (1, 128, 5) if quick else (3, 200, 15)
    direct: list[Run] = []
    worked: list[Run] = []
    one_pool = None
    with tempfile.TemporaryDirectory(prefix="exopipe-bench-settings-") as tmp:
        work = Path(tmp)
        async with double(apps, work) as dbl:
            async with worker(dbl, IN_FLIGHT, work) as wrk:
                await warm_up(dbl, wrk)
                await dbl.ctl.clear_requests()
                for _ in range(runs):
                    direct.append(await run_direct(dbl, per_app, IN_FLIGHT))
                    worked.append(await run_worker(dbl, wrk, per_app))
                    await dbl.ctl.clear_requests()
                if not quick:
                    # For the record: one client, one pool of 64 (what the worker did before).
                    one_pool = await run_direct(dbl, 1, IN_FLIGHT, IN_FLIGHT)
    return direct, worked, one_pool


def measure(quick: bool) -> list[PathResult]:
    direct, worked, one_pool = asyncio.run(_measure(quick))
    bound = IN_FLIGHT / LATENCY_S
    rate = median([r.rate for r in worked])
    direct_rate = median([r.rate for r in direct])
    use_direct = direct_rate < bound
    return [
        PathResult(
            path="settings_applier",
            unit="commands/s",
            rate=rate,
            baseline=(
                "plain httpx clients, same PUTs, 64 in flight"
                if use_direct
                else "bound: 64 in flight / 100 ms"
            ),
            baseline_rate=direct_rate if use_direct else bound,
            p50_ms=median([r.p(50) for r in worked]),
            p99_ms=median([r.p(99) for r in worked]),
            baseline_p50_ms=median([r.p(50) for r in direct]),
            baseline_p99_ms=median([r.p(99) for r in direct]),
            delivered=min(r.delivered for r in worked),
            sent=worked[0].sent,
            target=f">= {TARGET:.1f}x of {bound:.0f}/s (64 in flight / 100 ms), same run",
            met=rate >= TARGET * bound and all(r.delivered == r.sent for r in worked),
            runs=len(worked),
            extra={
                "bound_rate": bound,
                "direct_rate": direct_rate,
                "ratio_vs_bound": rate / bound,
                "ratio_vs_direct": rate / direct_rate if direct_rate else 0.0,
                "worker_runs": [round(r.rate, 1) for r in worked],
                "direct_runs": [round(r.rate, 1) for r in direct],
                "duplicates": sum(r.duplicates for r in worked),
                "worker_cpu_ms_per_command": median(
                    [r.subject_cpu_s * 1000 / r.sent for r in worked]
                ),
                "double_cpu_ms_per_request": median(
                    [r.double_cpu_s * 1000 / r.sent for r in worked]
                ),
                "direct_cpu_ms_per_request": median(
                    [r.subject_cpu_s * 1000 / r.sent for r in direct]
                ),
                "one_pool_httpx_rate": one_pool.rate if one_pool else None,
                "one_pool_httpx_cpu_ms_per_request": (
                    one_pool.subject_cpu_s * 1000 / one_pool.sent if one_pool else None
                ),
            },
        )
    ]
