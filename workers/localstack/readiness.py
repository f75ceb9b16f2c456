"""Is a service ready: Kafka registers a broker, S3 answers ListBuckets, the double /healthz.

A port that accepts connections is not enough (Kafka listens before it has a broker registered),
so each service has a probe that asks it something real. Probes are synchronous because the
manager is (tests call it from inside their event loop too, see :func:`run_async`). This module
must never start, stop or signal a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from workers.localstack.endpoints import StackEndpoints
from workers.localstack.errors import StackError
from workers.localstack.processes import pid_alive, port_open

__all__ = [
    "READY_TIMEOUT",
    "ensure_bucket",
    "exotel_ready",
    "kafka_ready",
    "run_async",
    "s3_client",
    "s3_ready",
    "wait_until_ready",
]

READY_TIMEOUT = {"kafka": 120.0, "s3proxy": 60.0, "exotel": 30.0}

_T = TypeVar("_T")


def run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion even when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="localstack-probe")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence client loggers while probing a service that is still starting."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def kafka_ready(endpoints: StackEndpoints) -> None:
    """Kafka answers a metadata request and has registered itself as a broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> int:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=endpoints.kafka_bootstrap, request_timeout_ms=5000
        )
        try:
            await asyncio.wait_for(admin.start(), 10)
            cluster = await asyncio.wait_for(admin.describe_cluster(), 10)
        finally:
            await admin.close()
        return len(cluster.get("brokers", []))

    with _quiet("aiokafka"):
        brokers = run_async(probe)
    if brokers < 1:
        raise StackError("no broker registered yet")


def s3_client(endpoints: StackEndpoints) -> Any:
    """A short-timeout, no-retry boto3 client for probing the local S3Proxy."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoints.s3_endpoint_url,
        region_name=endpoints.aws_default_region,
        aws_access_key_id=endpoints.aws_access_key_id,
        aws_secret_access_key=endpoints.aws_secret_access_key,
        config=Config(
            connect_timeout=2, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"}
        ),
    )


def s3_ready(endpoints: StackEndpoints) -> None:
    client = s3_client(endpoints)
    try:
        client.list_buckets()
    finally:
        client.close()


def ensure_bucket(endpoints: StackEndpoints) -> bool:
    """Create ``endpoints.s3_bucket`` unless it exists; whether it was created."""
    client = s3_client(endpoints)
    try:
        names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if endpoints.s3_bucket in names:
            return False
        client.create_bucket(Bucket=endpoints.s3_bucket)
        return True
    finally:
        client.close()


def exotel_ready(host: str, port: int) -> None:
    import httpx

    with _quiet("httpx"):
        response = httpx.get(f"http://{host}:{port}/healthz", timeout=2.0)
    if response.status_code != 200:
        raise StackError(f"GET /healthz answered {response.status_code}")


def wait_until_ready(
    pid: int | None, host: str, port: int, probe: Callable[[], None], timeout: float
) -> str | None:
    """Poll ``probe`` while ``pid`` lives; None once ready, else why not (exited or timed out)."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if pid is None or not pid_alive(pid):
            return f"exited during start-up ({last_error})"
        if port_open(host, port):
            try:
                probe()
                return None
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    return f"not ready after {timeout:.0f}s ({last_error})"
