"""The JSON text frames of Exotel's stream and voicebot applets, as plain builders (no I/O).

Shapes follow Exotel's "Working with the Stream and Voicebot Applet" guide and its extension
guide: ``connected`` (no sequence number), then ``start`` as sequence number 1 and every later
frame one more. ``sequence_number`` and ``chunk`` are JSON numbers; ``timestamp`` (ms of audio
since the stream began), ``sample_rate`` and the DTMF ``duration`` are numeric strings, as the
guide's examples show them (receivers must take both forms).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "StreamIdentity",
    "connected_frame",
    "dtmf_frame",
    "mark_frame",
    "media_frame",
    "start_frame",
    "stop_frame",
]


@dataclass(frozen=True)
class StreamIdentity:
    """Who the stream is about: what ``start`` and ``stop`` say of the call."""

    stream_sid: str
    call_sid: str
    account_sid: str
    from_: str = "+919876543210"
    to: str = "08047123456"
    custom_parameters: Mapping[str, str] = field(default_factory=dict)


def connected_frame() -> dict[str, Any]:
    return {"event": "connected"}


def start_frame(sequence: int, who: StreamIdentity, sample_rate: int) -> dict[str, Any]:
    return {
        "event": "start",
        "sequence_number": sequence,
        "stream_sid": who.stream_sid,
        "start": {
            "stream_sid": who.stream_sid,
            "call_sid": who.call_sid,
            "account_sid": who.account_sid,
            "from": who.from_,
            "to": who.to,
            "custom_parameters": dict(who.custom_parameters),
            "media_format": {
                "encoding": "base64",
                "sample_rate": str(sample_rate),
                "bit_rate": f"{sample_rate * 16 // 1000}kbps",
            },
        },
    }


def media_frame(
    sequence: int,
    stream_sid: str,
    chunk: int,
    timestamp_ms: int,
    pcm: bytes,
    track: str | None = None,
) -> dict[str, Any]:
    """One chunk of audio; ``chunk`` counts media frames from 1."""
    media: dict[str, Any] = {
        "chunk": chunk,
        "timestamp": str(timestamp_ms),
        "payload": base64.b64encode(pcm).decode("ascii"),
    }
    if track is not None:
        media = {"track": track, **media}
    return {
        "event": "media",
        "sequence_number": sequence,
        "stream_sid": stream_sid,
        "media": media,
    }


def dtmf_frame(sequence: int, stream_sid: str, digit: str, duration_ms: int) -> dict[str, Any]:
    return {
        "event": "dtmf",
        "sequence_number": sequence,
        "stream_sid": stream_sid,
        "dtmf": {"duration": str(duration_ms), "digit": digit},
    }


def mark_frame(sequence: int, stream_sid: str, name: str) -> dict[str, Any]:
    return {
        "event": "mark",
        "sequence_number": sequence,
        "stream_sid": stream_sid,
        "mark": {"name": name},
    }


def stop_frame(sequence: int, who: StreamIdentity, reason: str) -> dict[str, Any]:
    return {
        "event": "stop",
        "sequence_number": sequence,
        "stream_sid": who.stream_sid,
        "stop": {"call_sid": who.call_sid, "account_sid": who.account_sid, "reason": reason},
    }
