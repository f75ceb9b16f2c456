"""Starting and stopping the project's own processes for a bench run, on loopback only.

Each bench path runs the real entry points (``exopipe ingress``, ``exopipe worker NAME``) as
child processes with its own topic prefix and temp directory, and stops them at the end, also
when the run fails.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from workers import json_codec
from workers.config import Settings
from workers.kafka import admin_client
from workers.topic_admin import apply_catalog, delete_topics_with_prefixes

__all__ = [
    "BENCH_SECRET",
    "bench_env",
    "cpu_seconds",
    "create_topics",
    "delete_bench_topics",
    "free_port",
    "ingress_env",
    "peak_rss_mib",
    "running",
    "running_module",
    "settings_of",
    "wait_for_http",
    "wait_for_log",
]


# Every bench run's topics start with this, then the minute the run began and a run id, so a
# run removes its own topics and those of runs old enough to be dead, never those of a run
# going on beside it: the broker is shared, and deleting every bench topic took a concurrent
# run's topics from under its worker.
TOPIC_PREFIX = "benchrun-"
STALE_AFTER_S = 3 * 3600
_MADE: set[str] = set()  # prefixes this process gave out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(**overrides: str) -> dict[str, str]:
    """This environment with a fresh topic prefix and quiet logs, plus ``overrides``."""
    env = dict(os.environ)
    prefix = f"{TOPIC_PREFIX}{int(time.time() // 60)}-{uuid.uuid4().hex[:8]}."
    _MADE.add(prefix)
    env["EXOPIPE_TOPIC_PREFIX"] = prefix
    env["EXOPIPE_LOG_LEVEL"] = "WARNING"
    # Workers' stores on disk go with the run, not into the user's cache (removed at exit).
    data_dir = tempfile.mkdtemp(prefix="bench-worker-data-")
    atexit.register(shutil.rmtree, data_dir, True)
    env["EXOPIPE_WORKER_DATA_DIR"] = data_dir
    env.update(overrides)
    return env


BENCH_SECRET = "bench-secret"  # noqa: S105 - a throwaway tenant secret for a loopback bench


def ingress_env(work: Path, **overrides: str) -> tuple[dict[str, str], int]:
    """``bench_env`` for an ingress on a free port: tenant ``bench`` (``BENCH_SECRET``), its spool
    in ``work``, no rate limit; returns the environment and the port."""
    secrets = work / "secrets.json"
    secrets.write_bytes(json_codec.dumps({"ingress_tenants": {"bench": [BENCH_SECRET]}}))
    port = free_port()
    env = bench_env(
        EXOPIPE_SECRETS_FILE=str(secrets),
        EXOPIPE_INGRESS_PORT=str(port),
        EXOPIPE_INGRESS_SPOOL_DIR=str(work / "spool"),
        EXOPIPE_INGRESS_RATE_LIMIT_PER_S="0",
        **overrides,
    )
    return env, port


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_env({k: v for k, v in env.items() if k.startswith("EXOPIPE_")})


def create_topics(settings: Settings) -> None:
    async def apply() -> None:
        async with admin_client(settings) as admin:
            await apply_catalog(admin, name_prefix=settings.topic_prefix)

    asyncio.run(apply())


def delete_bench_topics(settings: Settings) -> int:
    """Delete this process's bench topics and those of runs begun over 3 hours ago; how many."""

    async def delete() -> int:
        async with admin_client(settings) as admin:
            names = await admin.list_topics()
            runs = {_unquix(n) for n in names}
            prefixes = set(_MADE) | {name.split(".", 1)[0] + "." for name in runs if _stale(name)}
            # The Quix Streams peer's changelog and repartition topics lead with their kind.
            prefixes |= {f"{kind}__{p}" for p in set(prefixes) for kind in _QUIX_KINDS}
            return await delete_topics_with_prefixes(admin, sorted(prefixes)) if prefixes else 0

    return asyncio.run(delete())


_QUIX_KINDS = ("changelog", "repartition")


def _unquix(topic: str) -> str:
    """A Quix Streams internal topic's name without its ``<kind>__`` lead."""
    kind, sep, rest = topic.partition("__")
    return rest if sep and kind in _QUIX_KINDS else topic


def _stale(topic: str) -> bool:
    """A topic of a bench run (``benchrun-<minute>-<id>.``) that began over 3 hours ago."""
    if not topic.startswith(TOPIC_PREFIX):
        return False
    minute = topic[len(TOPIC_PREFIX) :].split("-", 1)[0]
    return minute.isdigit() and time.time() - int(minute) * 60 > STALE_AFTER_S


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m workers.cli ARGV...`` as a child, SIGTERMed (then killed) on the way out."""
    with running_module("workers.cli", env, log, *argv) as proc:
        yield proc


@contextmanager
def running_module(
    module: str, env: dict[str, str], log: Path, *argv: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m MODULE ARGV...`` as a child, SIGTERMed (then killed) on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", module, *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_log(proc: subprocess.Popen[bytes], log: Path, text: str, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{log.name}: no {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def wait_for_http(proc: subprocess.Popen[bytes], url: str, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the process serving {url} exited during start-up")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200 within {limit_s:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
