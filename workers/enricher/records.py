"""Input events read strictly, the hand-over between the two stages, and the output record.

Reading never trusts a record: anything that is not a CloudEvent of the topic's type with
``data`` that follows the topic's schema and a usable timestamp is a :class:`PermanentError`
whose message is the reason written to ``exotel.webhook.rejected``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from topics.catalog import TopicSpec
from topics.events import InvalidEvent, format_ms, parse_event, parse_time
from topics.schemas import SchemaViolation
from workers.enricher.callee import describe_callee
from workers.enricher.numbers import caller_key, describe_number
from workers.errors import PermanentError

__all__ = [
    "CallEvent",
    "ReadError",
    "enriched_data",
    "from_ms",
    "read_call",
    "stage_message",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReadError(PermanentError):
    """An input event we refuse; ``errors`` lists every reason (schema paths included)."""

    def __init__(self, reason: str, errors: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or [reason]


class CallEvent(NamedTuple):
    """What the enricher needs from a missed-call or popup webhook event (a tuple: one is made
    per record, and a frozen dataclass's ``__init__`` was 5 % of the worker's profile)."""

    event_id: str
    call_sid: str
    customer_id: str
    app_id: str
    caller: str
    callee: str
    at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def read_call(value: bytes | None, spec: TopicSpec) -> CallEvent:
    """Parse and validate one webhook event of ``spec``; raise :class:`ReadError` if refused."""
    if value is None:
        raise ReadError("empty record value")
    try:
        event = parse_event(value, spec)
    except SchemaViolation as exc:
        raise ReadError(f"data does not follow {spec.schema}", exc.errors) from None
    except InvalidEvent as exc:
        raise ReadError(f"not a CloudEvent of {spec.name}: {exc}") from None
    data = event.data
    try:
        at = parse_time(data["timestamp"])
    except (ValueError, TypeError):
        raise ReadError(f"timestamp {data['timestamp']!r} is not ISO 8601") from None
    return CallEvent(
        event_id=event.id,
        call_sid=data["call_sid"],
        customer_id=data["customer_id"],
        app_id=data["app_id"],
        caller=data["from"],
        callee=data["to"],
        at_ms=(at - _EPOCH) // timedelta(milliseconds=1),  # exact: no float rounding
    )


def stage_message(call: CallEvent, popup_ms: int | None, default_region: str) -> dict[str, Any]:
    """What stage one (join by call_sid) hands to stage two (count by caller), keyed by ``key``.

    Numbers are parsed here because the caller's E.164 form is the repartition key.
    """
    caller = describe_number(call.caller, default_region)
    ring = None if popup_ms is None else (call.at_ms - popup_ms) / 1000
    return {
        "key": caller_key(call.customer_id, call.app_id, caller),
        "event_id": call.event_id,
        "call_sid": call.call_sid,
        "customer_id": call.customer_id,
        "app_id": call.app_id,
        "caller": caller,
        "callee": describe_callee(call.callee),
        "missed_ms": call.at_ms,
        "popup_ms": popup_ms,
        # A popup stamped after its missed call means skewed clocks: no honest ring time.
        "ring_seconds": ring if ring is None or ring >= 0 else None,
    }


def enriched_data(
    stage: dict[str, Any],
    *,
    count: int,
    first_ms: int,
    callback_url_configured: bool | None,
    within_business_hours: bool | None,
    priority: str,
    enriched_at: str,
) -> dict[str, Any]:
    """The ``data`` of an ``exotel.missed_call.enriched`` event."""
    popup_ms = stage["popup_ms"]
    return {
        "call_sid": stage["call_sid"],
        "customer_id": stage["customer_id"],
        "app_id": stage["app_id"],
        "caller": stage["caller"],
        "callee": stage["callee"],
        "missed_at": format_ms(stage["missed_ms"]),
        "popup_seen": popup_ms is not None,
        "popup_at": None if popup_ms is None else format_ms(popup_ms),
        "ring_seconds": stage["ring_seconds"],
        "repeat_count_24h": count,
        "first_missed_at": format_ms(first_ms),
        "callback_url_configured": callback_url_configured,
        "within_business_hours": within_business_hours,
        "priority": priority,
        "enriched_at": enriched_at,
        "source_event_id": stage["event_id"],
    }
