"""Refused input events as ``exotel.webhook.rejected`` records (stage ``enricher``).

The record keeps what was read (the parsed JSON, or the bytes as text, capped) and every
reason, so a person can see why and replay it once fixed. It never holds more than the input.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from topics.catalog import WEBHOOK_REJECTED
from topics.events import CloudEvent, format_time, make_event
from workers import json_codec

__all__ = ["MAX_BODY", "rejected_event"]

MAX_BODY = 64 * 1024


def _guess(original: Any, name: str) -> str | None:
    """A field from the event's data, if the event got that far (for routing the reject)."""
    data = original.get("data") if isinstance(original, dict) else None
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def rejected_event(
    value: bytes | None, reason: str, errors: list[str], *, kind: str | None, source: str
) -> tuple[str, CloudEvent]:
    """The key and the event to produce for an input refused by the enricher."""
    raw = value or b""
    try:
        original: Any = json_codec.loads(raw)
    except json_codec.JSONDecodeError:
        original = raw[:MAX_BODY].decode("utf-8", errors="replace")
    customer_id, app_id = _guess(original, "customer_id"), _guess(original, "app_id")
    call_sid = _guess(original, "call_sid")
    data = {
        "stage": "enricher",
        "reason": reason[:2000],
        "errors": [error[:2000] for error in errors][:50],
        "customer_id": customer_id,
        "app_id": app_id,
        "kind": kind,
        "call_sid": call_sid,
        "received_at": format_time(datetime.now(UTC)),
        "body_size": len(raw),
        "body_truncated": len(raw) > MAX_BODY,
        "original_event": original if len(raw) <= MAX_BODY else None,
    }
    key = call_sid or (f"{customer_id}/{app_id}" if customer_id and app_id else "unknown")
    event = make_event(
        WEBHOOK_REJECTED, data, source=source, customer_id=customer_id, app_id=app_id
    )
    return key, event
