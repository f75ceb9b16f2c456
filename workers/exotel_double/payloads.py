"""Webhook payloads as Exotel sends them, as plain functions the double, demos and tests share.

Defaults reproduce the spec's examples exactly (``call_123``, ``+919876543210``, ...), so that
``incoming_call_payload(timestamp=...)`` *is* the documented popup body; keyword arguments and
``extra`` fields vary them. Timestamps use the spec's ``2024-06-15T10:30:00.000Z`` form, except the
StatusCallback's ``DateUpdated`` (``YYYY-MM-DD HH:mm:ss``, no zone, India time by default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from workers.exotel_double.schema import format_timestamp

__all__ = [
    "IST",
    "PAYLOAD_BUILDERS",
    "build_payload",
    "call_status_payload",
    "incoming_call_payload",
    "missed_call_payload",
    "recording_ready_payload",
]

IST = timezone(timedelta(hours=5, minutes=30), "IST")
Timestamp = datetime | str | None


def _call_payload(event: str, doc: str) -> Callable[..., dict[str, Any]]:
    """The builder of a call webhook: the popup and the missed call carry the same fields."""

    def build(
        *,
        call_sid: str = "call_123",
        from_: str = "+919876543210",
        to: str = "sip:user@app.exotel.com",
        timestamp: Timestamp = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "event": event,
            "call_sid": call_sid,
            "from": from_,
            "to": to,
            "timestamp": _stamp(timestamp),
            **(extra or {}),
        }

    build.__name__ = build.__qualname__ = f"{event}_payload"
    build.__doc__ = doc
    return build


incoming_call_payload = _call_payload(
    "incoming_call", "The popup webhook (``event: incoming_call``) POSTed to ``popup_url``."
)
missed_call_payload = _call_payload(
    "missed_call", "The missed-call notification POSTed to ``missed_call_url``."
)


def recording_ready_payload(
    *,
    call_sid: str = "call_123",
    recording_url: str = "https://recordings.exotel.com/call_123.mp3",
    duration: int = 180,
    timestamp: Timestamp = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The recording webhook (``event: recording_ready``) POSTed to ``recording_url``."""
    return {
        "event": "recording_ready",
        "call_sid": call_sid,
        "recording_url": recording_url,
        "duration": duration,
        "timestamp": _stamp(timestamp),
        **(extra or {}),
    }


def call_status_payload(
    *,
    call_sid: str = "call_123",
    status: str = "completed",
    recording_url: str | None = None,
    date_updated: datetime | str | None = None,
    zone: tzinfo = IST,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The StatusCallback sent to ``callback_url`` when a call ends (PascalCase, zone-less date)."""
    if date_updated is None:
        date_updated = datetime.now(UTC)
    if isinstance(date_updated, datetime):
        date_updated = date_updated.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "CallSid": call_sid,
        "Status": status,
        "DateUpdated": date_updated,
        "RecordingUrl": recording_url,
        **(extra or {}),
    }


PAYLOAD_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "incoming_call": incoming_call_payload,
    "recording_ready": recording_ready_payload,
    "missed_call": missed_call_payload,
    "call_status": call_status_payload,
}


def build_payload(kind: str, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A payload of ``kind`` with its defaults, then ``fields`` laid over them key by key.

    Wire names are used for ``fields`` (``"from"``, ``"CallSid"``), so a control request can set
    any field, including ones the builders do not know.
    """
    try:
        builder = PAYLOAD_BUILDERS[kind]
    except KeyError:
        known = ", ".join(sorted(PAYLOAD_BUILDERS))
        raise ValueError(f"unknown webhook kind {kind!r}; known: {known}") from None
    return {**builder(), **(fields or {})}


def _stamp(timestamp: Timestamp) -> str:
    if timestamp is None:
        timestamp = datetime.now(UTC)
    return timestamp if isinstance(timestamp, str) else format_timestamp(timestamp)
