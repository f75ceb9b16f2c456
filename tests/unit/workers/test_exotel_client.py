"""The App Settings client against the spec, with ``httpx.MockTransport`` standing in for Exotel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from workers import json_codec
from workers.errors import PermanentError, RetryableError
from workers.exotel_client import (
    SETTINGS_FIELDS,
    ExotelBadRequest,
    ExotelClient,
    ExotelClientError,
    ExotelNotFound,
    ExotelUnauthorized,
    ExotelUnavailable,
    MissingToken,
    UnexpectedResponse,
    parse_retry_after,
)
from workers.exotel_double.runner import DoubleServer
from workers.secret_store import SecretStore

BASE = "https://integrationscore.mum1.exotel.com/v2/integrations"
TOKEN = "tok-Zq8w-not-for-logs"
SECRETS = SecretStore.from_mapping({"exotel_apps": {"cust_1/app_abc123": TOKEN}})

SPEC_RESPONSE = {
    "success": True,
    "data": {
        "app_id": "app_abc123",
        "settings": {
            "popup_url": "https://your-server.com/webhook/popup",
            "missed_call_url": "https://your-server.com/webhook/missed-call",
            "callback_url": None,
            "recording_enabled": True,
            "recording_url": "https://your-server.com/webhook/recording",
            "streaming_enabled": False,
            "streaming_url": None,
            "updated_at": "2024-06-15T10:30:00.000Z",
        },
    },
}


def client_with(handler: Callable[[httpx.Request], httpx.Response]) -> ExotelClient:
    return ExotelClient(BASE, SECRETS, transport=httpx.MockTransport(handler))


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        content = json_codec.dumps(body) if body is not None else b""
        return httpx.Response(status, content=content, headers=headers)

    return handler


async def test_put_sends_exactly_the_given_fields_with_bearer_and_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=json_codec.dumps(SPEC_RESPONSE))

    changes = {
        "recording_enabled": True,
        "recording_url": "https://your-server.com/webhook/recording",
    }
    async with client_with(handler) as client:
        result = await client.put_settings("cust_1", "app_abc123", changes)
    (request,) = seen
    assert request.method == "PUT"
    assert str(request.url) == f"{BASE}/cust_1/apps/app_abc123/settings"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json_codec.loads(request.content) == changes
    assert result.settings["recording_enabled"] is True
    assert result.settings["callback_url"] is None
    assert set(result.settings) == set(SETTINGS_FIELDS)
    assert result.updated_at == "2024-06-15T10:30:00.000Z"


async def test_get_has_no_body_and_reads_created_at() -> None:
    seen: list[httpx.Request] = []
    body = json_codec.loads(json_codec.dumps(SPEC_RESPONSE))
    body["data"]["settings"]["created_at"] = "2024-06-01T09:00:00.000Z"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=json_codec.dumps(body))

    async with client_with(handler) as client:
        result = await client.get_settings("cust_1", "app_abc123")
    assert seen[0].method == "GET" and seen[0].content == b""
    assert "Content-Type" not in seen[0].headers
    assert result.created_at == "2024-06-01T09:00:00.000Z"
    assert result.app_id == "app_abc123"


async def test_identifiers_cannot_escape_their_path_segment() -> None:
    client = ExotelClient(BASE, SECRETS)
    try:
        assert client.settings_url("../x", "a/b?c") == f"{BASE}/..%2Fx/apps/a%2Fb%3Fc/settings"
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ExotelBadRequest),
        (401, ExotelUnauthorized),
        (404, ExotelNotFound),
        (405, ExotelClientError),
        (422, ExotelClientError),
    ],
)
async def test_4xx_are_permanent_and_carry_status_and_body(status: int, kind: type) -> None:
    error = {"success": False, "error": {"code": status, "message": "nope"}}
    async with client_with(reply(status, error)) as client:
        with pytest.raises(kind) as caught:
            await client.put_settings("cust_1", "app_abc123", {"recording_enabled": False})
    assert isinstance(caught.value, PermanentError)
    assert caught.value.status == status
    assert caught.value.body == error
    assert "nope" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_5xx_and_429_are_retryable(status: int) -> None:
    async with client_with(reply(status, {"error": "x"}, {"Retry-After": "7"})) as client:
        with pytest.raises(ExotelUnavailable) as caught:
            await client.get_settings("cust_1", "app_abc123")
    assert isinstance(caught.value, RetryableError)
    assert caught.value.status == status
    assert caught.value.retry_after == 7.0


async def test_network_errors_and_timeouts_are_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler in (refuse, slow):
        async with client_with(handler) as client:
            with pytest.raises(ExotelUnavailable) as caught:
                await client.get_settings("cust_1", "app_abc123")
        assert caught.value.status is None


async def test_no_token_means_no_request() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    async with client_with(handler) as client:
        with pytest.raises(MissingToken):
            await client.put_settings("cust_1", "other_app", {"recording_enabled": True})
    assert calls == []


@pytest.mark.parametrize(
    "body",
    [b"<html>ok</html>", b'{"success": false}', b'{"success": true, "data": {"settings": 3}}'],
)
async def test_a_2xx_outside_the_envelope_is_unexpected(body: bytes) -> None:
    async with client_with(lambda request: httpx.Response(200, content=body)) as client:
        with pytest.raises(UnexpectedResponse):
            await client.get_settings("cust_1", "app_abc123")


async def test_unknown_fields_are_refused_before_sending() -> None:
    async with client_with(reply(200, SPEC_RESPONSE)) as client:
        with pytest.raises(ExotelBadRequest, match="colour"):
            await client.put_settings("cust_1", "app_abc123", {"colour": "red"})


async def test_redirects_are_not_followed_with_the_token() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/steal"})

    async with client_with(handler) as client:
        with pytest.raises(ExotelClientError):
            await client.get_settings("cust_1", "app_abc123")
    assert len(calls) == 1


async def test_errors_never_carry_the_token() -> None:
    async with client_with(reply(401, {"error": {"message": "invalid token"}})) as client:
        with pytest.raises(ExotelUnauthorized) as caught:
            await client.get_settings("cust_1", "app_abc123")
    assert TOKEN not in repr(caught.value) and TOKEN not in str(caught.value.body)


def test_retry_after_as_http_date() -> None:
    now = datetime(2024, 6, 15, 10, 30, tzinfo=UTC)
    response = httpx.Response(503, headers={"Retry-After": "Sat, 15 Jun 2024 10:30:12 GMT"})
    assert parse_retry_after(response, now=now) == 12.0
    assert parse_retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Response(503)) is None


async def test_in_flight_calls_spread_over_small_pools_and_none_waits_for_a_connection() -> None:
    # 8 calls at once with 8 connections in pools of 2: the least busy pool takes each call, so
    # all 8 are on the wire together (one round of the double's latency, not two or more).
    async with DoubleServer() as double:
        apps = [f"app_{i}" for i in range(8)]
        tokens = {f"cust_1/{app}": f"tok-{app}" for app in apps}
        for app in apps:
            double.state.add_app("cust_1", app, f"tok-{app}")
        # Long enough that a second round (>= 2 s) stands apart from one round plus the noise of
        # a busy machine (0.3 s seen in CI with a 300 ms latency).
        double.state.latency_ms = 1000.0
        secrets = SecretStore.from_mapping({"exotel_apps": tokens})
        async with ExotelClient(
            double.api_base_url, secrets, max_connections=8, pool_size=2
        ) as client:
            assert len(client._pools) == 4
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(client.put_settings("cust_1", app, {"recording_enabled": True}) for app in apps)
            )
            took = time.perf_counter() - started
            assert [a.app_id for a in answers] == apps
            assert all(pool.active == 0 for pool in client._pools)
    assert took < 1.9, f"some calls waited for a connection ({took:.2f} s)"


async def test_pools_are_sized_from_max_connections() -> None:
    async with ExotelClient(BASE, SECRETS, max_connections=64, pool_size=8) as client:
        assert len(client._pools) == 8
    async with ExotelClient(BASE, SECRETS, max_connections=5, pool_size=8) as client:
        assert len(client._pools) == 1
    # A given transport does its own pooling: one client over it.
    async with client_with(reply(200, SPEC_RESPONSE)) as client:
        assert len(client._pools) == 1
        await client.get_settings("cust_1", "app_abc123")
        assert client._pools[0].active == 0
