"""Archiver throughput and peak RSS, side by side with a plain boto3 ``upload_file`` baseline.

For 1 and 8 concurrent 100 MiB recordings: a fresh ``exopipe worker archiver`` process per run
(so its VmHWM is that run's peak), timed from the moment the events are produced until every
``archived`` record is read; then the baseline: the same bytes written to disk beforehand and
uploaded with ``boto3 upload_file`` (default TransferConfig, one thread per file) in a fresh
process. Then one 1 GiB recording through the worker, for its peak RSS. Medians of ``--runs``.

    eval "$(exopipe stack up)"
    python -m bench.archiver.run --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests.integration.archiver.conftest import (
    archiver_env,
    collect_outcomes,
    make_rig,
)
from workers.exotel_double.content import iter_content
from workers.exotel_double.control import DoubleControl

MiB = 1024 * 1024
_BASELINE = Path(__file__).with_name("baseline_upload.py")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def archiver_run(
    stack: dict[str, str], double: DoubleControl, home: Path, count: int, size: int
) -> tuple[float, float]:
    """(seconds, worker peak RSS MiB) to archive ``count`` recordings of ``size`` at once."""
    env = archiver_env(
        stack, home, double, EXOPIPE_RECORDING_CONCURRENCY="8", EXOPIPE_LOG_LEVEL="WARNING"
    )
    rig = await make_rig(env, double, home)
    rig.worker.start()
    try:
        warm = rig.name("warm")  # joined, assigned and settings read before the clock starts
        rig.register(warm, 1024)
        await rig.send((f"CA{warm}", rig.url(warm)))
        assert await collect_outcomes(rig.settings, f"CA{warm}", count=1, wait_seconds=120)
        names = [rig.name(f"r{i}") for i in range(count)]
        for name in names:
            rig.register(name, size)
        started = time.perf_counter()
        await rig.send(*[(f"CA{name}", rig.url(name)) for name in names])
        results = await asyncio.gather(
            *[collect_outcomes(rig.settings, f"CA{n}", count=1, wait_seconds=600) for n in names]
        )
        elapsed = time.perf_counter() - started
        assert all(r and r[0][0] == "archived" for r in results), results
        assert rig.worker.proc is not None
        return elapsed, peak_rss_mib(rig.worker.proc.pid)
    finally:
        rig.worker.stop()
        rig.drop_bucket()


def baseline_run(stack: dict[str, str], home: Path, count: int, size: int) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of boto3 upload_file of ``count`` files from disk, in parallel."""
    files = []
    for i in range(count):
        path = home / f"base-{i}.bin"
        with path.open("wb") as out:
            for chunk in iter_content(size, f"base-{i}"):
                out.write(chunk)
        files.append(str(path))
    bucket = f"base-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, **stack}
    out = subprocess.run(
        [sys.executable, str(_BASELINE), bucket, *files],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for path in files:
        Path(path).unlink()
    return float(out[0]), float(out[1])


def fmt(values: list[float]) -> float:
    return statistics.median(values)


async def main(runs: int, gib: bool) -> None:
    stack = {k: v for k, v in os.environ.items() if k.startswith(("EXOPIPE_", "AWS_"))}
    if "EXOPIPE_KAFKA_BOOTSTRAP" not in stack:
        raise SystemExit('run `eval "$(exopipe stack up)"` first')
    base = stack["EXOPIPE_EXOTEL_BASE_URL"].split("/v2/")[0]
    size = 100 * MiB
    rows: list[tuple[Any, ...]] = []
    with DoubleControl(base) as double, tempfile.TemporaryDirectory() as tmp:
        for count in (1, 8):
            arch_t, arch_rss, base_t, base_rss = [], [], [], []
            for run in range(runs):
                home = Path(tmp) / f"c{count}-r{run}"
                home.mkdir()
                seconds, rss = await archiver_run(stack, double, home, count, size)
                arch_t.append(seconds)
                arch_rss.append(rss)
                seconds, rss = baseline_run(stack, home, count, size)
                base_t.append(seconds)
                base_rss.append(rss)
            mb = count * size / 1e6
            a, b = mb / fmt(arch_t), mb / fmt(base_t)
            rows.append((count, a, fmt(arch_rss), b, fmt(base_rss), a / b))
        print(f"runs={runs}, medians; 100 MiB recordings; MB = 10^6 bytes")
        print(
            "| recordings at once | archiver MB/s | archiver peak RSS MiB | upload_file MB/s "
            "| upload_file peak RSS MiB | archiver / upload_file |"
        )
        print("|---|---|---|---|---|---|")
        for row in rows:
            print("| {} | {:.0f} | {:.0f} | {:.0f} | {:.0f} | {:.2f} |".format(*row))
        if gib:
            home = Path(tmp) / "gib"
            home.mkdir()
            seconds, rss = await archiver_run(stack, double, home, 1, 1024 * MiB)
            print(f"\n1 GiB recording: {1024 * MiB / 1e6 / seconds:.0f} MB/s, "
                  f"worker peak RSS {rss:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-gib", action="store_true", help="skip the 1 GiB recording")
    args = parser.parse_args()
    asyncio.run(main(args.runs, not args.no_gib))
