"""The dynamic stream endpoint under aiohttp's test client on the fake broker: refusals, the URL
it answers with (credential in the form it came, public base, sample-rate) and bad parameters."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from topics.catalog import WEBHOOK_REJECTED
from workers.config import Settings
from workers.errors import ConfigError
from workers.ingress.stream_endpoint import public_stream_base

from .conftest import SECRET
from .test_openapi_contract import conforms

ENDPOINT = "/v1/c1/a1/stream/url"
DOCUMENTED = "/v1/{customer_id}/{app_id}/stream/url"
CALL = "CallSid=ca-1&From=%2B919876543210&To=08047123456&CustomField=order-7"


def logged(caplog) -> str:
    """What the ingress logged (the test server's own access log is aiohttp's default, not ours)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")


def basic(password: str, user: str = "c1") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("env", "url", "headers", "status", "error"),
    [
        ({}, f"{ENDPOINT}?{CALL}", {}, 401, "unauthorized"),
        ({}, f"{ENDPOINT}?{CALL}&token=wrong", basic("wrong"), 401, "unauthorized"),
        ({}, f"/v1/c2/a1/stream/url?{CALL}&token={SECRET}", {}, 401, "unauthorized"),
        (
            {"EXOPIPE_INGRESS_ALLOWED_CIDRS": "10.0.0.0/8"},
            f"{ENDPOINT}?{CALL}&token={SECRET}",
            {},
            403,
            "forbidden_sender",
        ),
    ],
    ids=["no-secret", "wrong-secrets", "other-tenant", "sender"],
)
async def test_strangers_are_refused_and_leave_no_record(
    make_client, broker, env, url, headers, status, error
):
    async with make_client(**env) as client:
        answer = await client.get(url, headers=headers)
        body = await answer.read()
    assert (answer.status, json.loads(body)) == (status, {"error": error})
    conforms(DOCUMENTED, "GET", status, answer.headers, body)
    assert broker.sent == []


async def test_a_token_gets_the_tenants_stream_url_with_that_token(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    async with make_client() as client:
        answer = await client.get(f"{ENDPOINT}?{CALL}&token={SECRET}")
        body = await answer.read()
    assert answer.status == 200
    assert json.loads(body) == {"url": f"ws://127.0.0.1:8080/v1/c1/a1/stream?token={SECRET}"}
    assert answer.headers["Cache-Control"] == "no-store"
    conforms(DOCUMENTED, "GET", 200, answer.headers, body)
    assert SECRET not in logged(caplog) and "ca-1" in logged(caplog)


async def test_basic_credentials_come_back_as_userinfo_on_the_public_url(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    public = {"EXOPIPE_INGRESS_PUBLIC_URL": "https://in.example.com:8443/exopipe/"}
    async with make_client(**public) as client:
        answer = await client.get(f"{ENDPOINT}?{CALL}&sample-rate=16000", headers=basic(SECRET))
        body = await answer.json()
    expected = f"wss://c1:{SECRET}@in.example.com:8443/exopipe/v1/c1/a1/stream?sample-rate=16000"
    assert (answer.status, body) == (200, {"url": expected})
    assert SECRET not in logged(caplog)


async def test_a_valid_token_is_preferred_to_a_basic_password(make_client):
    async with make_client() as client:
        answer = await client.get(f"{ENDPOINT}?{CALL}&token={SECRET}", headers=basic("wrong"))
        by_token = (await answer.json())["url"]
        answer = await client.get(f"{ENDPOINT}?{CALL}&token=wrong", headers=basic(SECRET))
        by_password = (await answer.json())["url"]
    assert by_token.endswith(f"/v1/c1/a1/stream?token={SECRET}")
    assert by_password == f"ws://c1:{SECRET}@127.0.0.1:8080/v1/c1/a1/stream"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("From=%2B919876543210", "CallSid"),
        ("CallSid=", "CallSid"),
        ("CallSid=" + "x" * 257, "CallSid"),
        ("CallSid=ca%0A1", "CallSid"),
        ("CallSid=ca-1&sample-rate=44100", "sample-rate"),
    ],
    ids=["missing", "empty", "too-long", "control-character", "sample-rate"],
)
async def test_bad_parameters_are_a_clear_400_and_recorded(make_client, broker, query, field):
    async with make_client() as client:
        answer = await client.get(f"{ENDPOINT}?{query}&token={SECRET}")
        body = await answer.read()
    assert answer.status == 400
    conforms(DOCUMENTED, "GET", 400, answer.headers, body)
    refusal = json.loads(body)
    assert (refusal["error"], refusal["field"]) == ("invalid_parameters", field)
    assert refusal["errors"][0].startswith(f"{field}: ")
    [record] = [json.loads(s.value) for s in broker.sent if s.topic == WEBHOOK_REJECTED.name]
    data = record["data"]
    assert (data["reason"], data["kind"], data["call_sid"]) == (
        "invalid_parameters", "stream-url", None if field == "CallSid" else "ca-1")  # fmt: skip
    assert SECRET not in json.dumps(record)


async def test_over_the_rate_limit_is_429(make_client):
    env = {"EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "1", "EXOPIPE_INGRESS_RATE_LIMIT_BURST": "1"}
    async with make_client(**env) as client:
        await client.get(f"{ENDPOINT}?{CALL}&token={SECRET}")
        limited = await client.get(f"{ENDPOINT}?{CALL}&token={SECRET}")
        body = await limited.read()
    assert limited.status == 429
    conforms(DOCUMENTED, "GET", 429, limited.headers, body)


@pytest.mark.parametrize(
    ("value", "base"),
    [
        ("", "ws://127.0.0.1:8080"),
        ("http://h.example", "ws://h.example"),
        ("WSS://h.example/p/", "wss://h.example/p"),
    ],
)
def test_the_public_base_is_a_websocket_one(value, base):
    settings = Settings.from_env({"EXOPIPE_INGRESS_PUBLIC_URL": value})
    assert public_stream_base(settings.ingress).geturl() == base


@pytest.mark.parametrize(
    "value",
    ["ftp://h.example", "https://", "https://u:pw@h.example", "https://h.example/?a=1", "h:x"],
)
def test_an_unusable_public_base_stops_start_up_without_showing_a_password(value):
    settings = Settings.from_env({"EXOPIPE_INGRESS_PUBLIC_URL": value})
    with pytest.raises(ConfigError, match="EXOPIPE_INGRESS_PUBLIC_URL") as refused:
        public_stream_base(settings.ingress)
    assert "pw" not in str(refused.value)
