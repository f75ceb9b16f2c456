"""The stream endpoint under aiohttp's test client on the fake broker: the handshake's refusals,
records in frame order, bad frames recorded, close codes and the closed record's counters."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from topics.catalog import STREAM_AUDIO, STREAM_EVENT, WEBHOOK_REJECTED
from workers.exotel_double.stream_frames import (
    StreamIdentity,
    connected_frame,
    dtmf_frame,
    media_frame,
    start_frame,
    stop_frame,
)
from workers.ingress.app import STREAMS

from .conftest import SECRET, eventually

URL = f"/v1/c1/a1/stream?token={SECRET}"
WHO = StreamIdentity(stream_sid="S1", call_sid="C1", account_sid="c1")
CHUNK = bytes(range(160)) * 20  # 3,200 bytes: 100 ms at 8 kHz


def records(broker, spec) -> list[dict[str, Any]]:
    return [json.loads(s.value) for s in broker.sent if s.topic == spec.name]


def ended(broker) -> bool:
    """The stream's closed record is on the event topic."""
    lifecycle = records(broker, STREAM_EVENT)
    return bool(lifecycle) and lifecycle[-1]["data"]["event"] == "closed"


def call_frames(media: int = 3) -> list[dict[str, Any]]:
    """connected, start (1), media (2..), dtmf, stop: a short call as Exotel streams it."""
    frames = [connected_frame(), start_frame(1, WHO, 8000)]
    frames += [media_frame(2 + n, "S1", n + 1, 100 * n, CHUNK) for n in range(media)]
    frames += [dtmf_frame(media + 2, "S1", "5", 200), stop_frame(media + 3, WHO, "callended")]
    return frames


async def stream(client, frames: list[Any], url: str = URL) -> aiohttp.ClientWebSocketResponse:
    """Send ``frames`` (dicts as JSON text, bytes as binary) and wait for the ingress's close."""
    ws = await client.ws_connect(url)
    for frame in frames:
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        elif isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_str(json.dumps(frame))
    async with asyncio.timeout(5):
        await ws.receive()  # the ingress's close frame
    await ws.close()
    return ws


async def test_a_call_lands_in_frame_order_with_closed_last_on_both_topics(make_client, broker):
    async with make_client() as client:
        ws = await stream(client, call_frames())
        await eventually(lambda: len(records(broker, STREAM_EVENT)) == 4)
    assert ws.close_code == 1000
    audio = records(broker, STREAM_AUDIO)
    events = [r["data"]["event"] for r in audio]
    assert events == ["connected", "start", "media", "media", "media", "dtmf", "stop", "closed"]
    assert [r["data"]["frame_index"] for r in audio] == list(range(8))
    assert {s.key for s in broker.sent} == {b"S1"}  # connected waited for start's stream_sid
    assert all(r["data"]["continuity"]["status"] in ("ok", "unchecked") for r in audio)
    media = audio[2]["data"]["media"]
    assert base64.b64decode(media["payload"]) == CHUNK and media["size_bytes"] == len(CHUNK)
    assert media["timestamp_ms"] == 0 and media["chunk"] == 1
    lifecycle = records(broker, STREAM_EVENT)
    assert [r["data"]["event"] for r in lifecycle] == ["start", "dtmf", "stop", "closed"]
    assert lifecycle[0]["id"] == audio[1]["id"]  # one id per frame, on both topics
    closed = audio[-1]["data"]["closed"]
    assert closed == lifecycle[-1]["data"]["closed"]
    assert (closed["reason"], closed["close_code"]) == ("stop_received", 1000)
    assert closed["frames"] == 7 and closed["media_frames"] == 3
    assert closed["media_bytes"] == 3 * len(CHUNK)
    assert closed["rejected"] == closed["lost"] == closed["gaps"] == 0
    connection = audio[0]["data"]["connection_id"]
    assert all(r["data"]["connection_id"] == connection for r in audio)
    assert audio[0]["source"] == "/ingress/c1/a1/stream"


async def test_handshake_refusals_come_before_the_upgrade(make_client, broker):
    basic = "Basic " + base64.b64encode(f"c1:{SECRET}".encode()).decode()
    refused = []
    async with make_client(EXOPIPE_INGRESS_STREAM_MAX_PER_TENANT="1") as client:
        plain = await client.get(URL)
        plain_body = await plain.json()
        first = await client.ws_connect("/v1/c1/a1/stream", headers={"Authorization": basic})
        # Wrong secret; then over the limit, for the same app and for another of the customer.
        for url in ("/v1/c1/a1/stream?token=wrong", URL, f"/v1/c1/a2/stream?token={SECRET}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await client.ws_connect(url)
            refused.append((handshake.value.status, handshake.value.headers.get("Retry-After")))
        await first.close()
        await eventually(lambda: not client.app[STREAMS]._open)
        again = await client.ws_connect(URL)  # the slot is free again
        await again.close()
        metrics = await (await client.get("/metrics")).text()
    assert refused == [(401, None), (429, "5"), (429, "5")]
    assert plain.status == 426 and plain.headers["Upgrade"] == "websocket"
    assert plain_body["error"] == "websocket_required"
    rejected = records(broker, WEBHOOK_REJECTED)
    assert [r["data"]["reason"] for r in rejected] == ["websocket_required"]  # 401, 429: none
    assert rejected[0]["data"]["status"] == 426 and SECRET not in json.dumps(rejected[0])
    assert 'exopipe_ingress_rejected_total{reason="too_many_streams"} 2.0' in metrics
    assert 'exopipe_ingress_requests_total{kind="stream",status="401"} 1.0' in metrics
    assert 'exopipe_ingress_requests_total{kind="stream",status="101"} 2.0' in metrics


async def test_bad_frames_are_recorded_and_the_stream_goes_on(make_client, broker):
    bad = [
        b"\x00\x01",  # binary
        "{not json",
        {"event": "clear", "stream_sid": "S1"},
        media_frame(3, "S1", 2, 100, CHUNK) | {"media": {"payload": "%%%"}},
        media_frame(3, "OTHER", 2, 100, CHUNK),
    ]
    frames = [connected_frame(), start_frame(1, WHO, 8000), media_frame(2, "S1", 1, 0, CHUNK)]
    frames += bad + [media_frame(3, "S1", 2, 100, CHUNK), stop_frame(4, WHO, "callended")]
    async with make_client() as client:
        ws = await stream(client, frames)
        await eventually(lambda: ended(broker))
        metrics = await (await client.get("/metrics")).text()
    assert ws.close_code == 1000
    audio = [r["data"] for r in records(broker, STREAM_AUDIO)]
    assert [a["event"] for a in audio] == ["connected", "start", "media", "media", "stop", "closed"]
    assert [a["frame_index"] for a in audio] == [0, 1, 2, 8, 9, 10]  # bad frames keep their place
    assert [a["continuity"]["status"] for a in audio[2:5]] == ["ok", "ok", "ok"]
    rejected = [r["data"] for r in records(broker, WEBHOOK_REJECTED)]
    reasons = ["binary_frame", "invalid_json", "unknown_event", "invalid_frame", "invalid_frame"]
    assert [r["reason"] for r in rejected] == reasons
    assert {r["kind"] for r in rejected} == {"stream"} and {r["status"] for r in rejected} == {None}
    assert rejected[1]["body"] == "{not json" and rejected[2]["errors"][0].startswith("event:")
    assert rejected[3]["errors"] == ["media.payload: not base64 (standard alphabet, padded)"]
    assert rejected[4]["errors"][0].startswith("stream_sid:")
    assert {r["call_sid"] for r in rejected} == {"C1"}  # keyed by the call once start told it
    assert len({r["id"] for r in records(broker, WEBHOOK_REJECTED)}) == 5  # one id per frame
    closed = audio[-1]["closed"]
    assert (closed["frames"], closed["rejected"], closed["lost"]) == (10, 5, 0)
    assert 'exopipe_ingress_stream_rejected_total{reason="invalid_frame"} 2.0' in metrics
    assert 'exopipe_ingress_stream_frames_total{event="media"} 2.0' in metrics


async def test_gaps_duplicates_and_late_frames_are_marked_and_counted(make_client, broker):
    numbers = [2, 3, 6, 4, 4, 7]
    frames = [start_frame(1, WHO, 8000)]
    frames += [media_frame(n, "S1", n - 1, 100 * n, CHUNK) for n in numbers]
    async with make_client() as client:
        await stream(client, [*frames, stop_frame(8, WHO, "callended")])
        await eventually(lambda: len(records(broker, STREAM_EVENT)) == 3)
        metrics = await (await client.get("/metrics")).text()
    audio = [r["data"] for r in records(broker, STREAM_AUDIO)]
    marks = [(a["continuity"]["status"], a["continuity"]["missing"]) for a in audio[1:7]]
    assert marks == [("ok", 0), ("ok", 0), ("gap", 2), ("out_of_order", 0), ("duplicate", 0),
                     ("ok", 0)]  # fmt: skip
    assert len(audio) == 9  # start, six media (none dropped), stop, closed
    closed = audio[-1]["closed"]
    assert (closed["gaps"], closed["missing"], closed["duplicates"], closed["out_of_order"]) == (
        1, 2, 1, 1)  # fmt: skip
    assert 'exopipe_ingress_stream_continuity_total{status="gap"} 1.0' in metrics
    assert "exopipe_ingress_stream_missing_total 2.0" in metrics


async def test_an_oversize_frame_closes_with_1009(make_client, broker):
    big = media_frame(2, "S1", 1, 0, bytes(4000))
    async with make_client(EXOPIPE_INGRESS_STREAM_MAX_FRAME_BYTES="2048") as client:
        ws = await stream(client, [start_frame(1, WHO, 8000), big])
        await eventually(lambda: len(records(broker, STREAM_EVENT)) == 2)
    assert ws.close_code == 1009
    closed = records(broker, STREAM_AUDIO)[-1]["data"]["closed"]
    assert (closed["reason"], closed["close_code"], closed["rejected"]) == (
        "frame_too_large",
        1009,
        1,
    )
    rejected = records(broker, WEBHOOK_REJECTED)[0]["data"]
    assert rejected["reason"] == "frame_too_large" and rejected["body_size"] > 2048


@pytest.mark.parametrize(
    ("env", "reason", "code"),
    [
        ({"EXOPIPE_INGRESS_STREAM_IDLE_TIMEOUT_S": "0.2"}, "idle_timeout", 4408),
        ({"EXOPIPE_INGRESS_STREAM_MAX_SESSION_S": "0.3"}, "session_too_long", 1008),
    ],
)
async def test_idle_and_overlong_streams_are_closed(make_client, broker, env, reason, code):
    async with make_client(**env) as client:
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(start_frame(1, WHO, 8000)))
        for n in range(20):  # a frame every 0.1 s: never idle for 0.2 s
            if ws.closed or reason == "idle_timeout":
                break
            await ws.send_str(json.dumps(media_frame(n + 2, "S1", n + 1, 100 * n, CHUNK)))
            await asyncio.sleep(0.1)
        async with asyncio.timeout(5):
            await ws.receive()
        await eventually(lambda: len(records(broker, STREAM_EVENT)) == 2)
    assert ws.close_code == code
    closed = records(broker, STREAM_EVENT)[-1]["data"]["closed"]
    assert (closed["reason"], closed["close_code"]) == (reason, code)


async def test_time_spent_delivering_a_frame_is_not_idle(make_client, broker):
    # Kafka takes a full second over the first record (then the spool has it): longer than the
    # idle timeout, but the stream was not idle, the ingress was busy with its frame.
    broker.room = asyncio.Event()
    env = {"EXOPIPE_INGRESS_STREAM_IDLE_TIMEOUT_S": "0.3", "EXOPIPE_INGRESS_PRODUCE_TIMEOUT_S": "1"}
    async with make_client(**env) as client:
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(start_frame(1, WHO, 8000)))
        for n in range(3):
            await ws.send_str(json.dumps(media_frame(n + 2, "S1", n + 1, 100 * n, CHUNK)))
        await asyncio.sleep(1.2)
        await ws.send_str(json.dumps(stop_frame(5, WHO, "callended")))
        async with asyncio.timeout(5):
            await ws.receive()
    assert ws.close_code == 1000


async def test_a_client_close_without_stop_still_ends_with_closed(make_client, broker):
    async with make_client() as client:
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(connected_frame()))
        await ws.close(code=4000)
        await eventually(lambda: len(records(broker, STREAM_AUDIO)) == 2)
    audio = [r["data"] for r in records(broker, STREAM_AUDIO)]
    assert [a["event"] for a in audio] == ["connected", "closed"]
    assert audio[0]["stream_sid"] == audio[0]["connection_id"]  # no start ever came
    assert (audio[1]["closed"]["reason"], audio[1]["closed"]["close_code"]) == (
        "client_closed", 4000)  # fmt: skip


async def test_a_full_spool_closes_with_1013_and_counts_the_loss(make_client, broker, tmp_path):
    broker.reachable = False  # no producer: every record goes to the spool
    async with make_client(EXOPIPE_INGRESS_SPOOL_MAX_BYTES="20000") as client:
        frames = [start_frame(1, WHO, 8000)]
        frames += [media_frame(n + 2, "S1", n + 1, 100 * n, CHUNK) for n in range(20)]
        ws = await client.ws_connect(URL)
        for frame in frames:
            if ws.closed:
                break
            await ws.send_str(json.dumps(frame))
        async with asyncio.timeout(5):
            await ws.receive()
        metrics = ""
        while "exopipe_ingress_streams_closed_total{" not in metrics:
            metrics = await (await client.get("/metrics")).text()
    assert ws.close_code == 1013
    assert 'exopipe_ingress_streams_closed_total{reason="spool_full"} 1.0' in metrics
    assert 'exopipe_ingress_stream_lost_total{record="closed"}' not in metrics
    # The closed record passed the full spool's bound by its headroom: it tells the loss.
    files = sorted(tmp_path.glob("spool/*.rec"))
    spooled = [json.loads(f.read_bytes().partition(b"\n")[2]) for f in files]
    closed = [e["data"]["closed"] for e in spooled if e["data"].get("event") == "closed"]
    assert len(closed) == 2  # audio and event topics
    assert closed[0]["reason"] == "spool_full" and closed[0]["close_code"] == 1013
    # The refused frame, and those sent before the client saw the close (read and dropped).
    assert closed[0]["lost"] == 1 + closed[0]["after_close"]
    lost = float(closed[0]["lost"])
    assert f'exopipe_ingress_stream_lost_total{{record="frame"}} {lost}' in metrics
    kept = [e for e in spooled if e["type"] == STREAM_AUDIO.event_type][:-1]  # closed aside
    assert closed[0]["frames"] == len(kept) + closed[0]["lost"]


async def test_shutdown_closes_open_streams_with_1001_and_their_closed_record(make_client, broker):
    async with make_client() as client:
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(start_frame(1, WHO, 8000)))
        await eventually(lambda: len(records(broker, STREAM_AUDIO)) == 1)
        await client.app.shutdown()
        async with asyncio.timeout(5):
            await ws.receive()
        await eventually(lambda: len(records(broker, STREAM_EVENT)) == 2)
    assert ws.close_code == 1001
    closed = records(broker, STREAM_EVENT)[-1]["data"]["closed"]
    assert (closed["reason"], closed["close_code"], closed["frames"]) == ("shutdown", 1001, 1)


async def test_frames_stay_in_order_through_a_slow_kafka_and_the_spool(
    make_client, broker, tmp_path
):
    broker.auto_ack = False  # Kafka takes the first record and does not acknowledge it in time
    async with make_client() as client:
        ws = await client.ws_connect(URL)
        for frame in call_frames(media=6):
            await ws.send_str(json.dumps(frame))
        await eventually(lambda: len(list((tmp_path / "spool").glob("*.rec"))) >= 5)
        broker.auto_ack = True
        for sent in broker.sent:  # the late acknowledgement comes after all
            if not sent.ack.done():
                sent.ack.set_result("ok")
        async with asyncio.timeout(5):
            await ws.receive()
        await eventually(lambda: len(records(broker, STREAM_EVENT)) == 4)
        await eventually(lambda: not list((tmp_path / "spool").glob("*.rec")))
    audio = [r["data"]["frame_index"] for r in records(broker, STREAM_AUDIO)]
    assert audio == list(range(11))  # connected .. closed, each once, in frame order


async def test_a_dropped_link_ends_as_client_closed_1006(make_client, broker):
    """The TCP connection goes without a close frame (a network drop, a killed sender)."""
    async with make_client() as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
        upgrade = "Upgrade: websocket\r\nConnection: Upgrade"
        writer.write(f"GET {URL} HTTP/1.1\r\nHost: x\r\n{upgrade}\r\n{key}\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        text = json.dumps(start_frame(1, WHO, 8000)).encode()
        # One text frame, masked with a zero key (the mask is required, its value is not).
        header = bytes([0x81, 0x80 | 126]) + len(text).to_bytes(2, "big") + bytes(4)
        writer.write(header + text)
        await writer.drain()
        await eventually(lambda: len(records(broker, STREAM_AUDIO)) == 1)
        writer.transport.abort()
        await eventually(lambda: ended(broker))
    closed = records(broker, STREAM_EVENT)[-1]["data"]["closed"]
    assert (closed["reason"], closed["close_code"], closed["frames"]) == ("client_closed", 1006, 1)


async def test_a_sender_outside_the_allowlist_gets_403_before_the_upgrade(make_client, broker):
    async with make_client(EXOPIPE_INGRESS_ALLOWED_CIDRS="10.0.0.0/8") as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(URL)
    assert refused.value.status == 403 and broker.sent == []
