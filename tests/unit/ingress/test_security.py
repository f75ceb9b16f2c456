"""Hostile senders against the whole HTTP app (fake broker): the auth matrix, oversize and
trickling bodies, and no secret in logs, /metrics or any record, refused ones included."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from topics.catalog import WEBHOOK_INCOMING_CALL, WEBHOOK_REJECTED
from workers import json_codec
from workers.config import Settings
from workers.exotel_double.payloads import incoming_call_payload
from workers.ingress.app import PathOnlyAccessLogger, build_app
from workers.secret_store import SecretStore

from .conftest import Broker

OLD, NEW = "c1-old-secret-0001", "c1-new-secret-0002"
OTHER = "c2-secret-0003"
APP_OWN = "c1-a9-own-secret-0004"
SEED = incoming_call_payload(timestamp="2024-06-15T10:30:00.000Z")
ROTATING = {"ingress_tenants": {"c1": [OLD, NEW], "c2": [OTHER], "c1/a9": [APP_OWN]}}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@asynccontextmanager
async def ingress(
    tmp_path: Path, broker: Broker, secrets: dict, **env: str
) -> AsyncIterator[TestClient]:
    variables = {
        "EXOPIPE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
        "EXOPIPE_INGRESS_PRODUCE_TIMEOUT_S": "0.2",
        "EXOPIPE_INGRESS_SHUTDOWN_TIMEOUT_S": "0.5",
        **env,
    }
    app = build_app(
        Settings.from_env(variables),
        SecretStore.from_mapping(secrets),
        producer_factory=broker.factory,
    )
    # The access logger the ingress process runs with (workers/ingress/cli.py).
    server = TestServer(app)
    await server.start_server(access_log_class=PathOnlyAccessLogger)
    async with TestClient(server) as client:
        yield client


# (path, headers, expected status): who may post for c1/a1, c2/a1 and c1/a9.
AUTH_CASES = [
    pytest.param("/v1/c1/a1/popup", {}, 401, id="missing"),
    pytest.param("/v1/c1/a1/popup?token=", {}, 401, id="empty-token"),
    pytest.param("/v1/c1/a1/popup?token=nope", {}, 401, id="wrong"),
    pytest.param(f"/v1/c1/a1/popup?token={OLD}x", {}, 401, id="secret-plus-a-byte"),
    pytest.param(f"/v1/c1/a1/popup?token={OLD[:-1]}", {}, 401, id="secret-minus-a-byte"),
    pytest.param(f"/v1/c1/a1/popup?token={OLD.upper()}", {}, 401, id="wrong-case"),
    pytest.param(f"/v1/c1/a1/popup?token={OTHER}", {}, 401, id="another-tenants-secret"),
    pytest.param(f"/v1/c2/a1/popup?token={OLD}", {}, 401, id="c1-secret-on-c2"),
    pytest.param(f"/v1/c1/a9/popup?token={OLD}", {}, 401, id="customer-secret-on-app-own"),
    pytest.param(f"/v1/c1/a1/popup?token={APP_OWN}", {}, 401, id="app-secret-on-sibling"),
    pytest.param("/v1/c1/a1/popup", basic(OLD, "x"), 401, id="secret-as-basic-user"),
    pytest.param("/v1/c1/a1/popup", {"Authorization": f"Bearer {OLD}"}, 401, id="bearer"),
    pytest.param("/v1/c1/a1/popup", {"Authorization": "Basic !!!"}, 401, id="bad-base64"),
    pytest.param("/v1/c9/a1/popup?token=anything", {}, 401, id="unknown-tenant"),
    pytest.param(f"/v1/c1/a1/popup?token={OLD}", {}, 200, id="rotation-old"),
    pytest.param(f"/v1/c1/a1/popup?token={NEW}", {}, 200, id="rotation-new"),
    pytest.param("/v1/c1/a1/popup", basic("c1", NEW), 200, id="basic-password"),
    pytest.param(f"/v1/c1/a1/popup?token=nope&token={NEW}", {}, 401, id="first-token-only"),
    pytest.param(f"/v1/c2/a1/popup?token={OTHER}", {}, 200, id="c2-own"),
    pytest.param(f"/v1/c1/a9/popup?token={APP_OWN}", {}, 200, id="app-own"),
]


@pytest.mark.parametrize(("path", "headers", "status"), AUTH_CASES)
async def test_auth_matrix(tmp_path, path, headers, status):
    broker = Broker()
    async with ingress(tmp_path, broker, ROTATING) as client:
        response = await client.post(path, json=SEED, headers=headers)
    assert response.status == status
    # A refused sender leaves no record at all (it could otherwise fill a topic).
    assert broker.topics() == ([WEBHOOK_INCOMING_CALL.name] if status == 200 else [])


async def test_after_rotation_the_old_secret_is_refused(tmp_path):
    broker = Broker()
    async with ingress(tmp_path, broker, {"ingress_tenants": {"c1": [NEW]}}) as client:
        assert (await client.post(f"/v1/c1/a1/popup?token={OLD}", json=SEED)).status == 401
        assert (await client.post(f"/v1/c1/a1/popup?token={NEW}", json=SEED)).status == 200


async def test_oversize_declared_and_chunked_are_413(tmp_path):
    broker = Broker()
    env = {"EXOPIPE_INGRESS_BODY_LIMIT_BYTES": "1024"}
    async with ingress(tmp_path, broker, ROTATING, **env) as client:
        declared = await client.post(f"/v1/c1/a1/popup?token={NEW}", data=b"x" * 5000)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b"y" * 512

        chunked = await client.post(f"/v1/c1/a1/popup?token={NEW}", data=chunks())
    assert declared.status == 413 and chunked.status == 413
    assert broker.topics() == [WEBHOOK_REJECTED.name] * 2


async def _trickle(port: int, path: str, pause: float, limit_s: float) -> tuple[bytes, float]:
    """Send headers, then one body byte every ``pause`` seconds; return the answer and when it
    came (seconds from the first byte)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    body = json_codec.dumps(SEED)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    answer = b""

    async def drip() -> None:
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)

    dripping = asyncio.create_task(drip())
    try:
        answer = await asyncio.wait_for(reader.read(4096), limit_s)
    finally:
        dripping.cancel()
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, asyncio.CancelledError):
            pass
    return answer, loop.time() - started


async def test_a_trickling_body_is_cut_off_at_the_deadline(tmp_path):
    broker = Broker()
    env = {"EXOPIPE_INGRESS_BODY_TIMEOUT_S": "0.5"}
    async with ingress(tmp_path, broker, ROTATING, **env) as client:
        path = f"/v1/c1/a1/popup?token={NEW}"
        answer, took = await _trickle(client.server.port, path, pause=0.05, limit_s=5.0)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b"body_timeout" in answer
    assert 0.4 < took < 2.0
    assert broker.topics() == [WEBHOOK_REJECTED.name]
    rejected = json_codec.loads(broker.sent[0].value)["data"]
    assert rejected["reason"] == "body_timeout" and rejected["status"] == 408


async def test_no_secret_in_logs_metrics_or_records(tmp_path, caplog):
    """Every route a request can take, each offering a secret (one also inside a refused body,
    which the rejected record keeps: the ingress redacts the tenant's secrets from it)."""
    broker = Broker()
    caplog.set_level(logging.DEBUG)
    secrets = [OLD, NEW, OTHER, APP_OWN]
    env = {"EXOPIPE_INGRESS_BODY_LIMIT_BYTES": "2048", "EXOPIPE_INGRESS_BODY_TIMEOUT_S": "0.3"}
    async with ingress(tmp_path, broker, ROTATING, **env) as client:
        tok = f"token={NEW}"
        statuses = [
            (await client.post(f"/v1/c1/a1/popup?{tok}", json=SEED)).status,
            (await client.post(f"/v1/c1/a1/popup?{tok}", json={"nope": OLD})).status,
            (await client.get(f"/v1/c1/a1/callback?{tok}&CallSid=x&Password={NEW}")).status,
            (await client.post(f"/v1/c1/a1/nokind?{tok}", json=SEED)).status,
            (await client.post(f"/v1/c1/a1/popup?{tok}", data=b"z" * 4096)).status,
            (await client.post("/v1/c1/a1/popup", json=SEED, headers=basic("c1", NEW))).status,
            (await client.post("/v1/c1/a1/popup?token=" + APP_OWN, json=SEED)).status,
            (
                await client.post(f"/v1/c1/a1/popup?{tok}", data=b"{", headers=basic("c", OLD))
            ).status,
        ]
        answer, _ = await _trickle(client.server.port, f"/v1/c1/a1/popup?{tok}", 0.05, 5.0)
        metrics = await (await client.get("/metrics")).text()
    assert statuses == [200, 400, 400, 404, 413, 200, 401, 400]
    assert answer.startswith(b"HTTP/1.1 408")
    assert len(broker.sent) >= 7
    places = {"logs": caplog.text, "metrics": metrics}
    for i, sent in enumerate(broker.sent):
        places[f"record {i} ({sent.topic})"] = (sent.key + sent.value).decode()
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:6]}... found in {where}"
