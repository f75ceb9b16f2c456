"""Bench paths ``archiver_1x100MiB`` and ``archiver_8x100MiB``: the archiver beside upload_file.

Each run starts a fresh ``exopipe worker archiver`` process (so its VmHWM is that run's peak),
waits until it has joined and archived a tiny warm-up recording, then times 1 recording, then
8 at once, each from producing the events to reading every ``archived`` record (download from
the Exotel double, sha256, temp file, multipart upload). After each, the baseline: the same
number of files of the same size, written to disk beforehand and uploaded by boto3
``upload_file`` (default TransferConfig, one thread per file) in a fresh process with the same
client settings. For one recording the baseline is its bound: the sha256 goes into the
object's metadata at creation, so the upload starts after the download, and the bound is the
download alone of the same bytes from the double (``bench.archiver.download_bound``'s timing)
plus that ``upload_file``; ``extra`` prints both parts. Full mode: 100 MiB recordings, 3 runs,
medians; quick mode: 16 MiB, 1 run, under the same path names (``extra["recording_mib"]``).

``p50_ms``/``p99_ms`` are per recording, event produced to archived record read; the baseline's
are per file, ``upload_file`` call to return.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from bench.archiver.download_bound import download_seconds
from bench.kafka_io import wait_for_leaders
from bench.processes import peak_rss_mib
from bench.results import PathResult, median, percentile
from tests.conftest import PipelineEnv
from tests.integration.archiver.conftest import (
    ArchiverRig,
    archiver_env,
    make_rig,
    outcome_consumer,
)
from topics.catalog import RECORDING_ARCHIVED, TopicSpec
from topics.events import parse_event
from workers.exotel_double.content import iter_content
from workers.exotel_double.control import DoubleControl
from workers.kafka import admin_client
from workers.topic_admin import apply_catalog

__all__ = ["MiB", "Sample", "archiver_run", "baseline_run", "measure", "ready_rig"]

MiB = 1024 * 1024
COUNTS = (1, 8)
_BASELINE = Path(__file__).with_name("baseline_upload.py")


@dataclass
class Sample:
    """One timed batch: ``count`` recordings (or files) of ``size`` bytes."""

    seconds: float
    peak_rss_mib: float
    latencies_ms: list[float]
    delivered: int
    download_s: float | None = None  # the bound's two parts, for one recording's baseline
    upload_s: float | None = None

    def mb_per_s(self, count: int, size: int) -> float:
        return count * size / 1e6 / self.seconds


class _Outcomes:
    """Reads archived and failed records from the start; when each call_sid's first one came."""

    def __init__(self, consumer: AIOKafkaConsumer, specs: dict[str, TopicSpec]) -> None:
        self._consumer = consumer
        self._specs = specs
        self.seen: dict[str, tuple[str, float]] = {}

    async def wait_for(self, call_sids: list[str], seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while any(sid not in self.seen for sid in call_sids) and loop.time() < deadline:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for tp, records in batches.items():
                spec = self._specs[tp.topic]
                kind = "archived" if spec is RECORDING_ARCHIVED else "failed"
                for record in records:
                    sid = parse_event(record.value, spec).data.get("call_sid")
                    self.seen.setdefault(sid, (kind, now))


@asynccontextmanager
async def _outcomes(rig: ArchiverRig) -> AsyncIterator[_Outcomes]:
    consumer, specs = outcome_consumer(rig.settings)
    await consumer.start()
    try:
        yield _Outcomes(consumer, specs)
    finally:
        await consumer.stop()


async def _batch(rig: ArchiverRig, seen: _Outcomes, count: int, size: int, stem: str) -> Sample:
    names = [rig.name(f"{stem}{i}") for i in range(count)]
    for name in names:
        rig.register(name, size)
    sids = [f"CA{name}" for name in names]
    started = time.perf_counter()
    await rig.send(*[(f"CA{name}", rig.url(name)) for name in names])
    await seen.wait_for(sids, 600)
    elapsed = time.perf_counter() - started
    done = [seen.seen[s] for s in sids if s in seen.seen]
    if len(done) != count or any(kind != "archived" for kind, _ in done):
        raise RuntimeError(f"archiver bench: {len(done)}/{count} outcomes, {done}")
    assert rig.worker.proc is not None
    return Sample(
        seconds=elapsed,
        peak_rss_mib=peak_rss_mib(rig.worker.proc.pid),
        latencies_ms=[(at - started) * 1000 for _, at in done],
        delivered=len(done),
    )


async def archiver_run(
    stack: dict[str, str],
    double: DoubleControl,
    home: Path,
    batches: list[tuple[int, int]],
    between: object = None,
    **extra_env: str,
) -> list[Sample]:
    """One fresh worker; for each ``(count, size)`` in ``batches`` one timed batch, in order.

    ``between(index)`` (if given) runs after each batch, e.g. the baseline, so the two alternate.
    """
    env = archiver_env(
        stack,
        home,
        double,
        EXOPIPE_RECORDING_CONCURRENCY="8",
        EXOPIPE_LOG_LEVEL="WARNING",
        EXOPIPE_RECORDING_MAX_BYTES=str(max(size for _, size in batches) + MiB),
        **extra_env,
    )
    rig = await ready_rig(env, double, home)
    rig.worker.start()
    try:
        async with _outcomes(rig) as seen:
            # Joined, assigned and settings read before the clock starts.
            await _batch(rig, seen, 1, 1024, "warm")
            samples = []
            for index, (count, size) in enumerate(batches):
                samples.append(await _batch(rig, seen, count, size, f"c{count}-"))
                if callable(between):
                    await asyncio.to_thread(between, index)
            return samples
    finally:
        rig.worker.stop()
        rig.drop_bucket()


async def ready_rig(env: PipelineEnv, double: DoubleControl, home: Path) -> ArchiverRig:
    """The tests' rig, on topics whose partitions all answer before anything is produced."""
    async with admin_client(env.settings) as admin:
        await apply_catalog(admin, name_prefix=env.settings.topic_prefix)
    await wait_for_leaders(env.settings, env.settings.topic_prefix)
    return await make_rig(env, double, home)


def baseline_run(stack: dict[str, str], home: Path, count: int, size: int) -> Sample:
    """boto3 upload_file of ``count`` files of ``size`` bytes from disk, in parallel."""
    files = []
    for i in range(count):
        path = home / f"base-{i}.bin"
        with path.open("wb") as out:
            for chunk in iter_content(size, f"base-{i}"):
                out.write(chunk)
        files.append(str(path))
    bucket = f"base-{uuid.uuid4().hex[:10]}"
    try:
        out = subprocess.run(
            [sys.executable, str(_BASELINE), bucket, *files],
            env={**os.environ, **stack},
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    finally:
        for path in files:
            Path(path).unlink()
    return Sample(
        seconds=float(out[0]),
        peak_rss_mib=float(out[1]),
        latencies_ms=[float(x) * 1000 for x in out[2:]],
        delivered=count,
    )


def with_download(upload: Sample, double: DoubleControl, size: int, name: str) -> Sample:
    """The bound of one recording: ``upload`` plus the download alone of the same size from the
    double, as ``bench.archiver.download_bound`` times it (httpx streaming, no hash, no file).

    The sha256 must be in the object's metadata at its creation, so one recording costs its
    download, then its upload: this sum is the most an archiver can reach here.
    """
    double.register_recording(name, size, seed=name)
    download_s = download_seconds(double.recording_url(name), size)
    return Sample(
        seconds=download_s + upload.seconds,
        peak_rss_mib=upload.peak_rss_mib,
        latencies_ms=[(download_s + upload.seconds) * 1000],
        delivered=upload.delivered,
        download_s=download_s,
        upload_s=upload.seconds,
    )


def _stack() -> dict[str, str]:
    stack = {k: v for k, v in os.environ.items() if k.startswith(("EXOPIPE_", "AWS_"))}
    if "EXOPIPE_KAFKA_BOOTSTRAP" not in stack:
        raise SystemExit('run `eval "$(exopipe stack up)"` first')
    return stack


async def _measure(runs: int, size: int) -> dict[int, tuple[list[Sample], list[Sample]]]:
    stack = _stack()
    base = stack["EXOPIPE_EXOTEL_BASE_URL"].split("/v2/")[0]
    found: dict[int, tuple[list[Sample], list[Sample]]] = {c: ([], []) for c in COUNTS}
    with DoubleControl(base) as double, tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            home = Path(tmp) / f"r{run}"
            home.mkdir()

            def baseline(index: int, home: Path = home, run: int = run) -> None:
                count = COUNTS[index]
                sample = baseline_run(stack, home, count, size)
                if count == 1:
                    sample = with_download(sample, double, size, f"bound-{run}")
                found[count][1].append(sample)

            samples = await archiver_run(
                stack, double, home, [(c, size) for c in COUNTS], between=baseline
            )
            for count, sample in zip(COUNTS, samples, strict=True):
                found[count][0].append(sample)
    return found


def _result(count: int, size: int, subject: list[Sample], base: list[Sample]) -> PathResult:
    rate = median([s.mb_per_s(count, size) for s in subject])
    base_rate = median([s.mb_per_s(count, size) for s in base])
    rss = median([s.peak_rss_mib for s in subject])
    mib = size // MiB
    latencies = [x for s in subject for x in s.latencies_ms]
    base_latencies = [x for s in base for x in s.latencies_ms]
    parts = {}
    if count == 1:
        target = "1 recording >= 0.9x (download alone + upload_file), same run"
        met = rate >= 0.9 * base_rate
        parts = {
            "bound_download_s": median([s.download_s for s in base if s.download_s]),
            "bound_upload_file_s": median([s.upload_s for s in base if s.upload_s]),
            "upload_file_mb_per_s": median([size / 1e6 / s.upload_s for s in base if s.upload_s]),
        }
    else:
        target, met = f"worker peak RSS < 200 MiB with {count} at once", rss < 200
    return PathResult(
        path=f"archiver_{count}x100MiB",  # the same names in quick mode (see recording_mib)
        unit="MB/s",
        rate=rate,
        baseline=(
            "download alone from the double + boto3 upload_file"
            if count == 1
            else f"boto3 upload_file x{count}"
        ),
        baseline_rate=base_rate,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        delivered=sum(s.delivered for s in subject),
        sent=count * len(subject),
        target=target,
        met=met,
        baseline_p50_ms=percentile(base_latencies, 50),
        baseline_p99_ms=percentile(base_latencies, 99),
        runs=len(subject),
        extra={
            "recording_mib": mib,
            "peak_rss_mib": round(rss, 1),
            "baseline_peak_rss_mib": round(median([s.peak_rss_mib for s in base]), 1),
            "seconds": [round(s.seconds, 3) for s in subject],
            "baseline_seconds": [round(s.seconds, 3) for s in base],
            **parts,
        },
    )


def measure(quick: bool) -> list[PathResult]:
    runs, size = (1, 16 * MiB) if quick else (3, 100 * MiB)
    found = asyncio.run(_measure(runs, size))
    return [_result(count, size, *found[count]) for count in COUNTS]
