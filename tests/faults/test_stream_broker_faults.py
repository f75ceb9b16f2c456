"""Kafka killed (SIGKILL) in the middle of a live audio stream sent at real-time pace (a 100 ms
chunk every 100 ms) to a real ``exopipe ingress`` process.

With room in the spool, the stream is not disturbed: the ingress spools its frames, nothing is
lost, and once the broker is back every frame is on Kafka in frame order, closed last (copies
after the kill are allowed and counted: at least once). With a spool too small for the outage,
the ingress closes the stream with 1013 and counts the loss (metrics, closed.lost), and what it
had accepted before is on Kafka in order once the broker is back.

The broker is a private one (other ports, another home), never the shared stack's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

from tests.integration.ingress import test_spool_restart as spool_suite
from tests.integration.ingress.conftest import SECRET
from tests.integration.ingress.test_spool_restart import (
    IngressProcess,
    private_ingress_env,
    wait_until_empty,
)
from tests.integration.kafka_io import collect
from topics.catalog import STREAM_AUDIO
from topics.events import CloudEvent
from workers.config import Settings
from workers.exotel_double.stream_frames import (
    StreamIdentity,
    media_frame,
    start_frame,
    stop_frame,
)
from workers.kafka import admin_client
from workers.localstack.manager import LocalStack
from workers.topic_admin import apply_catalog

private_kafka = spool_suite.private_kafka  # a Kafka of this module's own

PRODUCE_BOUND_S = 1.0
FRAME_EVERY_S = 0.1
DOWN_S = 6.0


def chunk(n: int) -> bytes:
    return bytes((n * 13 + i) % 256 for i in range(3200))


def new_call() -> StreamIdentity:
    run = uuid.uuid4().hex[:8]
    return StreamIdentity(stream_sid=f"S-{run}", call_sid=f"C-{run}", account_sid="cust_it")


@dataclass
class PacedStream:
    """start, then media at real-time pace until told to stop, then stop; what came back.

    ``audio(n)`` is the n-th media frame's payload, asked for in order from 0.
    """

    url: str
    who: StreamIdentity = field(default_factory=new_call)
    audio: Callable[[int], bytes] = chunk
    sent_media: int = 0
    close_code: int | None = None
    finish: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Send while a reader waits for the ingress's close, as a real client does."""
        async with session.ws_connect(self.url) as ws:
            reader = asyncio.ensure_future(self._read_close(ws))
            try:
                await self._send(ws, reader)
                async with asyncio.timeout(60):  # the ingress catches up, then closes
                    self.close_code = await reader
            finally:
                reader.cancel()

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, reader: asyncio.Future) -> None:
        sid = self.who.stream_sid
        with contextlib.suppress(ConnectionError):  # the ingress closed the stream
            await ws.send_str(json.dumps(start_frame(1, self.who, 8000)))
            next_at = time.monotonic()
            while not self.finish.is_set() and not reader.done():
                n = self.sent_media
                frame = media_frame(n + 2, sid, n + 1, 100 * n, self.audio(n))
                await ws.send_str(json.dumps(frame))
                self.sent_media += 1
                next_at += FRAME_EVERY_S
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if not reader.done():
                await ws.send_str(json.dumps(stop_frame(self.sent_media + 2, self.who, "x")))

    @staticmethod
    async def _read_close(ws: aiohttp.ClientWebSocketResponse) -> int | None:
        while True:
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.CLOSE:
                return int(message.data)
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code


async def start_ingress(
    kafka: LocalStack, tmp_path: Path, **env: str
) -> tuple[Settings, IngressProcess]:
    variables = private_ingress_env(kafka, tmp_path, produce_timeout_s=PRODUCE_BOUND_S)
    settings = variables.with_vars(**env).settings
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    ingress = IngressProcess(variables.with_vars(**env), tmp_path / "ingress.log")
    try:
        await asyncio.to_thread(ingress.start, "/readyz")
    except BaseException:
        ingress.kill()
        raise
    return settings, ingress


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def stream_through_an_outage(
    kafka: LocalStack, ingress: IngressProcess, *, stream_after_s: float
) -> tuple[PacedStream, str]:
    """A paced stream; Kafka killed 1.5 s in and started again after DOWN_S; the stream goes on
    ``stream_after_s`` more. Returns the stream and the ingress's metrics at its end."""
    url = f"ws://127.0.0.1:{ingress.port}/v1/cust_it/app_it/stream?token={SECRET}"
    stream = PacedStream(url)
    async with aiohttp.ClientSession() as session:
        running = asyncio.ensure_future(stream.run(session))
        try:
            await asyncio.sleep(1.5)
            kafka.stop_service("kafka", signal.SIGKILL)
            await asyncio.sleep(DOWN_S)
        finally:
            await asyncio.to_thread(kafka.start_service, "kafka")
        await asyncio.sleep(stream_after_s)
        stream.finish.set()
        await running
    async with httpx.AsyncClient(base_url=ingress.base) as client:
        for _ in range(100):  # the closed record is written after the close
            metrics = (await client.get("/metrics")).text
            if "exopipe_ingress_streams_closed_total{" in metrics:
                break
            await asyncio.sleep(0.1)
    return stream, metrics


async def outage_then_read_back(
    kafka: LocalStack,
    ingress: IngressProcess,
    settings: Settings,
    tmp_path: Path,
    *,
    stream_after_s: float,
    close_code: int,
) -> tuple[PacedStream, str, list[tuple[bytes | None, CloudEvent]]]:
    """The outage, the close the stream must get, the spool drained, the ingress stopped (exit
    0); then every audio record of the stream as Kafka has it (copies included)."""
    try:
        stream, metrics = await stream_through_an_outage(
            kafka, ingress, stream_after_s=stream_after_s
        )
        assert stream.close_code == close_code, ingress.log()
        assert await asyncio.to_thread(wait_until_empty, tmp_path / "spool", 60), ingress.log()
        sid = stream.who.stream_sid.encode()
        records = await collect(
            settings, STREAM_AUDIO, count=10_000, wait_seconds=8, where=lambda k, _: k == sid
        )
        assert await asyncio.to_thread(ingress.terminate) == 0, ingress.log()
    finally:
        ingress.kill()
    return stream, metrics, records


def first_copies(records: list[tuple[bytes | None, CloudEvent]]) -> tuple[list[CloudEvent], int]:
    """The records in the order they are on Kafka, each id once, and how many copies there were."""
    seen: set[str] = set()
    firsts = []
    for _, event in records:
        if event.id not in seen:
            seen.add(event.id)
            firsts.append(event)
    return firsts, len(records) - len(firsts)


async def test_kafka_killed_mid_stream_the_spool_keeps_every_frame_in_order(
    private_kafka: LocalStack, tmp_path: Path
) -> None:
    settings, ingress = await start_ingress(private_kafka, tmp_path)
    stream, metrics, records = await outage_then_read_back(
        private_kafka, ingress, settings, tmp_path, stream_after_s=2, close_code=1000
    )
    total = stream.sent_media + 3  # start, media, stop, closed
    events, copies = first_copies(records)
    spooled = metric(metrics, "exopipe_ingress_spooled_total")
    print(f"{stream.sent_media} media frames in {stream.sent_media * FRAME_EVERY_S:.1f} s, "
          f"spooled {spooled:.0f}, copies {copies}")  # fmt: skip
    assert spooled > DOWN_S / FRAME_EVERY_S / 2
    assert [e.data["frame_index"] for e in events] == list(range(total)), "lost or out of order"
    media = [base64.b64decode(e.data["media"]["payload"]) for e in events if "media" in e.data]
    assert media == [chunk(n) for n in range(stream.sent_media)]
    closed = events[-1].data["closed"]
    assert (closed["reason"], closed["lost"], closed["rejected"], closed["gaps"]) == (
        "stop_received", 0, 0, 0)  # fmt: skip
    assert closed["media_frames"] == stream.sent_media
    assert metric(metrics, 'exopipe_ingress_stream_lost_total{record="frame"}') == 0


async def test_kafka_down_and_the_spool_full_closes_the_stream_with_1013_and_counts_the_loss(
    private_kafka: LocalStack, tmp_path: Path
) -> None:
    # Room for about 10 frames: the outage (6 s, 60 frames) cannot fit.
    settings, ingress = await start_ingress(
        private_kafka, tmp_path, EXOPIPE_INGRESS_SPOOL_MAX_BYTES="50000"
    )
    stream, metrics, records = await outage_then_read_back(
        private_kafka, ingress, settings, tmp_path, stream_after_s=0, close_code=1013
    )
    events, copies = first_copies(records)
    lost = metric(metrics, 'exopipe_ingress_stream_lost_total{record="frame"}')
    print(f"{stream.sent_media} media frames sent, {len(events)} records on Kafka, "
          f"lost {lost:.0f}, copies {copies}")  # fmt: skip
    assert lost >= 1
    assert metric(metrics, 'exopipe_ingress_streams_closed_total{reason="spool_full"}') == 1
    said = (tmp_path / "ingress.log").read_text()
    assert "closed with 1013 (spool_full): " in said and SECRET not in said
    # What the ingress accepted is on Kafka in frame order; the closed record, last, tells the
    # loss (it may pass the full spool's bound by a little, for that).
    *kept, last = events
    assert [e.data["frame_index"] for e in kept] == list(range(len(kept)))
    closed = last.data["closed"]
    assert (closed["reason"], closed["close_code"], closed["lost"]) == ("spool_full", 1013, lost)
    # The frame the spool refused, and those read after the close (Exotel had sent them).
    assert closed["lost"] == 1 + closed["after_close"]
    assert closed["frames"] == last.data["frame_index"] == len(kept) + closed["lost"]
    assert metric(metrics, 'exopipe_ingress_stream_lost_total{record="closed"}') == 0
