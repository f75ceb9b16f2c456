"""The HTTP contract: statuses, bodies, rejected records, ops endpoints (fake broker)."""

from __future__ import annotations

import base64
import json

from topics.catalog import WEBHOOK_CALL_STATUS, WEBHOOK_INCOMING_CALL, WEBHOOK_REJECTED
from workers.exotel_double.payloads import incoming_call_payload
from workers.ingress.app import OPENAPI_PATH

from .conftest import SECRET

POPUP = f"/v1/c1/a1/popup?token={SECRET}"
SEED = incoming_call_payload(timestamp="2024-06-15T10:30:00.000Z")


async def test_accepted_webhook_is_acked_by_kafka(make_client, broker):
    async with make_client() as client:
        response = await client.post(POPUP, json=SEED)
        body = await response.json()
    assert response.status == 200
    assert body["delivery"] == "kafka"
    assert broker.topics() == [WEBHOOK_INCOMING_CALL.name]
    assert broker.sent[0].key == b"call_123"
    event = json.loads(broker.sent[0].value)
    assert event["id"] == body["id"]
    assert event["time"] == "2024-06-15T10:30:00.000Z"
    assert event["customerid"] == "c1" and event["appid"] == "a1"


async def test_get_query_and_basic_auth(make_client, broker):
    async with make_client() as client:
        query = "CallSid=pt1&CallFrom=0981&CallTo=0800&CurrentTime=2024-06-15+16:00:05"
        basic = "Basic " + base64.b64encode(f"c1:{SECRET}".encode()).decode()
        response = await client.get(f"/v1/c1/a1/callback?{query}", headers={"Authorization": basic})
    assert response.status == 200
    assert broker.topics() == [WEBHOOK_CALL_STATUS.name]
    assert "token" not in json.loads(broker.sent[0].value)["data"]["original"]


async def test_token_never_reaches_a_record(make_client, broker):
    async with make_client() as client:
        response = await client.get(f"/v1/c1/a1/callback?token={SECRET}&CallSid=x")
    assert response.status == 400  # no timestamp
    assert broker.topics() == [WEBHOOK_REJECTED.name]
    assert SECRET.encode() not in broker.sent[0].value


async def test_unauthorized_and_rate_limited_produce_nothing(make_client, broker):
    env = {"EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "1", "EXOPIPE_INGRESS_RATE_LIMIT_BURST": "1"}
    async with make_client(**env) as client:
        assert (await client.post("/v1/c1/a1/popup?token=wrong", json=SEED)).status == 401
        assert (await client.post("/v1/c1/a1/popup", json=SEED)).status == 401
        assert (await client.post(POPUP, json=SEED)).status == 200
        limited = await client.post(POPUP, json=SEED)
        metrics = await (await client.get("/metrics")).text()
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "1"
    assert broker.topics() == [WEBHOOK_INCOMING_CALL.name]
    assert 'exopipe_ingress_rejected_total{reason="unauthorized"} 2.0' in metrics
    assert 'exopipe_ingress_rejected_total{reason="rate_limited"} 1.0' in metrics
    assert 'exopipe_ingress_requests_total{kind="popup",status="429"} 1.0' in metrics


async def test_bad_input_is_named_and_recorded(make_client, broker):
    cases = [
        ("popup", b"{not json", "application/json", 400, "body"),
        ("popup", b"[1, 2]", "application/json", 400, "body"),
        ("popup", json.dumps(SEED | {"call_sid": 5}).encode(), "application/json", 400, "call_sid"),
        ("popup", json.dumps({**SEED, "to": None}).encode(), "application/json", 400, "to"),
        ("recording", json.dumps(SEED).encode(), "application/json", 400, "duration"),
        ("nope", json.dumps(SEED).encode(), "application/json", 404, "kind"),
        ("popup", b"x", "text/plain", 400, "content-type"),
    ]
    async with make_client() as client:
        for kind, body, content_type, status, field in cases:
            response = await client.post(
                f"/v1/c1/a1/{kind}?token={SECRET}",
                data=body,
                headers={"Content-Type": content_type},
            )
            answer = await response.json()
            assert (response.status, answer["field"]) == (status, field), answer
    assert broker.topics() == [WEBHOOK_REJECTED.name] * len(cases)
    record = json.loads(broker.sent[0].value)["data"]
    assert record["body"] == "{not json"
    assert record["reason"] == "invalid_payload"
    assert record["customer_id"] == "c1" and record["kind"] == "popup"
    assert record["url"] == "/v1/c1/a1/popup?token=%5Bredacted%5D"


async def test_oversize_is_refused_early_also_when_chunked(make_client, broker):
    env = {"EXOPIPE_INGRESS_BODY_LIMIT_BYTES": "1024"}

    async def chunks():
        for _ in range(64):  # 64 KiB, far more than the limit, without Content-Length
            yield b"x" * 1024

    async with make_client(**env) as client:
        declared = await client.post(POPUP, data=b"{" + b" " * 5000 + b"}")
        chunked = await client.post(
            POPUP, data=chunks(), headers={"Content-Type": "application/json"}
        )
        assert declared.status == 413 and chunked.status == 413
        assert (await chunked.json())["field"] == "body"
    records = [json.loads(s.value)["data"] for s in broker.sent]
    assert [r["reason"] for r in records] == ["body_too_large"] * 2
    assert records[0]["body_size"] == 5002
    assert records[1]["body_truncated"] is True and len(records[1]["body"]) <= 1024


async def test_ops_endpoints(make_client, broker):
    async with make_client() as client:
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert ready.status == 200, await ready.text()
        served = await (await client.get("/openapi.json")).json()
        routes = {r.resource.canonical for r in client.app.router.routes()}
    assert served == json.loads(OPENAPI_PATH.read_bytes())
    assert set(served["paths"]) == routes


async def test_not_ready_without_a_broker(make_client, broker):
    broker.reachable = False
    async with make_client() as client:
        ready = await client.get("/readyz")
        assert ready.status == 503
        # Still accepting: the spool takes webhooks while Kafka is away.
        response = await client.post(POPUP, json=SEED)
        assert (await response.json())["delivery"] == "spooled"
