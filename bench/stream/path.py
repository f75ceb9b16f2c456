"""Bench path "stream": live audio streams held at real-time pace by one ingress process.

One ``exopipe ingress`` runs on a fresh topic prefix. Each round runs ``bench/stream/load.py``
twice, alternating: ``--target ingress`` (``STREAMS`` WebSockets, a 100 ms media frame of
3,200 bytes every 100 ms per stream, as Exotel's docs require) and ``--target raw`` (the same
streams and slots as records of a raw aiokafka producer with the ingress's settings). Latency is
from a frame's slot on the sender's schedule to its record read back from exotel.stream.audio.

``met`` needs every WebSocket accepted, every media frame on Kafka and the ingress's p99 < 50 ms
at ``STREAMS`` streams. A path of its own, ``stream_500`` (:func:`measure_past_target`, run
last), runs one such round at ``REPORTED`` streams to show what breaks first past the target;
it is reported (``reported`` says what broke, or that nothing did) and never fails the run.
``extra`` has the ingress's CPU share over the run (a single process on a 2-core machine that
also runs Kafka and the load), the senders' lag behind their slots, and each round's figures.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.processes import (
    BENCH_SECRET,
    create_topics,
    ingress_env,
    running,
    settings_of,
    wait_for_http,
)
from bench.results import PathResult, median
from workers import json_codec

__all__ = ["measure"]

STREAMS = 200
REPORTED = 500  # past the target: what breaks first
TARGET_P99_MS = 50.0
TARGET = f">= {STREAMS} real-time streams, p99 < {TARGET_P99_MS:.0f} ms, nothing lost"


def _load(env: dict[str, str], target: str, streams: int, seconds: float, url: str) -> dict:
    argv = [sys.executable, "-m", "bench.stream.load", f"--target={target}"]
    argv += [f"--streams={streams}", f"--seconds={seconds}", f"--url={url}"]
    out = subprocess.run(argv, capture_output=True, text=True, env=env)  # noqa: S603
    if out.returncode != 0:
        raise SystemExit(f"bench stream: load {target} failed:\n{out.stderr[-3000:]}")
    return json_codec.loads(out.stdout.strip().splitlines()[-1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def measure(quick: bool) -> list[PathResult]:
    """Full: 3 rounds of 30 s at 200 streams; quick: one round of 1 s at 20."""
    if quick:
        return [run_rounds(streams=20, seconds=1, rounds=1)]
    return [run_rounds(streams=STREAMS, seconds=30, rounds=3)]


def measure_past_target(quick: bool) -> list[PathResult]:
    """The ``stream_500`` row: one round of 30 s at 500 streams (quick: 1 s at 50).

    One round, and run last in a full bench: at 500 streams the ingress and the raw baseline both
    fall minutes behind, and 3 rounds took 12 minutes and left the broker's disk writing back
    2 GB of audio records while the next paths ran (the enricher's latency p99 went from 20 to
    84 ms behind it). It has an ingress of its own, so it does not start on the 200's state.
    """
    if quick:
        return [run_rounds(streams=50, seconds=1, rounds=1, path="stream_500")]
    return [run_rounds(streams=REPORTED, seconds=30, rounds=1, path="stream_500")]


def breaks(streams: int, ingress_runs: list[dict], p99: float) -> list[str]:
    """What missed the target's terms, in words, most severe first (empty: nothing did)."""
    opened = streams * len(ingress_runs)
    refused = sum(r["refused"] for r in ingress_runs)
    cut = sum(r["cut"] for r in ingress_runs)
    sent = sum(r["sent"] for r in ingress_runs)
    lost = sent - sum(r["delivered"] for r in ingress_runs)
    lag = median([r["send_lag_p99_ms"] for r in ingress_runs])
    found = []
    if refused:
        found.append(f"connections refused: {refused} of {opened}")
    if cut:
        found.append(f"streams cut before their stop: {cut} of {opened}")
    if lost:
        found.append(f"frames lost: {lost} of {sent}")
    if not p99 < TARGET_P99_MS:  # NaN (nothing delivered) is past it too
        found.append(f"p99 {p99:.1f} ms, past {TARGET_P99_MS:.0f} ms")
    if lag >= TARGET_P99_MS:
        found.append(f"frames late from the senders: p99 {lag:.1f} ms behind their slots")
    return found


def run_rounds(streams: int, seconds: float, rounds: int, path: str = "stream") -> PathResult:
    with tempfile.TemporaryDirectory(prefix="exopipe-bench-stream-") as tmp:
        work = Path(tmp)
        env, port = ingress_env(
            work,
            EXOPIPE_INGRESS_STREAM_MAX_PER_TENANT=str(streams * 2),
        )
        create_topics(settings_of(env))
        url = f"ws://127.0.0.1:{port}/v1/bench/app/stream?token={BENCH_SECRET}"
        ingress_runs: list[dict] = []
        raw_runs: list[dict] = []
        cpu_shares: list[float] = []
        with running(["ingress"], env, work / "ingress.log") as ingress:
            wait_for_http(ingress, f"http://127.0.0.1:{port}/readyz")
            _load(env, "ingress", min(streams, 10), 1, url)  # warm-up, not counted
            for _ in range(rounds):
                cpu = _cpu_seconds(ingress.pid)
                ingress_runs.append(_load(env, "ingress", streams, seconds, url))
                cpu_shares.append((_cpu_seconds(ingress.pid) - cpu) / (seconds + 2))
                raw_runs.append(_load(env, "raw", streams, seconds, url))
    p99 = median([r["p99_ms"] for r in ingress_runs])
    sent = sum(r["sent"] for r in ingress_runs)
    delivered = sum(r["delivered"] for r in ingress_runs)
    missed = breaks(streams, ingress_runs, p99)
    reported = None
    if path != "stream":
        reported = "; ".join(missed) if missed else f"nothing broke at {streams} streams"
    return PathResult(
        path=path,
        unit="frames/s",
        rate=median([r["frames_per_s"] for r in ingress_runs]),
        baseline=f"raw aiokafka producer, same {streams} streams and slots",
        baseline_rate=median([r["frames_per_s"] for r in raw_runs]),
        p50_ms=median([r["p50_ms"] for r in ingress_runs]),
        p99_ms=p99,
        delivered=delivered,
        sent=sent,
        target=_target(path, streams),
        met=streams >= STREAMS and not missed,
        reported=reported,
        baseline_p50_ms=median([r["p50_ms"] for r in raw_runs]),
        baseline_p99_ms=median([r["p99_ms"] for r in raw_runs]),
        runs=rounds,
        extra={
            "streams": streams,
            "seconds_per_run": seconds,
            "ingress_cpu_share_of_one_core": median(cpu_shares),
            "sender_lag_p99_ms": median([r["send_lag_p99_ms"] for r in ingress_runs]),
            "baseline_sender_lag_p99_ms": median([r["send_lag_p99_ms"] for r in raw_runs]),
            "media_record_bytes": median([r["media_record_bytes"] for r in ingress_runs]),
            "max_ms": median([r["max_ms"] for r in ingress_runs]),
            "round_p99_ms": [r["p99_ms"] for r in ingress_runs],
            "round_baseline_p99_ms": [r["p99_ms"] for r in raw_runs],
            "refused": sum(r["refused"] for r in ingress_runs),
            "cut": sum(r["cut"] for r in ingress_runs),
            "breaks": missed,
        },
    )


def _target(path: str, streams: int) -> str:
    if path != "stream":
        quick = " (quick run)" if streams < REPORTED else ""
        return f"reported, not a target: {streams} streams on the same terms{quick}"
    return TARGET if streams >= STREAMS else f"{streams} streams (quick run)"
