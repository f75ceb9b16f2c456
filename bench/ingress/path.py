"""Bench path "ingress": webhooks over HTTP into Kafka, next to a raw aiokafka producer loop.

One ``exopipe ingress`` runs on a fresh topic prefix (rate limit off). Each round, in this order:

1. **max rate**: ``wrk -t1 -c32`` (closed loop, ``post.lua``: the spec's popup JSON, a new
   ``call_sid`` per request) for ``seconds``: requests/s, p50 and p99;
2. **baseline**: ``baseline.py``, 32 concurrent ``send_and_wait`` calls of the same CloudEvent
   bytes with the ingress's producer settings (idempotent, acks=all, linger 5 ms), in its own
   process: records/s, p50 and p99 of send-to-ack;
3. **paced at half the max rate**: ``wrk -t1 -c32 -s post.lua URL -- RATE`` with RATE half of
   step 1's requests/s: every request has a slot on a fixed schedule (a missed slot is sent as
   soon as a connection is free, so a stall is caught up, not dropped); p50 and p99 of wrk's
   latency (write to response), and the rate achieved, which is reported beside the one offered.

The load generator is one wrk thread: it shares the two cores with the ingress and Kafka, so it
stays lean. Medians over the rounds; ``met`` needs ratio >= 0.7 and the paced p99 < 25 ms, and
every answer a 200. ``extra`` holds the max-rate latencies, the paced rates, the records found
on Kafka against the 200s answered (every 200 must be there), and how many went to the spool.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import (
    BENCH_SECRET,
    create_topics,
    ingress_env,
    running,
    settings_of,
    wait_for_http,
)
from bench.results import PathResult, median
from topics.catalog import WEBHOOK_INCOMING_CALL
from workers import json_codec
from workers.kafka import all_partitions, new_reader

__all__ = ["Wrk", "measure", "require_wrk", "run_baseline", "run_rounds", "run_wrk"]

HERE = Path(__file__).resolve().parent
CONCURRENCY = 32
WRK_THREADS = 1
TARGET_RATIO = 0.7
TARGET_P99_MS = 25.0
TARGET = f"ratio >= {TARGET_RATIO} and p99 < {TARGET_P99_MS:.0f} ms at half its max rate"


@dataclass
class Wrk:
    """One wrk run: answers counted by wrk and its latency percentiles."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    not_ok: int  # non-2xx answers and socket errors


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "bench ingress: wrk is not on PATH; install it (Debian/Ubuntu: apt-get install wrk)"
        )
    return found


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _find(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise SystemExit(f"wrk output without {pattern!r}:\n{text}")
    return found.group(1)


def run_wrk(
    url: str, seconds: int, *, rate: float | None = None, concurrency: int = CONCURRENCY
) -> Wrk:
    """wrk for ``seconds``: closed loop with ``post.lua``, or paced at ``rate`` requests/s."""
    argv = [
        require_wrk(),
        f"-t{WRK_THREADS}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(HERE / "post.lua"),
        url,
    ]
    if rate is not None:
        argv += ["--", f"{rate / WRK_THREADS:.3f}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)  # noqa: S603
    text = out.stdout
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    not_ok = int(_find(r"Non-2xx or 3xx responses: (\d+)", text) if "Non-2xx" in text else 0)
    if errors:
        not_ok += sum(int(n) for n in errors.groups())
    return Wrk(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", text)),
        p50_ms=_ms(_find(r"\s50%\s+(\S+)", text)),
        p99_ms=_ms(_find(r"\s99%\s+(\S+)", text)),
        requests=int(_find(r"(\d+) requests in", text)),
        not_ok=not_ok,
    )


def run_baseline(
    env: dict[str, str], seconds: float, concurrency: int = CONCURRENCY
) -> dict[str, float]:
    argv = [
        sys.executable,
        str(HERE / "baseline.py"),
        f"--concurrency={concurrency}",
        f"--seconds={seconds}",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)  # noqa: S603
    return json_codec.loads(out.stdout.strip().splitlines()[-1])


def _records_on_kafka(env: dict[str, str]) -> int:
    settings = settings_of(env)

    async def count() -> int:
        reader = new_reader(settings)
        await reader.start()
        try:
            ends = await reader.end_offsets(all_partitions(settings.topic(WEBHOOK_INCOMING_CALL)))
            return sum(ends.values())
        finally:
            await reader.stop()

    return asyncio.run(count())


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} ([\d.e+]+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def measure(quick: bool) -> list[PathResult]:
    """Full: 3 rounds of 10 s runs; quick: one round of 1 s runs (about 7 s in all)."""
    if quick:
        return [run_rounds(seconds=1, rounds=1, warm_up=1)]
    return [run_rounds(seconds=10, rounds=3, warm_up=2)]


def run_rounds(
    seconds: int, rounds: int, warm_up: int, concurrency: int = CONCURRENCY
) -> PathResult:
    require_wrk()
    with tempfile.TemporaryDirectory(prefix="exopipe-bench-ingress-") as tmp:
        work = Path(tmp)
        env, port = ingress_env(work)
        create_topics(settings_of(env))
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/v1/bench/app/popup?token={BENCH_SECRET}"
        top: list[Wrk] = []
        paced: list[Wrk] = []
        offered: list[float] = []
        baseline: list[dict[str, float]] = []
        with running(["ingress"], env, work / "ingress.log") as ingress:
            wait_for_http(ingress, f"{base}/readyz")
            answered = run_wrk(url, warm_up, concurrency=concurrency).requests  # not counted
            for _ in range(rounds):
                top.append(run_wrk(url, seconds, concurrency=concurrency))
                baseline.append(run_baseline(env, seconds, concurrency))
                offered.append(top[-1].rps / 2)
                paced.append(run_wrk(url, seconds, rate=offered[-1], concurrency=concurrency))
            metrics = httpx.get(f"{base}/metrics", timeout=5).text
        on_kafka = _records_on_kafka(env)
    runs = top + paced
    answered += sum(r.requests for r in runs)
    not_ok = sum(r.not_ok for r in runs)
    rate = median([r.rps for r in top])
    baseline_rate = median([b["rps"] for b in baseline])
    p99 = median([r.p99_ms for r in paced])
    ratio = rate / baseline_rate if baseline_rate else 0.0
    return PathResult(
        path="ingress",
        unit="requests/s",
        rate=rate,
        baseline=f"raw aiokafka send_and_wait loop, {concurrency} at once",
        baseline_rate=baseline_rate,
        p50_ms=median([r.p50_ms for r in paced]),
        p99_ms=p99,
        delivered=sum(r.requests for r in runs) - not_ok,
        sent=sum(r.requests for r in runs),
        target=TARGET,
        met=ratio >= TARGET_RATIO and p99 < TARGET_P99_MS and not_ok == 0,
        baseline_p50_ms=median([b["p50_ms"] for b in baseline]),
        baseline_p99_ms=median([b["p99_ms"] for b in baseline]),
        runs=rounds,
        extra={
            "concurrency": concurrency,
            "wrk_threads": WRK_THREADS,
            "seconds_per_run": seconds,
            "max_rate_p50_ms": median([r.p50_ms for r in top]),
            "max_rate_p99_ms": median([r.p99_ms for r in top]),
            "paced_offered_rps": median(offered),
            "paced_achieved_rps": median([r.rps for r in paced]),
            "round_rates": [round(r.rps) for r in top],
            "round_baseline_rates": [round(b["rps"]) for b in baseline],
            "round_paced_p99_ms": [r.p99_ms for r in paced],
            # The ingress's records on Kafka (the topic's, less the baseline's) and the 200s
            # wrk counted: wrk stops with requests in flight, so Kafka may hold a few more.
            "answered_incl_warm_up": answered,
            "records_on_kafka": on_kafka - sum(int(b["count"]) for b in baseline),
            "spooled": _metric(metrics, "exopipe_ingress_spooled_total"),
        },
    )
