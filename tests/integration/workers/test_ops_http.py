"""A faust worker's /healthz, /readyz and /metrics, the endpoints deploy/k8s probes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import PipelineEnv
from workers.demo.environment import free_port


@pytest.mark.slow
def test_worker_serves_health_readiness_and_metrics(pipeline_env: PipelineEnv) -> None:
    port = free_port("127.0.0.1")
    env = pipeline_env.with_vars(EXOPIPE_WORKER_HTTP_PORT=str(port)).process_env()
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "workers.cli", "worker", "enricher"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                live = httpx.get(f"{base}/healthz", timeout=2)
                ready = httpx.get(f"{base}/readyz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.3)
                continue
            assert live.status_code == 200
            if ready.status_code == 200:
                break
            time.sleep(0.3)
        assert ready is not None and ready.json() == {"ready": True}
        metrics = httpx.get(f"{base}/metrics", timeout=2)
        assert metrics.status_code == 200
        assert "process_cpu_seconds_total" in metrics.text
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
