"""The double's streaming client: one simulated call's live audio, sent the way Exotel sends it.

Exotel's stream and voicebot applets open a WebSocket (``ws://`` or ``wss://``) to the configured
URL and send JSON text frames: ``connected``, ``start``, ``media`` (base64 16-bit PCM), maybe
``dtmf`` and ``mark``, then ``stop``, and close. What this client copies from Exotel's guides:

* credentials written in the URL (``wss://KEY:TOKEN@host/path``) leave it: they are sent as an
  ``Authorization: Basic`` header, never in the request line; the path and query (custom
  parameters, ``?sample-rate=``) are kept as written;
* ``?sample-rate=`` picks 8000 (the default), 16000 or 24000 Hz;
* a failed handshake (refused connection, a status other than 101, no answer in 10 s) is tried
  once more, then the stream is given up;
* an ``http://`` or ``https://`` URL is a dynamic endpoint (:mod:`stream_dynamic`): each attempt
  GETs it, then connects to the WebSocket URL it answers (which must ask for the call's rate);
* chunks are multiples of 320 bytes, 3,200 by default (the guides' minimum). At 8 kHz that is
  200 ms of audio (the guides call 3.2 KB "100 ms", which holds at 16 kHz); real-time pace sends
  each chunk when its audio has played, so the pace follows the audio, not a fixed 100 ms tick;
* ``track`` (the extension guide's track selection): ``inbound`` or ``outbound`` is named in each
  media frame; ``both`` sends each chunk as two media frames, inbound then outbound, with the
  same ``chunk`` and ``timestamp`` and a sequence number each.

``speed`` scales the pace (1 real time, 10 ten times faster, 0 as fast as the socket takes it).
The receiver may answer (a voicebot does) or close first; both are counted, never raised.
Built on httpx (every outbound HTTP call of the project) with httpx-ws for the WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import httpx
import wsproto.events
from httpx_ws import (
    AsyncWebSocketSession,
    WebSocketDisconnect,
    WebSocketNetworkError,
    WebSocketUpgradeError,
    aconnect_ws,
)
from wsproto.utilities import LocalProtocolError

from workers.exotel_double.schema import format_timestamp
from workers.exotel_double.stream_audio import BLOCK_BYTES, SAMPLE_RATES, ToneAudio
from workers.exotel_double.stream_dynamic import DYNAMIC_SCHEMES, NotResolved, is_dynamic, resolve
from workers.exotel_double.stream_frames import (
    StreamIdentity,
    connected_frame,
    dtmf_frame,
    mark_frame,
    media_frame,
    start_frame,
    stop_frame,
)
from workers.json_codec import dumps
from workers.url_credentials import redact_url

__all__ = [
    "HANDSHAKE_ATTEMPTS",
    "HANDSHAKE_TIMEOUT_S",
    "MAX_CHUNK_BYTES",
    "MIN_CHUNK_BYTES",
    "Dtmf",
    "BOTH",
    "Mark",
    "PlannedFrame",
    "StreamCall",
    "StreamResult",
    "StreamRun",
    "check_stream_url",
    "planned_frames",
    "sample_rate_of",
    "split_credentials",
    "start_stream",
    "stream_call",
]

HANDSHAKE_ATTEMPTS = 2  # Exotel retries a failed handshake once
HANDSHAKE_TIMEOUT_S = 10.0  # "if the bot server does not respond within 10 seconds"
MIN_CHUNK_BYTES = 3200
MAX_CHUNK_BYTES = 100_000
BOTH = "both"  # Exotel's track selection: each media frame names its track, inbound or outbound
_SCHEMES = frozenset({"ws", "wss"})
_CLOSE_WAIT_S = 5.0  # for the receiver's answer to our close frame


@dataclass(frozen=True)
class Dtmf:
    """A key the caller presses ``at_s`` seconds into the audio."""

    at_s: float
    digit: str
    duration_ms: int = 200


@dataclass(frozen=True)
class Mark:
    """A named mark ``at_s`` seconds into the audio."""

    at_s: float
    name: str


@dataclass(frozen=True)
class StreamCall:
    """Everything one streamed call sends; the audio is a pure function of these fields."""

    url: str
    who: StreamIdentity
    duration_s: float = 5.0
    chunk_bytes: int = MIN_CHUNK_BYTES
    speed: float = 1.0
    seed: str | None = None
    tone_hz: float = 440.0
    dtmf: tuple[Dtmf, ...] = ()
    marks: tuple[Mark, ...] = ()
    stop_reason: str = "callended"
    track: str | None = None
    retry_delay_s: float = 1.0
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S

    @property
    def sample_rate(self) -> int:
        return sample_rate_of(self.url)

    @property
    def audio(self) -> ToneAudio:
        """The audio this call streams (regenerate it to compare with what was received); with
        ``track: both``, the inbound (caller's) track."""
        seed = self.seed if self.seed is not None else self.who.stream_sid
        return ToneAudio.lasting(self.duration_s, seed, self.sample_rate, self.tone_hz)

    @property
    def outbound_audio(self) -> ToneAudio | None:
        """With ``track: both``, the outbound (agent's) track: the same length, its own noise."""
        if self.track != BOTH:
            return None
        inbound = self.audio
        return ToneAudio.lasting(
            self.duration_s, f"{inbound.seed}:outbound", self.sample_rate, self.tone_hz
        )


@dataclass(frozen=True)
class PlannedFrame:
    """A frame and when it is due, in seconds of audio from the start of the stream."""

    due_s: float
    frame: dict[str, Any]
    pcm: bytes | None = None


@dataclass
class StreamResult:
    """What happened to one stream, updated while it runs (the control API shows it live)."""

    stream_sid: str
    call_sid: str
    url: str  # credentials redacted
    sample_rate: int
    tracks: int = 1
    state: str = "connecting"
    attempts: list[dict[str, Any]] = field(default_factory=list)
    frames_sent: int = 0
    media_frames: int = 0
    media_bytes: int = 0
    last_sequence_number: int | None = None
    messages_received: int = 0
    closed_by: str | None = None
    close_code: int | None = None
    close_reason: str | None = None
    error: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    _digest: Any = field(default_factory=hashlib.sha256, repr=False)

    def describe(self) -> dict[str, Any]:
        return {
            "stream_sid": self.stream_sid,
            "call_sid": self.call_sid,
            "url": self.url,
            "sample_rate": self.sample_rate,
            "state": self.state,
            "done": self.state not in {"connecting", "streaming"},
            "attempts": list(self.attempts),
            "frames_sent": self.frames_sent,
            "media_frames": self.media_frames,
            "media_bytes": self.media_bytes,
            "duration_ms": self.media_bytes * 1000 // (self.sample_rate * 2 * self.tracks),
            "audio_sha256": self._digest.hexdigest(),
            "last_sequence_number": self.last_sequence_number,
            "messages_received": self.messages_received,
            "closed_by": self.closed_by,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    def sent(self, planned: PlannedFrame) -> None:
        self.frames_sent += 1
        self.last_sequence_number = planned.frame.get("sequence_number")
        if planned.pcm is not None:
            self.media_frames += 1
            self.media_bytes += len(planned.pcm)
            self._digest.update(planned.pcm)


@dataclass
class StreamRun:
    """A stream the double is sending (or has sent) in the background."""

    call: StreamCall
    result: StreamResult
    task: asyncio.Task[StreamResult]

    def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()

    async def wait(self, timeout_s: float | None) -> None:
        """Until the stream ends or ``timeout_s`` passes, whichever is first; never raises."""
        await asyncio.wait({self.task}, timeout=timeout_s)


def start_stream(call: StreamCall) -> StreamRun:
    """Start ``call`` in a task of the running loop; its result fills in as it goes."""
    check_stream_url(call.url)
    result = new_result(call)
    return StreamRun(call, result, asyncio.ensure_future(_run(call, result)))


async def _run(call: StreamCall, result: StreamResult) -> StreamResult:
    """:func:`stream_call` for a background task: whatever goes wrong lands in the result."""
    try:
        return await stream_call(call, result)
    except asyncio.CancelledError:
        result.state, result.error = "cancelled", "cancelled (reset or shutdown)"
        raise
    except Exception as exc:  # noqa: BLE001 - a broken stream must not vanish silently
        result.state, result.error = "failed", f"{type(exc).__name__}: {exc}"
        return result


def sample_rate_of(url: str) -> int:
    """The rate ``?sample-rate=`` asks for (8000 without it); ``ValueError`` for another one."""
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == "sample-rate":
            if not value.isdigit() or int(value) not in SAMPLE_RATES:
                raise ValueError(f"sample-rate must be one of {SAMPLE_RATES}, not {value!r}")
            return int(value)
    return SAMPLE_RATES[0]


def check_stream_url(url: str) -> None:
    """``ValueError`` naming why Exotel could not stream to ``url`` (or resolve it, if dynamic)."""
    _check_url(url, _SCHEMES | DYNAMIC_SCHEMES)


def _check_url(url: str, schemes: frozenset[str]) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in schemes:
        raise ValueError(
            f"scheme {parts.scheme or '(none)'!r}: the double streams to ws:// or wss://"
            + (", or resolves an http(s) dynamic endpoint" if DYNAMIC_SCHEMES <= schemes else "")
        )
    if not parts.hostname:
        raise ValueError("the URL has no host")
    sample_rate_of(url)


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its userinfo, and the ``Authorization: Basic`` header it stood for."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, {}
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    bare = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return bare, {"Authorization": f"Basic {token}"}


def planned_frames(call: StreamCall) -> Iterator[PlannedFrame]:
    """Every frame of the call in sending order, numbered as Exotel numbers them.

    A media frame is due once its audio has played (its end); a DTMF or mark at its ``at_s``,
    before a media frame due at the same moment; ``stop`` when the audio ends.
    """
    who, audio = call.who, call.audio
    sequence = 1
    yield PlannedFrame(0.0, connected_frame())
    yield PlannedFrame(0.0, start_frame(sequence, who, audio.sample_rate))
    events = sorted(
        [(d.at_s, "dtmf", d) for d in call.dtmf] + [(m.at_s, "mark", m) for m in call.marks],
        key=lambda item: item[0],
    )
    pending = iter(events)
    upcoming = next(pending, None)
    played = 0

    def event_frame(kind: str, item: Any) -> dict[str, Any]:
        if kind == "dtmf":
            return dtmf_frame(sequence, who.stream_sid, item.digit, item.duration_ms)
        return mark_frame(sequence, who.stream_sid, item.name)

    for chunk, tracks in enumerate(_track_chunks(call), start=1):
        due = audio.seconds_of(played + len(tracks[0][1]))
        while upcoming is not None and upcoming[0] <= due:
            sequence += 1
            yield PlannedFrame(max(0.0, upcoming[0]), event_frame(upcoming[1], upcoming[2]))
            upcoming = next(pending, None)
        timestamp_ms = round(due * 1000)
        for track, pcm in tracks:
            sequence += 1
            frame = media_frame(sequence, who.stream_sid, chunk, timestamp_ms, pcm, track)
            yield PlannedFrame(due, frame, pcm)
        played += len(tracks[0][1])
    end = audio.seconds_of(played)
    while upcoming is not None:  # marks or keys after the audio: sent before stop
        sequence += 1
        yield PlannedFrame(end, event_frame(upcoming[1], upcoming[2]))
        upcoming = next(pending, None)
    sequence += 1
    yield PlannedFrame(end, stop_frame(sequence, who, call.stop_reason))


def _track_chunks(call: StreamCall) -> Iterator[list[tuple[str | None, bytes]]]:
    """Each chunk's media frames: one, or with ``track: both`` the inbound then the outbound one,
    both with the same chunk number and timestamp (their audio is the same moment of the call)."""
    chunks = call.audio.chunks(call.chunk_bytes)
    outbound = call.outbound_audio
    if outbound is None:
        for pcm in chunks:
            yield [(call.track, pcm)]
        return
    for inbound, agent in zip(chunks, outbound.chunks(call.chunk_bytes), strict=True):
        yield [("inbound", inbound), ("outbound", agent)]


def new_result(call: StreamCall) -> StreamResult:
    return StreamResult(
        stream_sid=call.who.stream_sid,
        call_sid=call.who.call_sid,
        url=redact_url(call.url),
        sample_rate=call.sample_rate,
        tracks=2 if call.track == BOTH else 1,
    )


async def stream_call(call: StreamCall, result: StreamResult | None = None) -> StreamResult:
    """Connect (retrying a failed handshake once), send every frame at the call's pace, close.

    Never raises for what the receiver does: refusals, early closes and lost connections end up
    in the result. ``result`` may be given so that a caller can watch it fill in.
    """
    if result is None:
        result = new_result(call)
    check_stream_url(call.url)
    if call.chunk_bytes % BLOCK_BYTES or not MIN_CHUNK_BYTES <= call.chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be a multiple of {BLOCK_BYTES} in 3200..100000")
    result.started_at = _now()
    url, headers = split_credentials(call.url)
    try:
        async with httpx.AsyncClient(timeout=call.handshake_timeout_s, verify=_tls()) as client:
            for attempt in range(HANDSHAKE_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(call.retry_delay_s)
                if await _attempt(client, url, headers, call, result):
                    return result
        result.state = "handshake_failed"
        result.error = f"the handshake failed {HANDSHAKE_ATTEMPTS} times"
        return result
    finally:
        result.ended_at = _now()


async def _attempt(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    call: StreamCall,
    result: StreamResult,
) -> bool:
    """One handshake and, if it succeeds, the whole stream; False when the handshake failed."""
    resolved: dict[str, str] = {}
    if is_dynamic(url):
        try:
            answered = await _resolved(client, url, headers, call)
        except NotResolved as exc:
            result.attempts.append({"status": exc.status, "error": str(exc)})
            return False
        resolved["resolved_url"] = redact_url(answered)
        url, headers = split_credentials(answered)
    try:
        async with aconnect_ws(
            url, client, headers=dict(headers), keepalive_ping_interval_seconds=None
        ) as ws:
            result.attempts.append({"status": 101, "error": None, **resolved})
            result.state = "streaming"
            await _send_stream(ws, call, result)
            return True
    except WebSocketUpgradeError as exc:
        status = exc.response.status_code
        error = f"answered {status}, not 101"
        result.attempts.append({"status": status, "error": error, **resolved})
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
        result.attempts.append({"status": None, "error": error, **resolved})
    return False


async def _resolved(
    client: httpx.AsyncClient, url: str, headers: Mapping[str, str], call: StreamCall
) -> str:
    """The WebSocket URL the dynamic endpoint ``url`` answers with, checked for this call."""
    answered = await resolve(client, url, headers, call.who)
    try:
        _check_url(answered, _SCHEMES)
        rate = sample_rate_of(answered)
    except ValueError:  # its text could quote the URL, and the URL a secret
        raise NotResolved(200, "dynamic endpoint: its url is not one to stream to") from None
    if rate != call.sample_rate:
        error = f"dynamic endpoint: its url asks for {rate} Hz, the call streams {call.sample_rate}"
        raise NotResolved(200, error)
    return answered


async def _send_stream(ws: AsyncWebSocketSession, call: StreamCall, result: StreamResult) -> None:
    loop = asyncio.get_running_loop()
    receiver = asyncio.ensure_future(_receive(ws, result))
    started = loop.time()
    try:
        for planned in planned_frames(call):
            if receiver.done():
                break
            if call.speed > 0:
                await asyncio.sleep(max(0.0, started + planned.due_s / call.speed - loop.time()))
            else:
                await asyncio.sleep(0)  # let the receiver see an early close
            await ws.send_text(dumps(planned.frame).decode())
            result.sent(planned)
        else:
            result.closed_by = "client"
            await ws.send(wsproto.events.CloseConnection(1000, "stream ended"))
            await asyncio.wait({receiver}, timeout=_CLOSE_WAIT_S)
            result.state = "completed"
            return
        _ended_early(result)
    except (WebSocketNetworkError, LocalProtocolError) as exc:
        await asyncio.wait({receiver}, timeout=0.5)
        _ended_early(result)
        result.error = f"sending frame {result.frames_sent + 1} failed: {type(exc).__name__}"
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)


def _ended_early(result: StreamResult) -> None:
    """The stream stopped before stop was sent: the receiver closed it, or the connection went."""
    if result.close_code is not None:
        result.state, result.closed_by = "closed_by_receiver", "server"
    else:
        result.state = "failed"
        result.error = result.error or "the connection was lost"


async def _receive(ws: AsyncWebSocketSession, result: StreamResult) -> None:
    """Count what the receiver sends back until it closes; note how it closed."""
    try:
        while True:
            event = await ws.receive()
            if isinstance(event, wsproto.events.Message):
                result.messages_received += 1
    except WebSocketDisconnect as exc:
        result.close_code, result.close_reason = exc.code, exc.reason or None
    except WebSocketNetworkError:
        result.error = result.error or "the connection was lost"


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every stream of the process: building one loads the CA
    bundle (about 25 ms), which hundreds of streams starting at once would each pay."""
    return httpx.create_ssl_context()


def _now() -> str:
    return format_timestamp(datetime.now(UTC))
