"""Live audio streams through the in-process ingress onto the real broker, read back with a plain
consumer: a call's frames in order on both topics, and a clear outcome for each bad input."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from topics.catalog import STREAM_AUDIO, STREAM_EVENT, WEBHOOK_REJECTED
from topics.events import CloudEvent
from workers.exotel_double.stream_frames import (
    StreamIdentity,
    connected_frame,
    dtmf_frame,
    mark_frame,
    media_frame,
    start_frame,
    stop_frame,
)

from ..kafka_io import collect
from .conftest import SECRET
from .test_ingress_kafka import wait_ready

URL = f"/v1/cust_it/app_it/stream?token={SECRET}"


def chunk(n: int) -> bytes:
    """3,200 bytes of audio (100 ms at 8 kHz) that differ from one chunk to the next."""
    return bytes((n * 7 + i) % 256 for i in range(3200))


def who(unique: Any) -> StreamIdentity:
    return StreamIdentity(stream_sid=unique("S"), call_sid=unique("C"), account_sid="cust_it")


async def send(client, frames: list[Any], url: str = URL) -> int | None:
    """Send the frames (dicts as JSON text, str as is) and wait for the ingress to close."""
    ws = await client.ws_connect(url)
    for frame in frames:
        await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
    async with asyncio.timeout(10):
        await ws.receive()
    await ws.close()
    return ws.close_code


async def read_stream(settings, spec, stream_sid: str, count: int) -> list[CloudEvent]:
    found = await collect(
        settings, spec, count=count, where=lambda key, _: key == stream_sid.encode()
    )
    return [event for _, event in found]


async def test_a_call_is_on_kafka_in_frame_order_with_closed_last(ingress_client, unique):
    call = who(unique)
    sid = call.stream_sid
    frames = [connected_frame(), start_frame(1, call, 8000)]
    frames += [media_frame(n + 2, sid, n + 1, 100 * n, chunk(n)) for n in range(20)]
    frames += [dtmf_frame(22, sid, "7", 200), mark_frame(23, sid, "m1"), stop_frame(24, call, "x")]
    async with ingress_client() as (client, settings):
        await wait_ready(client)
        code = await send(client, frames)
        audio = await read_stream(settings, STREAM_AUDIO, sid, 26)
        lifecycle = await read_stream(settings, STREAM_EVENT, sid, 5)
    assert code == 1000
    kinds = [e.data["event"] for e in audio]
    assert kinds == ["connected", "start"] + ["media"] * 20 + ["dtmf", "mark", "stop", "closed"]
    assert [e.data["frame_index"] for e in audio] == list(range(26))
    sent = [base64.b64decode(e.data["media"]["payload"]) for e in audio if "media" in e.data]
    assert sent == [chunk(n) for n in range(20)]
    assert [e.data["event"] for e in lifecycle] == ["start", "dtmf", "mark", "stop", "closed"]
    assert [e.id for e in lifecycle] == [e.id for e in audio if e.data["event"] != "media"][1:]
    start = audio[1].data["start"]
    assert start["call_sid"] == call.call_sid and start["media_format"]["sample_rate"] == 8000
    closed = audio[-1].data["closed"]
    assert closed == lifecycle[-1].data["closed"]
    assert (closed["reason"], closed["frames"], closed["media_frames"]) == ("stop_received", 25, 20)
    assert closed["media_bytes"] == 20 * 3200
    assert closed["gaps"] == closed["rejected"] == closed["lost"] == 0
    assert {e.customerid for e in audio} == {"cust_it"} and {e.appid for e in audio} == {"app_it"}


async def test_bad_auth_is_refused_before_the_upgrade(ingress_client):
    async with ingress_client() as (client, settings):
        await wait_ready(client)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/v1/cust_it/app_it/stream?token=wrong")
        plain = await client.get("/v1/cust_it/app_it/stream?token=wrong")
        body = await plain.json()
        rejected = await collect(settings, WEBHOOK_REJECTED, count=1, wait_seconds=3)
    assert refused.value.status == 401
    assert (plain.status, body) == (401, {"error": "unauthorized"})
    assert plain.headers["WWW-Authenticate"] == 'Basic realm="exopipe"'
    assert rejected == []  # a stranger leaves no record


async def test_an_oversize_frame_closes_the_stream_with_1009(ingress_client, unique):
    call = who(unique)
    big = media_frame(2, call.stream_sid, 1, 0, bytes(8000))
    async with ingress_client(EXOPIPE_INGRESS_STREAM_MAX_FRAME_BYTES="4096") as (client, settings):
        await wait_ready(client)
        code = await send(client, [start_frame(1, call, 8000), big])
        audio = await read_stream(settings, STREAM_AUDIO, call.stream_sid, 2)
        rejected = await collect(settings, WEBHOOK_REJECTED, count=1)
    assert code == 1009
    assert [e.data["event"] for e in audio] == ["start", "closed"]
    closed = audio[-1].data["closed"]
    assert (closed["reason"], closed["close_code"], closed["rejected"]) == (
        "frame_too_large",
        1009,
        1,
    )
    [(key, record)] = rejected
    assert key == call.call_sid.encode() and record.data["reason"] == "frame_too_large"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"event": "media", "sequence_number": 2, ', "invalid_json"),
        ({"event": "clear", "sequence_number": 2}, "unknown_event"),
    ],
    ids=["bad-json", "unknown-event"],
)
async def test_a_bad_frame_is_recorded_and_the_stream_goes_on(ingress_client, unique, bad, reason):
    call = who(unique)
    sid = call.stream_sid
    frames = [start_frame(1, call, 8000), bad]
    frames += [media_frame(n + 3, sid, n + 1, 100 * n, chunk(n)) for n in range(3)]
    async with ingress_client() as (client, settings):
        await wait_ready(client)
        code = await send(client, [*frames, stop_frame(6, call, "x")])
        audio = await read_stream(settings, STREAM_AUDIO, sid, 6)
        rejected = await collect(settings, WEBHOOK_REJECTED, count=1)
    assert code == 1000
    assert [e.data["event"] for e in audio] == [
        "start",
        "media",
        "media",
        "media",
        "stop",
        "closed",
    ]
    assert [e.data["frame_index"] for e in audio] == [0, 2, 3, 4, 5, 6]
    # The refused frame was sequence number 2: the next forwarded one shows the hole it left.
    assert audio[1].data["continuity"] == {"status": "gap", "expected": 2, "missing": 1}
    closed = audio[-1].data["closed"]
    assert (closed["frames"], closed["rejected"], closed["media_frames"]) == (6, 1, 3)
    [(_, record)] = rejected
    assert (record.data["reason"], record.data["kind"], record.data["stage"]) == (
        reason, "stream", "ingress")  # fmt: skip
    assert record.data["body"] == (bad if isinstance(bad, str) else json.dumps(bad))
    # Where the refused frame was: its stream, its connection, its place on it.
    assert record.data["stream"] == {
        "stream_sid": sid,
        "connection_id": audio[0].data["connection_id"],
        "frame_index": 1,
    }
    assert record.data["url"].endswith("token=%5Bredacted%5D") and SECRET not in str(record.data)


async def test_a_gap_in_sequence_numbers_is_marked_and_counted(ingress_client, unique):
    call = who(unique)
    sid = call.stream_sid
    numbers = [2, 3, 7, 8]  # 4, 5 and 6 never come
    frames = [start_frame(1, call, 8000)]
    frames += [media_frame(n, sid, n - 1, 100 * n, chunk(n)) for n in numbers]
    async with ingress_client() as (client, settings):
        await wait_ready(client)
        await send(client, [*frames, stop_frame(9, call, "x")])
        audio = await read_stream(settings, STREAM_AUDIO, sid, 7)
    marks = [e.data["continuity"] for e in audio[1:5]]
    assert [m["status"] for m in marks] == ["ok", "ok", "gap", "ok"]
    assert marks[2] == {"status": "gap", "expected": 4, "missing": 3}
    closed = audio[-1].data["closed"]
    assert (closed["gaps"], closed["missing"], closed["media_frames"]) == (1, 3, 4)


async def test_a_customer_over_its_stream_limit_gets_429(ingress_client, unique):
    call = who(unique)
    async with ingress_client(EXOPIPE_INGRESS_STREAM_MAX_PER_TENANT="2") as (client, settings):
        await wait_ready(client)
        open_streams = [await client.ws_connect(URL) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/v1/cust_it/another_app/stream?token=" + SECRET)
        await open_streams[0].send_str(json.dumps(start_frame(1, call, 8000)))
        for ws in open_streams:
            await ws.close()
        audio = await read_stream(settings, STREAM_AUDIO, call.stream_sid, 2)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "5"
    closed = audio[-1].data["closed"]
    assert (closed["reason"], closed["close_code"]) == ("client_closed", 1000)


async def test_the_process_stream_limit_and_the_rate_limit_answer_429(ingress_client):
    env = {
        "EXOPIPE_INGRESS_STREAM_MAX_OPEN": "1",
        "EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "0.1",
        "EXOPIPE_INGRESS_RATE_LIMIT_BURST": "2",
    }
    refused = []
    async with ingress_client(**env) as (client, _):
        await wait_ready(client)
        first = await client.ws_connect(URL)
        for _ in range(2):  # over the process's limit, then over the tenant's rate
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await client.ws_connect("/v1/cust_it/another_app/stream?token=" + SECRET)
            refused.append(handshake.value)
        await first.close()
        metrics = await (await client.get("/metrics")).text()
    assert [r.status for r in refused] == [429, 429]
    assert refused[0].headers["Retry-After"] == "5" and int(refused[1].headers["Retry-After"]) >= 1
    assert 'exopipe_ingress_rejected_total{reason="stream_capacity"} 1.0' in metrics
    assert 'exopipe_ingress_rejected_total{reason="rate_limited"} 1.0' in metrics


async def test_frames_after_the_ingress_closed_are_counted_on_kafka(ingress_client, unique):
    call = who(unique)
    async with ingress_client(EXOPIPE_INGRESS_STREAM_MAX_SESSION_S="1") as (client, settings):
        await wait_ready(client)
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(start_frame(1, call, 8000)))
        await asyncio.sleep(1.5)  # the ingress has sent its 1008; the client has not read it
        for n in range(4):
            frame = media_frame(n + 2, call.stream_sid, n + 1, 100 * n, chunk(n))
            await ws.send_str(json.dumps(frame))
        await asyncio.sleep(0.2)
        await ws.close()
        audio = await read_stream(settings, STREAM_AUDIO, call.stream_sid, 2)
    assert [e.data["event"] for e in audio] == ["start", "closed"]
    closed = audio[-1].data["closed"]
    assert (closed["reason"], closed["close_code"]) == ("session_too_long", 1008)
    assert (closed["frames"], closed["after_close"], closed["lost"]) == (5, 4, 4)
