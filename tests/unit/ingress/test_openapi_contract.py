"""Every answer the ingress gives is in its OpenAPI document: the status for the operation, the
content type, the body's schema and the required headers (fake broker; the fuzz test against the
real broker, tests/integration/ingress/test_openapi_fuzz.py, cannot reach 403, 408 or 503).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from workers.exotel_double.payloads import incoming_call_payload
from workers.ingress.app import OPENAPI_PATH

from .conftest import SECRET, Broker
from .test_security import NEW, ROTATING, _trickle, ingress

DOC = json.loads(OPENAPI_PATH.read_bytes())
WEBHOOK = "/v1/{customer_id}/{app_id}/{kind}"
POPUP = f"/v1/c1/a1/popup?token={SECRET}"
SEED = incoming_call_payload(timestamp="2024-06-15T10:30:00.000Z")


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` (a local one) points to."""
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def conforms(path: str, method: str, status: int, headers: Any, body: bytes) -> None:
    """Fail unless the document declares this answer for ``method path``."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path}: {status} is not documented"
    documented = _resolve(responses[str(status)])
    media = headers.get("Content-Type", "").split(";")[0].strip()
    assert media in documented.get("content", {}), f"{status}: {media!r} is not documented"
    schema = documented["content"][media].get("schema", {})
    value = json.loads(body) if media == "application/json" else body.decode()
    validator = Draft202012Validator(
        {**schema, "components": DOC["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    errors = [e.message for e in validator.iter_errors(value)]
    assert not errors, f"{status} body {value!r}: {errors}"
    for name, header in documented.get("headers", {}).items():
        header = _resolve(header)
        if header.get("required"):
            assert name in headers, f"{status}: header {name} is missing"
            typed = (
                int(headers[name]) if header["schema"].get("type") == "integer" else headers[name]
            )
            assert not list(Draft202012Validator(header["schema"]).iter_errors(typed))


def sent(data: bytes, content_type: str) -> dict[str, Any]:
    return {"data": data, "headers": {"Content-Type": content_type}}


# (environment, method, URL, request kwargs, expected status): one per documented webhook answer.
WEBHOOK_ANSWERS = [
    pytest.param({}, "POST", POPUP, {"json": SEED}, 200, id="200"),
    pytest.param({}, "POST", POPUP, sent(b"{x", "application/json"), 400, id="400-json"),
    pytest.param({}, "POST", POPUP, sent(b"x", "text/plain"), 400, id="400-type"),
    pytest.param({}, "GET", f"{POPUP}&CallSid={'x' * 9000}", {}, 400, id="400-line"),
    pytest.param({}, "POST", "/v1/c1/a1/popup", {"json": SEED}, 401, id="401"),
    pytest.param(
        {"EXOPIPE_INGRESS_ALLOWED_CIDRS": "10.0.0.0/8"},
        "POST",
        POPUP,
        {"json": SEED},
        403,
        id="403",
    ),
    pytest.param({}, "POST", f"/v1/c1/a1/nokind?token={SECRET}", {"json": SEED}, 404, id="404"),
    pytest.param(
        {"EXOPIPE_INGRESS_BODY_LIMIT_BYTES": "64"}, "POST", POPUP, {"json": SEED}, 413, id="413"
    ),
]


@pytest.mark.parametrize(("env", "method", "url", "kwargs", "status"), WEBHOOK_ANSWERS)
async def test_webhook_answers_are_documented(make_client, env, method, url, kwargs, status):
    async with make_client(**env) as client:
        response = await client.request(method, url, **kwargs)
        body = await response.read()
    assert response.status == status, body
    conforms(WEBHOOK, method, status, response.headers, body)


async def test_rate_limited_and_spool_full_are_documented(make_client, broker):
    env = {"EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "1", "EXOPIPE_INGRESS_RATE_LIMIT_BURST": "1"}
    async with make_client(**env) as client:
        await client.post(POPUP, json=SEED)
        limited = await client.post(POPUP, json=SEED)
        conforms(WEBHOOK, "POST", 429, limited.headers, await limited.read())
    broker.reachable = False
    async with make_client(EXOPIPE_INGRESS_SPOOL_MAX_BYTES="3000") as client:
        for n in range(20):
            full = await client.post(POPUP, json=SEED | {"call_sid": f"c{n}"})
            if full.status == 503:
                break
        conforms(WEBHOOK, "POST", full.status, full.headers, await full.read())
        not_ready = await client.get("/readyz")
        conforms("/readyz", "GET", not_ready.status, not_ready.headers, await not_ready.read())
    assert (full.status, not_ready.status) == (503, 503)


async def test_body_timeout_is_documented(tmp_path):
    env = {"EXOPIPE_INGRESS_BODY_TIMEOUT_S": "0.3"}
    async with ingress(tmp_path, Broker(), ROTATING, **env) as client:
        path = f"/v1/c1/a1/popup?token={NEW}"
        answer, _ = await _trickle(client.server.port, path, pause=0.05, limit_s=5.0)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert lines[0].startswith("HTTP/1.1 408")
    conforms(WEBHOOK, "POST", 408, headers, body)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
async def test_ops_answers_are_documented(make_client, path):
    async with make_client() as client:
        response = await client.get(path)
        conforms(path, "GET", response.status, response.headers, await response.read())


async def test_stream_handshake_refusals_are_documented(make_client):
    stream = "/v1/{customer_id}/{app_id}/stream"
    async with make_client(EXOPIPE_INGRESS_STREAM_MAX_PER_TENANT="1") as client:
        plain = await client.get(f"/v1/c1/a1/stream?token={SECRET}")
        conforms(stream, "GET", 426, plain.headers, await plain.read())
        stranger = await client.get("/v1/c1/a1/stream?token=wrong")
        conforms(stream, "GET", 401, stranger.headers, await stranger.read())
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
        upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
        async with client.ws_connect(f"/v1/c1/a1/stream?token={SECRET}"):
            limited = await client.get(f"/v1/c1/a1/stream?token={SECRET}", headers=upgrade)
            conforms(stream, "GET", 429, limited.headers, await limited.read())
    assert (plain.status, stranger.status, limited.status) == (426, 401, 429)
    assert "101" in DOC["paths"][stream]["get"]["responses"]


@pytest.mark.parametrize(
    "env",
    [
        {"EXOPIPE_INGRESS_STREAM_MAX_OPEN": "1"},
        {"EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "0.1", "EXOPIPE_INGRESS_RATE_LIMIT_BURST": "1"},
    ],
)
async def test_the_process_limit_and_the_rate_limit_on_handshakes_are_documented(make_client, env):
    stream = "/v1/{customer_id}/{app_id}/stream"
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    async with make_client(**env) as client:
        async with client.ws_connect(f"/v1/c1/a1/stream?token={SECRET}"):
            limited = await client.get(f"/v1/c1/a2/stream?token={SECRET}", headers=upgrade)
            body = await limited.read()
    assert limited.status == 429
    conforms(stream, "GET", 429, limited.headers, body)
