"""Every webhook shape Exotel sends, mapped to one normalized event per kind.

Shapes: the snake_case JSON of the App Settings spec (``json``), Exotel's legacy PascalCase JSON
(``legacy_json``), form-encoded POSTs (``form``) and GETs with a query string (``query``, the
Passthru applet and classic StatusCallbacks). Each becomes the same ``data`` for its topic, with
the fields as received kept under ``original``.

This module is pure: no I/O, no clock (``received_at`` is passed in). It must never coerce a
snake_case JSON value of the wrong type into the right one: a wrong type is the sender's error and
is refused by the topic's schema, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from topics.catalog import (
    WEBHOOK_CALL_STATUS,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_RECORDING_READY,
    TopicSpec,
)
from topics.events import deterministic_id, format_time

__all__ = ["KINDS", "InvalidWebhook", "Normalized", "normalize", "parse_timestamp"]

# URL kind -> the topic its default event goes to.
KINDS: dict[str, TopicSpec] = {
    "popup": WEBHOOK_INCOMING_CALL,
    "missed-call": WEBHOOK_MISSED_CALL,
    "callback": WEBHOOK_CALL_STATUS,
    "recording": WEBHOOK_RECORDING_READY,
}
_DEFAULT_EVENT = {
    "popup": "incoming_call",
    "missed-call": "missed_call",
    "callback": "call_status",
    "recording": "recording_ready",
}

# Normalized field -> the names it arrives under, in order of preference.
_ALIASES: dict[str, tuple[str, ...]] = {
    "event": ("event", "Event", "EventType"),
    "call_sid": ("call_sid", "CallSid"),
    "from": ("from", "From", "CallFrom", "FromNumber"),
    "to": ("to", "To", "CallTo", "ToNumber"),
    "direction": ("direction", "Direction"),
    "status": ("status", "Status", "CallStatus", "CallType"),
    "recording_url": ("recording_url", "RecordingUrl", "CallRecordings"),
    "duration": (
        "duration",
        "Duration",
        "ConversationDuration",
        "DialCallDuration",
        "TotalDuration",
    ),
    "timestamp": (
        "timestamp",
        "Timestamp",
        "DateUpdated",
        "CurrentTime",
        "EndTime",
        "StartTime",
        "DateCreated",
    ),
}


class InvalidWebhook(ValueError):
    """The webhook cannot be normalized; ``field`` names the culprit for the 4xx body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.errors = [f"{field}: {message}"]


@dataclass(frozen=True)
class Normalized:
    """What the ingress puts on Kafka for one webhook (before the CloudEvent envelope)."""

    spec: TopicSpec
    data: dict[str, Any]
    key: str
    event_id: str
    time: str


def normalize(
    kind: str,
    fields: Mapping[str, Any],
    source_format: str,
    *,
    customer_id: str,
    app_id: str,
    received_at: datetime,
    local_zone: tzinfo,
) -> Normalized:
    """Map ``fields`` (one shape) to the normalized event of ``kind``; see the module docstring."""
    if kind not in KINDS:
        raise InvalidWebhook("kind", f"unknown webhook kind {kind!r}")
    if source_format == "json" and "call_sid" not in fields and "CallSid" in fields:
        source_format = "legacy_json"
    # Only the snake_case JSON shape carries typed values; the others are strings to convert.
    typed = source_format == "json"
    picked = {name: _pick(fields, aliases) for name, aliases in _ALIASES.items()}

    event = picked["event"]
    if event is None or (not typed and event == ""):
        event = _DEFAULT_EVENT[kind]
    elif isinstance(event, str) and not typed:
        event = event.strip().lower()
    timestamp = parse_timestamp(picked["timestamp"], local_zone)
    duration = picked["duration"] if typed else _to_int(picked["duration"])

    spec = KINDS[kind]
    if kind == "popup" and event != "incoming_call":
        # call_answered, call_completed, ... arrive on popup_url too: they are status events.
        spec = WEBHOOK_CALL_STATUS
    data: dict[str, Any] = {
        "event": event,
        "call_sid": picked["call_sid"],
        "customer_id": customer_id,
        "app_id": app_id,
        "timestamp": timestamp,
        "received_at": format_time(received_at),
        "from": _text(picked["from"], typed),
        "to": _text(picked["to"], typed),
        "direction": _text(picked["direction"], typed),
        "status": _text(picked["status"], typed),
        "recording_url": _text(picked["recording_url"], typed),
        "duration": duration,
        "source_format": source_format,
        "original": dict(fields),
    }
    if data["call_sid"] is None:
        raise InvalidWebhook("call_sid", "is required (call_sid or CallSid)")
    key = data["call_sid"] if isinstance(data["call_sid"], str) else ""
    event_id = deterministic_id(kind, key, str(event), timestamp)
    return Normalized(spec=spec, data=data, key=key, event_id=event_id, time=timestamp)


def parse_timestamp(value: Any, local_zone: tzinfo) -> str:
    """ISO 8601 (zone given) or Exotel's zone-less ``YYYY-MM-DD HH:mm:ss`` -> RFC 3339 UTC."""
    if value is None:
        raise InvalidWebhook("timestamp", "is required (timestamp, DateUpdated, CurrentTime, ...)")
    if not isinstance(value, str):
        raise InvalidWebhook("timestamp", f"must be a date-time string, got {type(value).__name__}")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidWebhook("timestamp", f"{value!r} is not a date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=local_zone)
    try:
        return format_time(moment.astimezone(UTC))
    except OverflowError:  # year 9999 west of UTC, year 1 east of it: no UTC instant exists
        raise InvalidWebhook("timestamp", f"{value!r} is out of range") from None


def _pick(fields: Mapping[str, Any], aliases: tuple[str, ...]) -> Any:
    """The first alias present with a meaningful value (Exotel sends "" and year-1 dates)."""
    for name in aliases:
        value = fields.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, str) and value.startswith("0001-01-01"):
            continue
        return value
    return None


def _text(value: Any, typed: bool) -> Any:
    # Passthru wraps some values in double quotes ("digits"); strip them from string shapes.
    if not typed and isinstance(value, str):
        return value.strip().strip('"')
    return value


def _to_int(value: Any) -> Any:
    """ASCII digits become an int; anything else stays as is so the schema names it."""
    # isdigit() alone admits "²" and other digits int() refuses: that was an escaping ValueError.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return value
