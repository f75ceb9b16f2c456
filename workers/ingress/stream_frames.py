"""Exotel's stream frames (JSON text, one event each) read into the records of our stream topics.

Events: ``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``, as Exotel's "Working
with the Stream and Voicebot Applet" guide and its extension guide describe them. Numbers
(sequence_number, chunk, timestamp, duration, sample_rate) come as JSON numbers or as numeric
strings; both are read as integers. Fields we do not know are ignored (Exotel may add some).

A frame that cannot be read (not JSON, not an object, an unknown event, a field of the wrong
type, a payload that is not base64) raises :class:`FrameRefused` with a reason and the field;
the caller records it on the rejected topic and the stream goes on. Lengths and enums are the
topic schema's to check, when the record is built. Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from workers import json_codec
from workers.ingress.stream_continuity import UNCHECKED, Continuity, Mark

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "EVENTS",
    "LIFECYCLE",
    "Frame",
    "FrameRefused",
    "StreamTally",
    "closed_data",
    "frame_data",
    "parse_frame",
    "sample_rate_of",
]

EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})
# Events that also go to exotel.stream.event (with closed, the ingress's own last record).
LIFECYCLE = frozenset({"start", "dtmf", "mark", "stop", "closed"})
DEFAULT_SAMPLE_RATE = 8000
_SAMPLE_RATES = frozenset({8000, 16000, 24000})
# Exotel's name for its default audio: raw/slin 16-bit PCM, base64 in the frame.
_DEFAULT_ENCODING = "base64"


class FrameRefused(ValueError):
    """A frame that does not make a record: ``reason`` (a metric label), ``field``, ``errors``."""

    def __init__(self, reason: str, field: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.field = field
        self.errors = [error]


@dataclass(frozen=True)
class Frame:
    """A frame as read: its event, number, own stream_sid and the event's normalized fields."""

    event: str
    sequence_number: int | None
    stream_sid: str | None
    fields: dict[str, Any] | None  # the record's ``start``/``media``/... object; None: connected
    media_bytes: int = 0


def sample_rate_of(query_value: str | None) -> int:
    """The rate a stream URL asks for with ``?sample-rate=``, Exotel's 8000 otherwise."""
    if query_value and query_value.strip().isdigit() and int(query_value) in _SAMPLE_RATES:
        return int(query_value)
    return DEFAULT_SAMPLE_RATE


def parse_frame(raw: bytes, *, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Frame:
    """Read one text frame; ``sample_rate`` stands in when ``start`` names none."""
    try:
        body = json_codec.loads(raw)
    except json_codec.JSONDecodeError as exc:
        raise FrameRefused("invalid_json", "frame", f"frame: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise FrameRefused("invalid_frame", "frame", "frame: not a JSON object")
    event = body.get("event")
    if not isinstance(event, str):
        raise FrameRefused("invalid_frame", "event", "event: a string is required")
    if event not in EVENTS:
        raise FrameRefused(
            "unknown_event", "event", f"event: {event[:64]!r} is not one of {sorted(EVENTS)}"
        )
    number = _number(body, "sequence_number", "sequence_number")
    stream_sid = _text(body, "stream_sid", "stream_sid")
    fields: dict[str, Any] | None = None
    size = 0
    if event == "start":
        start = _object(body, "start", required=True)
        stream_sid = stream_sid or _text(start, "stream_sid", "start.stream_sid")
        fields = _start(start, sample_rate)
    elif event == "media":
        fields = _media(_object(body, "media", required=True))
        size = fields["size_bytes"]
    elif event == "dtmf":
        dtmf = _object(body, "dtmf", required=True)
        digit = dtmf.get("digit")
        if isinstance(digit, int) and not isinstance(digit, bool):
            digit = str(digit)
        if not isinstance(digit, str) or not digit:
            raise FrameRefused("invalid_frame", "dtmf.digit", "dtmf.digit: a digit is required")
        fields = {"digit": digit, "duration_ms": _number(dtmf, "duration", "dtmf.duration")}
    elif event == "mark":
        name = _text(_object(body, "mark", required=True), "name", "mark.name")
        if not name:
            raise FrameRefused("invalid_frame", "mark.name", "mark.name: a name is required")
        fields = {"name": name}
    elif event == "stop":
        stop = _object(body, "stop", required=False)
        fields = {
            "reason": _text(stop, "reason", "stop.reason"),
            "call_sid": _text(stop, "call_sid", "stop.call_sid"),
            "account_sid": _text(stop, "account_sid", "stop.account_sid"),
        }
    return Frame(event, number, stream_sid, fields, size)


def _start(start: dict[str, Any], sample_rate: int) -> dict[str, Any]:
    call_sid = _text(start, "call_sid", "start.call_sid")
    if not call_sid:
        raise FrameRefused("invalid_frame", "start.call_sid", "start.call_sid: is required")
    params = _object(start, "custom_parameters", required=False)
    custom: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, dict | list):
            error = f"start.custom_parameters.{name}: a string is required"
            raise FrameRefused("invalid_frame", "start.custom_parameters", error)
        custom[str(name)] = "" if value is None else str(value)
    media_format = _object(start, "media_format", required=False)
    rate = _number(media_format, "sample_rate", "start.media_format.sample_rate")
    return {
        "call_sid": call_sid,
        "account_sid": _text(start, "account_sid", "start.account_sid"),
        "from": _text(start, "from", "start.from"),
        "to": _text(start, "to", "start.to"),
        "custom_parameters": custom,
        "media_format": {
            "encoding": _text(media_format, "encoding", "start.media_format.encoding")
            or _DEFAULT_ENCODING,
            "sample_rate": sample_rate if rate is None else rate,
            "bit_rate": _text(media_format, "bit_rate", "start.media_format.bit_rate"),
        },
    }


def _media(media: dict[str, Any]) -> dict[str, Any]:
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise FrameRefused("invalid_frame", "media.payload", "media.payload: a string is required")
    try:
        size = len(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        error = "media.payload: not base64 (standard alphabet, padded)"
        raise FrameRefused("invalid_frame", "media.payload", error) from None
    return {
        "chunk": _number(media, "chunk", "media.chunk"),
        "timestamp_ms": _number(media, "timestamp", "media.timestamp"),
        "track": _text(media, "track", "media.track"),
        "payload": payload,
        "size_bytes": size,
    }


def _object(body: dict[str, Any], name: str, *, required: bool) -> dict[str, Any]:
    value = body.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise FrameRefused("invalid_frame", name, f"{name}: an object is required")
    return value


def _text(body: dict[str, Any], name: str, path: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise FrameRefused("invalid_frame", path, f"{path}: a string is required")


def _number(body: dict[str, Any], name: str, path: str) -> int | None:
    """A whole number >= 0 sent as a JSON number or a numeric string; None when absent or ""."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.isascii() and text.isdigit():
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return value
    elif isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise FrameRefused("invalid_frame", path, f"{path}: {str(value)[:32]!r} is not a number >= 0")


@dataclass
class StreamTally:
    """What a connection carried, for its ``closed`` record (continuity counts its own).

    Every frame read is forwarded (its records delivered), rejected (its rejected record
    delivered), or lost: nothing else can become of it.
    """

    frames: int = 0
    forwarded: int = 0
    rejected: int = 0
    media_frames: int = 0
    media_bytes: int = 0
    # Frames the peer sent after the ingress closed the stream: read, dropped, counted in lost.
    after_close: int = 0

    @property
    def lost(self) -> int:
        return self.frames - self.forwarded - self.rejected


def frame_data(
    identity: dict[str, str],
    *,
    frame_index: int,
    received_at: str,
    frame: Frame,
    mark: Mark,
) -> dict[str, Any]:
    """The ``data`` of a frame's record; ``identity`` holds stream_sid, customer_id, app_id and
    connection_id."""
    data: dict[str, Any] = {
        **identity,
        "frame_index": frame_index,
        "event": frame.event,
        "sequence_number": frame.sequence_number,
        "received_at": received_at,
        "continuity": mark.to_data(),
    }
    if frame.fields is not None:
        data[frame.event] = frame.fields
    return data


def closed_data(
    identity: dict[str, str],
    *,
    frame_index: int,
    received_at: str,
    reason: str,
    close_code: int,
    started_at: str,
    tally: StreamTally,
    continuity: Continuity,
) -> dict[str, Any]:
    """The ``data`` of a connection's last record: how it ended and what it held and lost."""
    return {
        **identity,
        "frame_index": frame_index,
        "event": "closed",
        "sequence_number": None,
        "received_at": received_at,
        "continuity": UNCHECKED.to_data(),
        "closed": {
            "reason": reason,
            "close_code": close_code,
            "started_at": started_at,
            "frames": tally.frames,
            "media_frames": tally.media_frames,
            "media_bytes": tally.media_bytes,
            "gaps": continuity.gaps,
            "missing": continuity.missing,
            "duplicates": continuity.duplicates,
            "out_of_order": continuity.out_of_order,
            "rejected": tally.rejected,
            "lost": tally.lost,
            "after_close": tally.after_close,
        },
    }
