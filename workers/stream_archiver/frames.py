"""One ``exotel.stream.audio`` record as the stream archiver reads it.

Records are CloudEvents checked against the topic's schema here too: the archiver must not
write a byte it cannot account for. A record that fails is :class:`BadFrame`; the caller logs it
and goes on (one bad record must not stop every stream of its partition).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from topics.catalog import STREAM_AUDIO
from topics.events import InvalidEvent, parse_event, parse_time
from topics.schemas import SchemaViolation

__all__ = ["BadFrame", "Frame", "read_frame"]


class BadFrame(ValueError):
    """The record is not an ``exotel.stream.audio`` event, or its audio is not base64."""


@dataclass(frozen=True)
class Frame:
    """The fields the archiver uses; ``data`` is the record's whole ``data``."""

    stream_sid: str
    customer_id: str
    app_id: str
    connection_id: str
    frame_index: int
    event: str
    continuity: str
    missing: int
    received_at: str
    received: datetime
    data: dict[str, Any]

    def audio(self) -> bytes:
        """The media frame's decoded payload (strict base64, as the schema says it is)."""
        try:
            return binascii.a2b_base64(self.data["media"]["payload"], strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise BadFrame(f"payload is not base64: {exc}") from None


def read_frame(value: bytes | None) -> Frame:
    if value is None:
        raise BadFrame("no value")
    try:
        data = parse_event(value, STREAM_AUDIO).data
    except (InvalidEvent, SchemaViolation) as exc:
        raise BadFrame(str(exc)[:500]) from None
    continuity = data["continuity"]
    try:
        received = parse_time(data["received_at"])
    except ValueError as exc:
        raise BadFrame(f"received_at: {exc}") from None
    return Frame(
        stream_sid=data["stream_sid"],
        customer_id=data["customer_id"],
        app_id=data["app_id"],
        connection_id=data["connection_id"],
        frame_index=data["frame_index"],
        event=data["event"],
        continuity=continuity["status"],
        missing=continuity["missing"],
        received_at=data["received_at"],
        received=received,
        data=data,
    )
