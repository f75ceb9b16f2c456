"""The ``/_control`` endpoints of streamed calls: start one on an app, watch it, read what it sent.

A streamed call goes where the *app's settings* say, as with Exotel: the app must have
``streaming_enabled`` true and a ``streaming_url`` (set through the spec's PUT, or at
registration). Starting one answers at once (201); the stream runs in the background and
``GET /_control/streams/{stream_sid}?wait_s=N`` waits up to N seconds for it to end.

    POST /_control/apps/{customer_id}/{app_id}/streams
         {call_sid?, stream_sid?, account_sid?, from?, to?, custom_parameters?, duration_s?,
          chunk_bytes?, speed?, seed?, tone_hz?, dtmf?: [{at_s, digit, duration_ms?}],
          marks?: [{at_s, name}], stop_reason?, track?, retry_delay_s?}
    GET  /_control/streams                       every stream since the last reset
    GET  /_control/streams/{stream_sid}?wait_s=  one stream (its result so far)

409 when the app does not stream (or the stream_sid is taken), 400 for a bad body or a URL the
double cannot stream to. The audio is :class:`~workers.exotel_double.stream_audio.ToneAudio`
of the answer's ``audio`` fields: rebuild it to compare with what a receiver kept. ``track``:
``inbound`` or ``outbound`` (named in every media frame), or ``both``: each chunk is sent twice,
the caller's (``audio``) as inbound, then the agent's (``outbound_audio``) as outbound.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from workers.exotel_double.control_body import BadRequest, Body, read_body
from workers.exotel_double.responses import error_response, json_response
from workers.exotel_double.state import STATE, DoubleState
from workers.exotel_double.stream_audio import ToneAudio
from workers.exotel_double.stream_frames import StreamIdentity
from workers.exotel_double.streaming import (
    BOTH,
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    Dtmf,
    Mark,
    StreamCall,
    StreamRun,
    check_stream_url,
    start_stream,
)

__all__ = ["cancel_streams_on_cleanup", "stream_routes"]

stream_routes = web.RouteTableDef()

_KEYS = {
    "call_sid",
    "stream_sid",
    "account_sid",
    "from",
    "to",
    "custom_parameters",
    "duration_s",
    "chunk_bytes",
    "speed",
    "seed",
    "tone_hz",
    "dtmf",
    "marks",
    "stop_reason",
    "track",
    "retry_delay_s",
}
_MAX_SESSION_S = 3600.0  # Exotel's sessions last up to 60 minutes
_MAX_CUSTOM_PARAMETERS = 3
_DIGITS = set("0123456789*#")
_TRACKS = {"inbound", "outbound", BOTH}


@stream_routes.post("/_control/apps/{customer_id}/{app_id}/streams")
async def start_streamed_call(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    customer_id, app_id = request.match_info["customer_id"], request.match_info["app_id"]
    app = state.apps.get((customer_id, app_id))
    if app is None:
        return error_response(404, f"no app {app_id!r} for customer {customer_id!r}")
    url = app.settings.get("streaming_url")
    if not app.settings.get("streaming_enabled") or not url:
        return error_response(409, "the app does not stream: set streaming_enabled and a URL")
    try:
        check_stream_url(url)
    except ValueError as exc:
        raise BadRequest(f"streaming_url: {exc}") from None
    call = _call(await read_body(request, _KEYS), url, customer_id)
    if call.who.stream_sid in state.streams:
        return error_response(409, f"stream {call.who.stream_sid!r} exists")
    run = start_stream(call)
    state.streams[call.who.stream_sid] = run
    return json_response(_describe(run), status=201)


@stream_routes.get("/_control/streams")
async def list_streams(request: web.Request) -> web.StreamResponse:
    runs = request.app[STATE].streams.values()
    return json_response({"streams": [_describe(run) for run in runs]})


@stream_routes.get("/_control/streams/{stream_sid}")
async def read_stream(request: web.Request) -> web.StreamResponse:
    run = request.app[STATE].streams.get(request.match_info["stream_sid"])
    if run is None:
        return error_response(404, "no such stream")
    wait_s = request.query.get("wait_s")
    if wait_s is not None:
        try:
            await run.wait(max(0.0, float(wait_s)))
        except ValueError:
            raise BadRequest("wait_s must be a number of seconds") from None
    return json_response(_describe(run))


async def cancel_streams_on_cleanup(app: web.Application) -> None:
    """A double shutting down stops its streams and lets each one note that it was cancelled."""
    state: DoubleState = app[STATE]
    state.cancel_streams()
    for run in state.streams.values():
        await run.wait(5.0)


def _call(body: Body, url: str, customer_id: str) -> StreamCall:
    stream_sid = body.get("stream_sid", str, None) or uuid.uuid4().hex
    who = StreamIdentity(
        stream_sid=stream_sid,
        call_sid=body.get("call_sid", str, None) or f"call_{uuid.uuid4().hex[:16]}",
        account_sid=body.get("account_sid", str, customer_id),
        from_=body.get("from", str, "+919876543210"),
        to=body.get("to", str, "08047123456"),
        custom_parameters=_custom_parameters(body.get("custom_parameters", dict, {})),
    )
    duration_s = float(body.get("duration_s", (int, float), 5.0))
    if not 0 < duration_s <= _MAX_SESSION_S:
        raise BadRequest(f"duration_s must be in (0, {_MAX_SESSION_S:.0f}]")
    chunk_bytes = body.get("chunk_bytes", int, MIN_CHUNK_BYTES)
    if chunk_bytes % 320 or not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise BadRequest(f"chunk_bytes must be a multiple of 320 in {MIN_CHUNK_BYTES}..100000")
    speed = float(body.get("speed", (int, float), 1.0))
    retry_delay_s = float(body.get("retry_delay_s", (int, float), 1.0))
    tone_hz = float(body.get("tone_hz", (int, float), 440.0))
    if speed < 0 or retry_delay_s < 0 or not 0 < tone_hz < 4000:
        raise BadRequest("speed and retry_delay_s must be >= 0, tone_hz in (0, 4000)")
    track = body.get("track", str, None)
    if track is not None and track not in _TRACKS:
        raise BadRequest(f"track must be one of {sorted(_TRACKS)}")
    return StreamCall(
        url=url,
        who=who,
        duration_s=duration_s,
        chunk_bytes=chunk_bytes,
        speed=speed,
        seed=body.get("seed", str, None),
        tone_hz=tone_hz,
        dtmf=tuple(_dtmf(item) for item in body.get("dtmf", list, [])),
        marks=tuple(_mark(item) for item in body.get("marks", list, [])),
        stop_reason=body.get("stop_reason", str, "callended"),
        track=track,
        retry_delay_s=retry_delay_s,
    )


def _custom_parameters(value: dict[str, Any]) -> dict[str, str]:
    if len(value) > _MAX_CUSTOM_PARAMETERS or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest("custom_parameters: up to 3 string values, as Exotel allows")
    return value


def _dtmf(item: Any) -> Dtmf:
    body = Body(item, {"at_s", "digit", "duration_ms"})
    digit = body.get("digit", str)
    if digit not in _DIGITS:
        raise BadRequest("dtmf digit must be one of 0-9, * and #")
    return Dtmf(_at(body), digit, body.get("duration_ms", int, 200))


def _mark(item: Any) -> Mark:
    body = Body(item, {"at_s", "name"})
    return Mark(_at(body), body.get("name", str))


def _at(body: Body) -> float:
    at_s = float(body.get("at_s", (int, float)))
    if at_s < 0:
        raise BadRequest("at_s must be >= 0")
    return at_s


def _describe(run: StreamRun) -> dict[str, Any]:
    outbound = run.call.outbound_audio
    described = {
        **run.result.describe(),
        "audio": _audio(run.call.audio),
        "chunk_bytes": run.call.chunk_bytes,
        "speed": run.call.speed,
        "track": run.call.track,
    }
    if outbound is not None:
        described["outbound_audio"] = _audio(outbound)  # "audio" is then the inbound track
    return described


def _audio(audio: ToneAudio) -> dict[str, Any]:
    return {
        "seed": audio.seed,
        "sample_rate": audio.sample_rate,
        "tone_hz": audio.tone_hz,
        "total_bytes": audio.total_bytes,
        "duration_ms": audio.duration_ms,
    }
