"""The stream limits of the whole process: open streams, the handshake's rate limit, and the
frames a peer sends after the ingress closed its stream (read, dropped, counted in ``lost``)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from topics.catalog import STREAM_EVENT
from workers.exotel_double.payloads import incoming_call_payload
from workers.exotel_double.stream_frames import StreamIdentity, media_frame, start_frame
from workers.ingress import stream as stream_module
from workers.ingress.app import STREAMS

from .conftest import SECRET, eventually
from .test_stream import CHUNK, records

URL = f"/v1/c1/a1/stream?token={SECRET}"
WHO = StreamIdentity(stream_sid="S1", call_sid="C1", account_sid="c1")


async def refused(client, url: str) -> tuple[int, str | None]:
    with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
        await client.ws_connect(url)
    return handshake.value.status, handshake.value.headers.get("Retry-After")


async def closed_record(broker) -> dict:
    await eventually(
        lambda: any(r["data"]["event"] == "closed" for r in records(broker, STREAM_EVENT))
    )
    return records(broker, STREAM_EVENT)[-1]["data"]["closed"]


async def test_the_process_limit_refuses_one_stream_too_many_with_429(make_client, broker):
    env = {"EXOPIPE_INGRESS_STREAM_MAX_OPEN": "1", "EXOPIPE_INGRESS_STREAM_MAX_PER_TENANT": "5"}
    async with make_client(**env) as client:
        first = await client.ws_connect(URL)
        status = await refused(client, f"/v1/c1/a2/stream?token={SECRET}")
        body = await (await client.get(URL, headers=_UPGRADE)).json()
        await first.close()
        await eventually(lambda: client.app[STREAMS]._total == 0)
        again = await client.ws_connect(URL)  # the slot is free again
        await again.close()
        metrics = await (await client.get("/metrics")).text()
    assert status == (429, "5")
    assert body == {"error": "stream_capacity"}
    assert 'exopipe_ingress_rejected_total{reason="stream_capacity"} 2.0' in metrics
    assert 'exopipe_ingress_requests_total{kind="stream",status="429"} 2.0' in metrics


async def test_handshakes_share_the_tenants_rate_limit_with_its_webhooks(make_client, broker):
    env = {"EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "0.1", "EXOPIPE_INGRESS_RATE_LIMIT_BURST": "2"}
    async with make_client(**env) as client:
        first = await client.ws_connect(URL)
        popup = f"/v1/c1/a1/popup?token={SECRET}"
        webhook = await client.post(popup, json=incoming_call_payload())
        status = await refused(client, URL)
        limited = await client.post(popup, json=incoming_call_payload())
        limited_body = await limited.json()
        await first.close()
        metrics = await (await client.get("/metrics")).text()
    assert webhook.status == 200
    assert status[0] == 429 and 1 <= int(status[1] or 0) <= 10
    assert limited.status == 429 and limited_body == {"error": "rate_limited"}
    assert 'exopipe_ingress_rejected_total{reason="rate_limited"} 2.0' in metrics
    assert 'exopipe_ingress_requests_total{kind="stream",status="429"} 1.0' in metrics


async def test_frames_sent_after_the_ingress_closed_are_counted_as_lost(make_client, broker):
    async with make_client(EXOPIPE_INGRESS_STREAM_MAX_SESSION_S="0.3") as client:
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(start_frame(1, WHO, 8000)))
        await eventually(lambda: bool(client.app[STREAMS]._tasks))
        connection = next(iter(client.app[STREAMS]._tasks))
        await eventually(lambda: connection.ending is not None)  # 1008 sent, not read yet
        for n in range(5):  # Exotel has not seen the close: it goes on sending
            await ws.send_str(json.dumps(media_frame(n + 2, "S1", n + 1, 100 * n, CHUNK)))
        await asyncio.sleep(0.2)
        await ws.close()
        closed = await closed_record(broker)
        metrics = await (await client.get("/metrics")).text()
    assert (closed["reason"], closed["close_code"]) == ("session_too_long", 1008)
    assert closed["frames"] == 6 and closed["after_close"] == 5 and closed["lost"] == 5
    assert 'exopipe_ingress_stream_lost_total{record="frame"} 5.0' in metrics
    assert len(records(broker, STREAM_EVENT)) == 2  # start and closed: nothing forwarded late
    assert records(broker, STREAM_EVENT)[-1]["data"]["frame_index"] == 6  # after those 5


async def test_counting_after_the_close_stops_past_its_byte_bound(make_client, broker):
    big = "x" * 200_000  # 6 of them pass the 1 MiB bound
    async with make_client(EXOPIPE_INGRESS_STREAM_MAX_SESSION_S="0.3") as client:
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(start_frame(1, WHO, 8000)))
        await eventually(lambda: bool(client.app[STREAMS]._tasks))
        connection = next(iter(client.app[STREAMS]._tasks))
        await eventually(lambda: connection.ending is not None)
        with contextlib.suppress(ConnectionError):
            for _ in range(10):
                await ws.send_str(big)
        closed = await closed_record(broker)
    assert closed["after_close"] == 6 and closed["lost"] == 6  # the one past the bound counted


async def test_counting_after_the_close_stops_at_the_close_timeout(
    make_client, broker, monkeypatch
):
    monkeypatch.setattr(stream_module, "_CLOSE_WAIT_S", 0.5)
    async with make_client(EXOPIPE_INGRESS_STREAM_IDLE_TIMEOUT_S="0.2") as client:
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(start_frame(1, WHO, 8000)))
        await eventually(lambda: bool(client.app[STREAMS]._tasks))
        connection = next(iter(client.app[STREAMS]._tasks))
        await eventually(lambda: connection.ending is not None)
        loop = asyncio.get_running_loop()
        sent, began = 0, loop.time()
        with contextlib.suppress(ConnectionError):
            while not ended(broker) and loop.time() - began < 3:  # never sends its close frame
                await ws.send_str(json.dumps(media_frame(sent + 2, "S1", sent + 1, 0, CHUNK)))
                sent += 1
                await asyncio.sleep(0.02)
        closed = await closed_record(broker)
    assert loop.time() - began < 2  # the closed record waited 0.5 s, not for the peer
    assert (closed["reason"], closed["close_code"]) == ("idle_timeout", 4408)
    assert 0 < closed["after_close"] <= sent and closed["lost"] == closed["after_close"]


def ended(broker) -> bool:
    return any(r["data"]["event"] == "closed" for r in records(broker, STREAM_EVENT))


_UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
