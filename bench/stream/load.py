"""Live audio streams at real-time pace, timed from each frame's slot to its record on Kafka.

Run as a child of ``bench/stream/path.py``: ``python -m bench.stream.load --target ingress|raw``.

- ``--target ingress``: ``--streams`` WebSockets to one ingress, each sending Exotel's frames:
  connected, start, then a media frame of 100 ms (3,200 bytes of 8 kHz 16-bit PCM, base64)
  every 100 ms on a fixed schedule for ``--seconds``, then stop. The schedule is open loop: a
  frame's latency is counted from its slot, so a stall in the ingress shows up, not hidden by a
  client that waits.
- ``--target raw``: the baseline. The same streams and slots, each slot producing the same
  CloudEvent the ingress would write (built with ``make_event``) with a raw aiokafka producer of
  the ingress's settings, one frame at a time per stream, as the ingress delivers them.

A reader in this process, positioned at the topic's end before anything is sent, takes each
media record off exotel.stream.audio and records ``now - slot``. A WebSocket the ingress
refuses, or closes before its stop, is counted (``refused``, ``cut``), not fatal: past the
target size that is one of the things that can break first. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import struct
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench.kafka_io import reader_at_end
from bench.results import median, percentile
from topics.catalog import STREAM_AUDIO
from topics.events import deterministic_id, make_event
from workers import json_codec
from workers.config import Settings
from workers.kafka import started_producer

FRAME_S = 0.1
SAMPLE_RATE = 8000
CHUNK_BYTES = 3200  # 100 ms of 8 kHz 16-bit mono: the size Exotel's docs ask for


def tone_chunk() -> str:
    """100 ms of a 440 Hz tone, base64: one chunk for every frame (the bench times transport)."""
    samples = (
        int(12000 * math.sin(2 * math.pi * 440 * n / SAMPLE_RATE)) for n in range(CHUNK_BYTES // 2)
    )
    return base64.b64encode(struct.pack(f"<{CHUNK_BYTES // 2}h", *samples)).decode()


class Clock:
    """Slots per (stream_sid, sequence_number), and the latencies the reader measured."""

    def __init__(self) -> None:
        self.slots: dict[tuple[str, int], float] = {}
        self.latencies: list[float] = []
        self.send_lag: list[float] = []
        self.sent = 0
        self.record_bytes = 0
        self.refused = 0  # WebSockets the ingress did not accept
        self.cut = 0  # WebSockets closed under a stream before its stop was sent


async def _pace(slot: float, clock: Clock) -> None:
    delay = slot - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    clock.send_lag.append(max(0.0, time.monotonic() - slot))


def _start_frame(sid: str, n: int) -> dict[str, Any]:
    return {
        "event": "start",
        "sequence_number": 1,
        "stream_sid": sid,
        "start": {
            "stream_sid": sid,
            "call_sid": f"call-{sid}",
            "account_sid": "bench",
            "from": "+919876543210",
            "to": "08047491899",
            "custom_parameters": {"stream": str(n)},
            "media_format": {"encoding": "base64", "sample_rate": "8000", "bit_rate": "128kbps"},
        },
    }


async def ingress_stream(
    session: aiohttp.ClientSession, url: str, sid: str, n: int, t0: float, frames: int, clock: Clock
) -> None:
    """One stream; a refused or cut WebSocket is counted in ``clock``, and the others go on."""
    try:
        ws = await session.ws_connect(url, max_msg_size=0, autoping=True)
    except (aiohttp.ClientError, OSError):
        clock.refused += 1
        return
    try:
        await _send_stream(ws, sid, n, t0, frames, clock)
    except (aiohttp.ClientError, ConnectionError):
        clock.cut += 1
    finally:
        await ws.close()


async def _send_stream(
    ws: aiohttp.ClientWebSocketResponse, sid: str, n: int, t0: float, frames: int, clock: Clock
) -> None:
    payload = tone_chunk()
    await ws.send_str('{"event":"connected"}')
    await ws.send_str(json_codec.dumps(_start_frame(sid, n)).decode())
    for k in range(frames):
        seq = k + 2
        slot = t0 + k * FRAME_S
        clock.slots[(sid, seq)] = slot
        await _pace(slot, clock)
        await ws.send_str(
            f'{{"event":"media","sequence_number":{seq},"stream_sid":"{sid}",'
            f'"media":{{"chunk":{k + 1},"timestamp":"{k * 100}","payload":"{payload}"}}}}'
        )
        clock.sent += 1
    stop = {
        "event": "stop",
        "sequence_number": frames + 2,
        "stream_sid": sid,
        "stop": {"call_sid": f"call-{sid}", "account_sid": "bench", "reason": "callended"},
    }
    await ws.send_str(json_codec.dumps(stop).decode())


def _media_data(sid: str, seq: int, k: int, payload: str, connection: str) -> dict[str, Any]:
    return {
        "stream_sid": sid,
        "customer_id": "bench",
        "app_id": "app",
        "connection_id": connection,
        "frame_index": seq,
        "event": "media",
        "sequence_number": seq,
        "received_at": "2024-06-15T10:30:00.120Z",
        "continuity": {"status": "ok", "expected": seq, "missing": 0},
        "media": {
            "chunk": k + 1,
            "timestamp_ms": k * 100,
            "track": None,
            "payload": payload,
            "size_bytes": CHUNK_BYTES,
        },
    }


async def raw_stream(
    producer: Any, topic: str, sid: str, t0: float, frames: int, clock: Clock
) -> None:
    payload = tone_chunk()
    connection = str(uuid.uuid4())
    key = sid.encode()
    for k in range(frames):
        seq = k + 2
        slot = t0 + k * FRAME_S
        clock.slots[(sid, seq)] = slot
        await _pace(slot, clock)
        event = make_event(
            STREAM_AUDIO,
            _media_data(sid, seq, k, payload, connection),
            source="/ingress/bench/app/stream",
            event_id=deterministic_id("stream", connection, str(seq)),
            time=datetime.now(UTC),
            customer_id="bench",
            app_id="app",
        )
        await producer.send_and_wait(topic, event.to_bytes(), key=key)
        clock.sent += 1


async def read(consumer: Any, clock: Clock, expected: int, deadline: float) -> None:
    seen = 0
    while seen < expected and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200, max_records=2000)
        now = time.monotonic()
        for records in batches.values():
            for record in records:
                data = json_codec.loads(record.value)["data"]
                if data["event"] != "media":
                    continue
                slot = clock.slots.get((data["stream_sid"], data["sequence_number"]))
                if slot is not None:
                    clock.latencies.append(now - slot)
                    clock.record_bytes += len(record.value)
                    seen += 1


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env()
    topic = settings.topic(STREAM_AUDIO)
    consumer = await reader_at_end(settings, topic.name, topic.partitions)
    clock = Clock()
    frames = int(args.seconds / FRAME_S)
    expected = frames * args.streams
    run = uuid.uuid4().hex[:6]
    sids = [f"bench-{run}-{i}" for i in range(args.streams)]
    async with contextlib.AsyncExitStack() as stack:
        # The client side is up before the clock starts: the producer has its metadata, the
        # session its connector; the WebSockets themselves are opened inside each stream.
        if args.target == "ingress":
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            )
        else:
            producer = await stack.enter_async_context(
                started_producer(settings, client_id="exopipe-bench-raw")
            )
            await producer.partitions_for(topic.name)
        # Streams start spread over one frame period, as calls do, not all on the same tick,
        # after time enough to open every WebSocket.
        t0 = time.monotonic() + 1.0 + 0.005 * args.streams
        starts = [t0 + FRAME_S * i / args.streams for i in range(args.streams)]
        reader = asyncio.create_task(read(consumer, clock, expected, t0 + args.seconds + 30))
        began = time.monotonic()
        try:
            if args.target == "ingress":
                streams = (
                    ingress_stream(session, args.url, sid, i, start, frames, clock)
                    for i, (sid, start) in enumerate(zip(sids, starts, strict=True))
                )
            else:
                streams = (
                    raw_stream(producer, topic.name, sid, start, frames, clock)
                    for sid, start in zip(sids, starts, strict=True)
                )
            await asyncio.gather(*streams)
            sending = time.monotonic() - began
            await reader
        finally:
            reader.cancel()
            await consumer.stop()
    lat = clock.latencies
    return {
        "target": args.target,
        "streams": args.streams,
        "seconds": args.seconds,
        "sent": clock.sent,
        "delivered": len(lat),
        "frames_per_s": clock.sent / sending if sending else 0.0,
        "p50_ms": median(lat) * 1000 if lat else float("nan"),
        "p99_ms": percentile(lat, 99) * 1000 if lat else float("nan"),
        "max_ms": max(lat) * 1000 if lat else float("nan"),
        "media_record_bytes": clock.record_bytes / len(lat) if lat else 0.0,
        "send_lag_p99_ms": percentile(clock.send_lag, 99) * 1000 if clock.send_lag else 0.0,
        "refused": clock.refused,
        "cut": clock.cut,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["ingress", "raw"], required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--url", help="the ingress's stream URL (with token), for --target ingress")
    result = asyncio.run(main(parser.parse_args()))
    sys.stdout.write(json_codec.dumps(result).decode() + "\n")
