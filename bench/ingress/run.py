"""Bench: the ingress under wrk vs a raw aiokafka producer loop, same records, same concurrency.

Needs the local stack's Kafka (``eval "$(exopipe stack up)"``) and ``wrk`` on PATH. Runs
``--rounds`` alternating rounds of each, each ``--seconds`` long, on a fresh topic prefix, and
prints a markdown table of medians: requests/s, p50 and p99 latency, and ingress/baseline ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from workers import json_codec
from workers.config import Settings
from workers.kafka import admin_client
from workers.topic_admin import apply_catalog

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret"  # noqa: S105 - a throwaway tenant secret for a loopback bench


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, concurrency: int, seconds: float, threads: int) -> dict[str, float]:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{int(seconds)}s",
        "--latency",
        "-s",
        str(HERE / "post.lua"),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    if "unexpected status" in out.stderr:
        raise SystemExit(f"the ingress answered non-200 under load:\n{out.stderr[:2000]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out.stdout).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out.stdout).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99}


def run_baseline(env: dict[str, str], concurrency: int, seconds: float) -> dict[str, float]:
    argv = [
        sys.executable,
        str(HERE / "baseline.py"),
        f"--concurrency={concurrency}",
        f"--seconds={seconds}",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    return json_codec.loads(out.stdout.strip().splitlines()[-1])


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the ingress exited during start-up")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the ingress did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrk-threads", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (Debian: apt-get install wrk)")

    work = Path(tempfile.mkdtemp(prefix="exopipe-bench-"))
    secrets = work / "secrets.json"
    secrets.write_bytes(json_codec.dumps({"ingress_tenants": {"bench": [SECRET]}}))
    port = free_port()
    env = {k: v for k, v in os.environ.items()}
    env.update(
        {
            "EXOPIPE_TOPIC_PREFIX": f"bench-{uuid.uuid4().hex[:8]}.",
            "EXOPIPE_SECRETS_FILE": str(secrets),
            "EXOPIPE_INGRESS_PORT": str(port),
            "EXOPIPE_INGRESS_SPOOL_DIR": str(work / "spool"),
            "EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "0",
            "EXOPIPE_LOG_LEVEL": "WARNING",
        }
    )
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("EXOPIPE_")})

    async def create_topics() -> None:
        async with admin_client(settings) as admin:
            await apply_catalog(admin, name_prefix=settings.topic_prefix)

    asyncio.run(create_topics())
    base = f"http://127.0.0.1:{port}"
    ingress = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "workers.cli", "ingress"], env=env
    )
    results: dict[str, list[dict[str, float]]] = {"ingress": [], "baseline": []}
    try:
        wait_ready(base, ingress)
        url = f"{base}/v1/bench/app/popup?token={SECRET}"
        run_wrk(url, args.concurrency, 2, args.wrk_threads)  # warm-up, not counted
        for _ in range(args.rounds):
            results["ingress"].append(
                run_wrk(url, args.concurrency, args.seconds, args.wrk_threads)
            )
            results["baseline"].append(run_baseline(env, args.concurrency, args.seconds))
        spooled = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        ingress.send_signal(signal.SIGTERM)
        code = ingress.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    assert code == 0, f"ingress exited {code}"

    med = {
        side: {m: statistics.median(r[m] for r in runs) for m in ("rps", "p50_ms", "p99_ms")}
        for side, runs in results.items()
    }
    spooled_line = next(
        (line for line in spooled.splitlines() if line.startswith("exopipe_ingress_spooled_total")),
        "exopipe_ingress_spooled_total ?",
    )
    print(
        f"concurrency {args.concurrency}, {args.rounds} rounds x {args.seconds:.0f}s, "
        f"medians; {spooled_line}"
    )
    print()
    print("| | requests/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for side, label in (("ingress", "ingress (HTTP, wrk)"), ("baseline", "raw aiokafka loop")):
        m = med[side]
        print(f"| {label} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    i, b = med["ingress"], med["baseline"]
    print(
        f"| ratio ingress/baseline | {i['rps'] / b['rps']:.2f} | "
        f"{i['p50_ms'] / b['p50_ms']:.2f} | {i['p99_ms'] / b['p99_ms']:.2f} |"
    )
    for side, runs in results.items():
        print(f"\n{side} rounds: " + ", ".join(f"{r['rps']:.0f} rps" for r in runs))


if __name__ == "__main__":
    main()
