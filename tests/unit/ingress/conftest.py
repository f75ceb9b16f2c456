"""A scripted stand-in for the Kafka producer (pure logic only: real broker tests are in
tests/integration/ingress), and a factory for ingress apps under aiohttp's test client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaConnectionError

from workers.config import Settings
from workers.ingress.app import build_app
from workers.secret_store import SecretStore

SECRET = "tenant-secret-1"
SECRETS = SecretStore.from_mapping({"ingress_tenants": {"c1": [SECRET, "tenant-secret-2"]}})


@dataclass
class Sent:
    topic: str
    key: bytes
    value: bytes
    ack: asyncio.Future[Any]


@dataclass
class Broker:
    """What the fake producers talk to: ``auto_ack`` or futures the test settles by hand."""

    reachable: bool = True
    auto_ack: bool = True
    # Until set, send() waits before taking a record, as aiokafka's does on a full batch.
    room: asyncio.Event | None = None
    sent: list[Sent] = field(default_factory=list)

    def factory(self) -> FakeProducer:
        return FakeProducer(self)

    def topics(self) -> list[str]:
        return [s.topic for s in self.sent]


class FakeProducer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def start(self) -> None:
        if not self.broker.reachable:
            raise KafkaConnectionError("unreachable (fake)")

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        if self.broker.room is not None:
            await self.broker.room.wait()
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.broker.sent.append(Sent(topic, key, value, ack))
        if self.broker.auto_ack:
            ack.set_result("ok")
        return ack

    async def stop(self) -> None:
        return None


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def make_client(tmp_path: Path, broker: Broker) -> Callable[..., Any]:
    """``async with make_client(**env) as client`` runs an ingress on the fake broker."""

    @asynccontextmanager
    async def make(**env: str) -> AsyncIterator[TestClient]:
        variables = {
            "EXOPIPE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
            "EXOPIPE_INGRESS_PRODUCE_TIMEOUT_S": "0.2",
            "EXOPIPE_INGRESS_SHUTDOWN_TIMEOUT_S": "0.5",
            **env,
        }
        settings = Settings.from_env(variables)
        app = build_app(settings, SECRETS, producer_factory=broker.factory)
        async with TestClient(TestServer(app)) as client:
            yield client

    return make


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
