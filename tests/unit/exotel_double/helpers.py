"""Constants and helpers shared by the Exotel double's tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CUSTOMER = "cust_42"
APP = "app_abc123"
TOKEN = "tok_secret_9f8e"


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DoubleProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path


def start_double_process(args: list[str], port: int, log: Path) -> DoubleProcess:
    """Start a double with ``args`` and wait until /healthz answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXOPIPE_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"double exited: {log.read_text()}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return DoubleProcess(process, base_url, log)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"double did not come up: {log.read_text()}")


def stop_double_process(double: DoubleProcess) -> None:
    double.process.terminate()
    try:
        double.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        double.process.kill()
        double.process.wait()
