"""Live audio: Exotel's WebSocket at ``/v1/{customer_id}/{app_id}/stream`` onto Kafka.

The handshake is checked like a webhook before the upgrade: sender allowlist (403), the tenant's
secret as ``token`` or Basic password (401), the tenant's rate limit shared with its webhooks (429),
then a WebSocket upgrade or 426 (recorded), then the process's and the customer's limits of
concurrent streams (429); then 101. The 403, 401 and 429 leave a counter only.

Every text frame becomes one record on ``exotel.stream.audio`` (key: the stream_sid), lifecycle
frames one more on ``exotel.stream.event``, and every connection ends with a ``closed`` record
on both, last, whatever ended it. A connection handles its frames one after another: the next
frame is read only once the previous one's records are delivered (Kafka ack, or spool fsync,
see :mod:`sink`). So a stream's records reach the sink, and its partition, in frame order, and
a slow Kafka slows the reading: aiohttp stops reading the socket once 512 KiB wait in its
buffer, so memory per stream is bounded and the sender feels the backpressure.

Close codes (the ``closed`` record carries the code and a reason):

=====  ==================  ==========================================================
1000   stop_received       Exotel sent ``stop``; the ingress closes.
(peer) client_closed       Exotel closed first (its code; 1006 when the link dropped).
1001   shutdown            The ingress is stopping (SIGTERM).
1008   session_too_long    Open longer than EXOPIPE_INGRESS_STREAM_MAX_SESSION_S.
1009   frame_too_large     A frame over EXOPIPE_INGRESS_STREAM_MAX_FRAME_BYTES.
1011   internal_error      An unexpected failure in the ingress (logged).
1013   spool_full          Kafka unavailable and the spool full: frames were lost. The
                           closed record may pass the spool's bound by a little (1 MiB
                           for all streams), so it still tells the loss.
4408   idle_timeout        No frame for EXOPIPE_INGRESS_STREAM_IDLE_TIMEOUT_S.
(peer) protocol_error      Not a valid WebSocket frame (aiohttp's code, 1002).
(none) ingress_restarted   Written by the next process after a kill (code 1006), see
                           :mod:`stream_restart`.
=====  ==================  ==========================================================

Frames the peer sends after the ingress's close are read until its close frame (at most
``_CLOSE_WAIT_S`` and ``_AFTER_CLOSE_BYTES``) and counted in ``closed.lost`` and
``closed.after_close``: the closed record waits for that short drain (see :mod:`stream_drain`).

This module must never log a secret, a frame's audio or the URL's query.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from topics.catalog import STREAM_AUDIO, STREAM_EVENT
from topics.events import deterministic_id, format_time, make_event
from topics.schemas import SchemaViolation
from workers.ingress.metrics import IngressMetrics
from workers.ingress.sink import SpoolFull
from workers.ingress.stream_continuity import Continuity
from workers.ingress.stream_drain import AfterClose
from workers.ingress.stream_frames import (
    LIFECYCLE,
    Frame,
    FrameRefused,
    StreamTally,
    closed_data,
    frame_data,
    parse_frame,
    sample_rate_of,
)
from workers.ingress.stream_journal import OpenStream, StreamJournal
from workers.ingress.webhook import Ingress, Refusal, admit, json_answer, throttle

__all__ = ["KIND", "STREAM_ROUTE", "StreamRegistry", "handle_stream", "stream_records"]

log = logging.getLogger(__name__)

KIND = "stream"
STREAM_ROUTE = "/v1/{customer_id}/{app_id}/stream"

CLOSE_STOP = 1000
CLOSE_SHUTDOWN = 1001
CLOSE_SESSION_TOO_LONG = 1008
CLOSE_INTERNAL = 1011
CLOSE_SPOOL_FULL = 1013
CLOSE_IDLE = 4408
CLOSE_ABNORMAL = 1006  # recorded, never sent: the connection ended without a close frame

# Bytes a closed record may take past the spool's bound: a stream cut off by a full spool still
# says how it ended and what it lost (about 3 KB a stream, both topics).
CLOSED_HEADROOM = 1024 * 1024
# How long a close waits for the peer's close frame.
_CLOSE_WAIT_S = 5.0
# Bytes read (and counted) after the ingress's close before it stops waiting for the peer's close
# frame: about 7 s of 8 kHz audio as Exotel frames it.
_AFTER_CLOSE_BYTES = 1024 * 1024
# ``connected`` frames held until the stream_sid is known (Exotel sends one).
_MAX_HELD = 4
_RETRY_AFTER_S = "5"
_SIZE_IN_ERROR = re.compile(r"Message size (\d+)")


class _Undelivered(Exception):
    """A record reached neither Kafka nor the spool (full, or its disk failed)."""


@dataclass
class StreamRegistry:
    """Open streams: counts for the limits (process and customer), and each connection's task.

    A connection runs in a task of its own, not in aiohttp's request handler: a handler is
    cancelled when its peer goes (with ``handler_cancellation``), and the stream must still
    write its closed record. Only authenticated customers get an entry in the counts, and it
    goes when their last stream ends. ``journal`` keeps the open streams on disk for a restart.
    """

    max_per_tenant: int
    max_open: int
    metrics: IngressMetrics
    journal: StreamJournal
    _open: dict[str, int] = field(default_factory=dict)
    _total: int = 0
    _tasks: dict[StreamConnection, asyncio.Task[None]] = field(default_factory=dict)

    def take(self, customer_id: str) -> str | None:
        """Take a slot: None, else the refusal's reason (the process's limit, the customer's)."""
        if self._total >= self.max_open:
            return "stream_capacity"
        count = self._open.get(customer_id, 0)
        if count >= self.max_per_tenant:
            return "too_many_streams"
        self._open[customer_id] = count + 1
        self._total += 1
        return None

    def give_back(self, customer_id: str) -> None:
        self._total -= 1
        count = self._open.get(customer_id, 0) - 1
        if count > 0:
            self._open[customer_id] = count
        else:
            self._open.pop(customer_id, None)

    def serve(self, customer_id: str, connection: StreamConnection) -> asyncio.Task[None]:
        """Run ``connection`` in its own task; its slot is given back when it ends."""

        async def run() -> None:
            self.metrics.streams_open.inc()
            try:
                await connection.run()
            finally:
                self.metrics.streams_open.dec()
                self._tasks.pop(connection, None)
                self.give_back(customer_id)

        task = asyncio.create_task(run(), name=f"stream-{connection.connection_id}")
        self._tasks[connection] = task
        return task

    async def shutdown(self) -> None:
        """Close every open stream with 1001; each writes its own closed record."""
        await asyncio.gather(
            *(c.end("shutdown", CLOSE_SHUTDOWN) for c in list(self._tasks)),
            return_exceptions=True,
        )

    async def wait_ended(self, timeout_s: float) -> None:
        """Give the streams until ``timeout_s`` to write their closed records, then cut them off."""
        tasks = set(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


async def handle_stream(
    request: web.Request, ing: Ingress, streams: StreamRegistry
) -> web.StreamResponse:
    customer_id = request.match_info["customer_id"]
    app_id = request.match_info["app_id"]
    started = datetime.now(UTC)
    refused = admit(request, ing, KIND, customer_id, app_id)
    if refused is None:
        refused = throttle(ing, KIND, customer_id)
    if refused is not None:
        return refused
    cfg = ing.settings.ingress
    ws = web.WebSocketResponse(
        max_msg_size=cfg.stream_max_frame_bytes,
        # Inflating costs CPU on the hot path and bandwidth is not what runs short here.
        compress=False,
        # orjson reads and checks UTF-8 itself; a rejected frame keeps its bytes as sent.
        decode_text=False,
        timeout=_CLOSE_WAIT_S,
    )
    refusal = Refusal(request, ing, KIND, customer_id, app_id, started)
    if not ws.can_prepare(request).ok:
        error = "upgrade: this URL takes a WebSocket (GET with Upgrade: websocket)"
        answer = await refusal(426, "websocket_required", "upgrade", [error])
        answer.headers["Upgrade"] = "websocket"
        return answer
    full = streams.take(customer_id)
    if full is not None:
        ing.metrics.rejected.labels(full).inc()
        ing.metrics.answered(KIND, 429)
        return json_answer(429, {"error": full}, {"Retry-After": _RETRY_AFTER_S})
    try:
        await ws.prepare(request)
    except BaseException:
        streams.give_back(customer_id)
        raise
    ing.metrics.answered(KIND, 101)
    rate = sample_rate_of(request.query.get("sample-rate"))
    connection = StreamConnection(ing, ws, refusal, started, rate, streams.journal)
    # shield: a cancelled handler (its peer went) leaves the stream to end in its own task.
    await asyncio.shield(streams.serve(customer_id, connection))
    return ws


class StreamConnection:
    """One WebSocket: reads frames, delivers their records in order, writes ``closed`` last."""

    def __init__(
        self,
        ing: Ingress,
        ws: web.WebSocketResponse,
        refusal: Refusal,
        started: datetime,
        sample_rate: int,
        journal: StreamJournal,
    ) -> None:
        self.ing = ing
        self.ws = ws
        self.journal = journal
        self.journaled = False
        self.after_close = AfterClose(ws, _AFTER_CLOSE_BYTES)
        self.refusal = refusal
        self.started = started
        self.sample_rate = sample_rate
        self.connection_id = str(uuid.uuid4())
        self.stream_sid: str | None = None
        self.sid_from_frame = False
        self.tally = StreamTally()
        self.continuity = Continuity()
        self.ending: tuple[str, int] | None = None
        self._next_index = 0
        self._held: list[tuple[int, datetime, float, Frame, bytes]] = []
        self._deadline = time.monotonic() + ing.settings.ingress.stream_max_session_s

    # -- the connection's life ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            reason, code = await self._read()
        except _Undelivered:
            reason, code = await self.end("spool_full", CLOSE_SPOOL_FULL)
        except asyncio.CancelledError:
            # Cut off at the shutdown deadline: still try to say how the stream ended.
            await self._finish("shutdown", CLOSE_SHUTDOWN)
            raise
        except Exception:
            log.exception("stream %s failed; closing it", self.connection_id)
            reason, code = await self.end("internal_error", CLOSE_INTERNAL)
        await self._finish(reason, code)

    async def end(self, reason: str, code: int) -> tuple[str, int]:
        """Close the WebSocket for ``reason`` unless it is ending already; how it ends."""
        if self.ending is None:
            self.ending = (reason, code)
            self.after_close.arm()  # what the peer sends from now on is counted, then dropped
            await self.ws.close(code=code, message=reason.encode())
        return self.ending

    async def _read(self) -> tuple[str, int]:
        idle = self.ing.settings.ingress.stream_idle_timeout_s
        while True:
            left = self._deadline - time.monotonic()
            if left <= 0:
                return await self.end("session_too_long", CLOSE_SESSION_TOO_LONG)
            try:
                msg = await self.ws.receive(timeout=min(idle, left))
            except TimeoutError:
                if time.monotonic() >= self._deadline:
                    return await self.end("session_too_long", CLOSE_SESSION_TOO_LONG)
                return await self.end("idle_timeout", CLOSE_IDLE)
            if self.ending is not None and msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                return self.ending  # read after end() from another task: counted as after close
            if msg.type is WSMsgType.TEXT:
                if await self._on_text(msg.data):
                    return await self.end("stop_received", CLOSE_STOP)
            elif msg.type is WSMsgType.BINARY:
                self.tally.frames += 1
                error = "frame: a binary frame (Exotel sends JSON text frames)"
                await self._reject(self._take_index(), msg.data, "binary_frame", [error])
            elif msg.type is WSMsgType.ERROR:
                return await self._on_error(msg.data)
            else:  # CLOSE, CLOSING, CLOSED: the peer closed, or end() was called from outside
                if self.ending is not None:
                    return self.ending
                return "client_closed", self.ws.close_code or CLOSE_ABNORMAL

    async def _on_error(self, error: BaseException) -> tuple[str, int]:
        """aiohttp refused a frame and closed with its code; a peer gone is a client close."""
        if not isinstance(error, WebSocketError):
            return "client_closed", self.ws.close_code or CLOSE_ABNORMAL
        self.tally.frames += 1
        reason = "frame_too_large" if error.code == 1009 else "protocol_error"
        self.ending = self.ending or (reason, int(error.code))  # aiohttp closed with this code
        size = _SIZE_IN_ERROR.search(str(error))
        await self._reject(
            self._take_index(), b"", reason, [f"frame: {error}"], size=int(size[1]) if size else 0
        )
        return self.ending

    async def _finish(self, reason: str, code: int) -> None:
        """Held frames, then the closed record on both topics; a loss is logged and counted."""
        metrics = self.ing.metrics
        if not self.ws.closed and self.ending is None:
            await self.end(reason, code)
        if self.stream_sid is None:
            await self._open_stream(None)
        # Frames read after the close have their place (frame_index) like any other: none is kept.
        self.tally.after_close = self.after_close.frames
        self.tally.frames += self.after_close.frames
        self._next_index += self.after_close.frames
        try:
            await self._flush_held()
            now = datetime.now(UTC)
            data = closed_data(
                self._identity(),
                frame_index=self._take_index(),
                received_at=format_time(now),
                reason=reason,
                close_code=code,
                started_at=format_time(self.started),
                tally=self.tally,
                continuity=self.continuity,
            )
            await self._deliver(self._records(data, now, lifecycle=True), CLOSED_HEADROOM)
            metrics.streamed("closed")
            await self._close_journal()
        except _Undelivered:
            metrics.stream_lost.labels("closed").inc()
            log.error(
                "stream %s (connection %s) of %s/%s: closed record not kept (spool full)",
                self.stream_sid,
                self.connection_id,
                self.refusal.customer_id,
                self.refusal.app_id,
            )
        metrics.streams_closed.labels(reason).inc()
        if self.tally.lost:
            metrics.stream_lost.labels("frame").inc(self.tally.lost)
            log.error(
                "stream %s (connection %s) of %s/%s closed with %d (%s): %d of %d frames lost "
                "(%d sent after the close)",
                self.stream_sid,
                self.connection_id,
                self.refusal.customer_id,
                self.refusal.app_id,
                code,
                reason,
                self.tally.lost,
                self.tally.frames,
                self.tally.after_close,
            )

    # -- frames -------------------------------------------------------------------------------

    async def _on_text(self, raw: bytes) -> bool:
        """Handle one text frame; True when it was ``stop``."""
        index, at, read = self._take_index(), datetime.now(UTC), time.monotonic()
        self.tally.frames += 1
        try:
            frame = parse_frame(raw, sample_rate=self.sample_rate)
        except FrameRefused as exc:
            await self._reject(index, raw, exc.reason, exc.errors, at=at)
            return False
        if self.stream_sid is None:
            if frame.event == "connected" and len(self._held) < _MAX_HELD:
                self._held.append((index, at, read, frame, raw))
                return False
            await self._open_stream(frame.stream_sid)
            await self._flush_held()
        elif self.sid_from_frame and frame.stream_sid not in (None, self.stream_sid):
            error = f"stream_sid: {frame.stream_sid[:64]!r} is not this connection's stream"
            await self._reject(index, raw, "invalid_frame", [error], at=at)
            return frame.event == "stop"
        await self._forward(index, at, read, frame, raw)
        return frame.event == "stop"

    async def _forward(
        self, index: int, at: datetime, read: float, frame: Frame, raw: bytes
    ) -> None:
        mark = self.continuity.mark(frame.sequence_number)
        data = frame_data(
            self._identity(), frame_index=index, received_at=format_time(at), frame=frame, mark=mark
        )
        try:
            records = self._records(data, at, lifecycle=frame.event in LIFECYCLE)
        except SchemaViolation as exc:
            await self._reject(index, raw, "schema_violation", exc.errors[:10], at=at)
            return
        await self._deliver(records)
        self.continuity.commit(frame.sequence_number, mark)
        self.tally.forwarded += 1
        metrics = self.ing.metrics
        if mark.status in ("gap", "duplicate", "out_of_order"):
            metrics.stream_continuity.labels(mark.status).inc()
            metrics.stream_missing.inc(mark.missing)
        if frame.event == "media":
            self.tally.media_frames += 1
            self.tally.media_bytes += frame.media_bytes
        elif frame.event == "start" and frame.fields is not None:
            self.refusal.call_sid = frame.fields["call_sid"]  # rejected records keyed by call
        metrics.streamed(frame.event, time.monotonic() - read)

    async def _flush_held(self) -> None:
        held, self._held = self._held, []
        for index, at, read, frame, raw in held:
            await self._forward(index, at, read, frame, raw)

    async def _reject(
        self,
        index: int,
        raw: bytes,
        reason: str,
        errors: list[str],
        *,
        at: datetime | None = None,
        size: int | None = None,
    ) -> None:
        """Record a refused frame on the rejected topic (one id per frame); the stream goes on."""
        event = self.refusal.build(
            None,
            reason,
            errors,
            body=raw,
            size=len(raw) if size is None else size,
            received_at=at or datetime.now(UTC),
            event_id=deterministic_id("rejected", KIND, self.connection_id, str(index)),
            stream={
                "stream_sid": self.stream_sid,
                "connection_id": self.connection_id,
                "frame_index": index,
            },
        )
        try:
            await self.refusal.keep(event)
        except (SpoolFull, OSError) as exc:
            raise _Undelivered from exc
        self.tally.rejected += 1
        self.ing.metrics.stream_rejected.labels(reason).inc()

    # -- records ------------------------------------------------------------------------------

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    async def _open_stream(self, stream_sid: str | None) -> None:
        """Fix the stream's key (the frame's stream_sid, else the connection's id) and journal
        it before its first record goes out, so a restart after a kill can close it."""
        self.stream_sid = stream_sid or self.connection_id
        self.sid_from_frame = stream_sid is not None
        entry = OpenStream(
            connection_id=self.connection_id,
            stream_sid=self.stream_sid,
            customer_id=self.refusal.customer_id,
            app_id=self.refusal.app_id,
            started_at=format_time(self.started),
        )
        try:
            await self.journal.record(entry)
            self.journaled = True
        except OSError as exc:
            # The stream goes on; killed, it would wait for the archiver's quiet period.
            log.error("stream %s: not journaled as open (%s)", self.connection_id, exc)

    async def _close_journal(self) -> None:
        if self.journaled:
            try:
                await self.journal.remove(self.connection_id)
            except OSError as exc:
                log.error("stream %s: journal entry not removed (%s)", self.connection_id, exc)

    def _identity(self) -> dict[str, str]:
        assert self.stream_sid is not None  # noqa: S101 - fixed before any record is built
        return {
            "stream_sid": self.stream_sid,
            "customer_id": self.refusal.customer_id,
            "app_id": self.refusal.app_id,
            "connection_id": self.connection_id,
        }

    def _records(self, data: dict, at: datetime, *, lifecycle: bool) -> list[tuple[str, bytes]]:
        return stream_records(self.ing, data, at, lifecycle=lifecycle)

    async def _deliver(self, records: list[tuple[str, bytes]], headroom: int = 0) -> None:
        """Each record onto Kafka or the spool, in order; :class:`_Undelivered` when one is not."""
        assert self.stream_sid is not None  # noqa: S101 - fixed before any record is built
        for topic, value in records:
            try:
                await self.ing.sink.deliver(topic, self.stream_sid, value, headroom=headroom)
            except (SpoolFull, OSError) as exc:
                raise _Undelivered from exc


def stream_records(
    ing: Ingress, data: dict, at: datetime, *, lifecycle: bool
) -> list[tuple[str, bytes]]:
    """A frame's record on the audio topic, and on the event topic for lifecycle frames; one id
    per connection and frame_index."""
    customer_id, app_id = data["customer_id"], data["app_id"]
    event_id = deterministic_id("stream", data["connection_id"], str(data["frame_index"]))
    specs = (STREAM_AUDIO, STREAM_EVENT) if lifecycle else (STREAM_AUDIO,)
    return [
        (
            spec.name,
            make_event(
                spec,
                data,
                source=f"/ingress/{customer_id}/{app_id}/{KIND}",
                event_id=event_id,
                time=at,
                customer_id=customer_id,
                app_id=app_id,
            ).to_bytes(),
        )
        for spec in (ing.topic(s) for s in specs)
    ]
