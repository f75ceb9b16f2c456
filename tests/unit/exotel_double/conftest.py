"""Fixtures: an in-process double per test, its control client and a client for the spec API,
plus a double in a subprocess for the CLI, the blocking client and memory measurements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.unit.exotel_double.helpers import (
    APP,
    CUSTOMER,
    TOKEN,
    DoubleProcess,
    free_port,
    start_double_process,
    stop_double_process,
)
from workers.exotel_double.control import AsyncDoubleControl
from workers.exotel_double.runner import DoubleServer


@pytest.fixture
async def double() -> AsyncIterator[DoubleServer]:
    async with DoubleServer() as server:
        yield server


@pytest.fixture
async def ctl(double: DoubleServer) -> AsyncIterator[AsyncDoubleControl]:
    async with AsyncDoubleControl(double.base_url) as client:
        yield client


@pytest.fixture
async def api(double: DoubleServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client rooted at the spec's base URL."""
    async with httpx.AsyncClient(base_url=double.api_base_url, timeout=10) as client:
        yield client


@pytest.fixture
async def app(ctl: AsyncDoubleControl) -> str:
    """One registered app; returns the settings path relative to the base URL."""
    await ctl.register_app(CUSTOMER, APP, TOKEN)
    return f"/{CUSTOMER}/apps/{APP}/settings"


@pytest.fixture
def double_process(tmp_path: Path) -> Iterator[DoubleProcess]:
    port = free_port()
    args = ["-m", "workers.exotel_double", "--host", "127.0.0.1", "--port", str(port)]
    started = start_double_process(args, port, tmp_path / "double.log")
    yield started
    stop_double_process(started)
