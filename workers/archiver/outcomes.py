"""The records the archiver writes: one per consumed event, on ``archived`` or ``failed``.

A ``failed`` record carries ``outcome`` ``failed`` (with ``permanent`` saying whether retrying
could ever help) or ``skipped`` (the app's ``recording_enabled`` is false), the reason code and
the original event, so an operator can replay it. Event ids are deterministic: a redelivered or
replayed input yields the same id, which consumers may use to drop duplicates.

Records must never hold a credential or a URL's query string (pre-signed URL signatures).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from topics.catalog import RECORDING_ARCHIVED, RECORDING_FAILED, TopicSpec
from topics.events import CloudEvent, deterministic_id, format_time, make_event

__all__ = ["SOURCE", "Outcome", "archived", "failed"]

SOURCE = "exopipe/archiver"


@dataclass(frozen=True)
class Outcome:
    """One record to produce: the catalog topic, the event and its key (the call_sid)."""

    spec: TopicSpec
    event: CloudEvent
    key: str

    @property
    def kind(self) -> str:
        if self.spec is RECORDING_ARCHIVED:
            return "archived"
        return str(self.event.data["outcome"])


def archived(
    *,
    call_sid: str,
    customer_id: str,
    app_id: str,
    bucket: str,
    key: str,
    size_bytes: int,
    sha256: str,
    content_type: str,
    duration_seconds: int | None,
    recorded_at: str,
    archived_at: datetime,
    source_url: str,
    source_event_id: str,
    already_archived: bool,
) -> Outcome:
    data = {
        "call_sid": call_sid,
        "customer_id": customer_id,
        "app_id": app_id,
        "bucket": bucket,
        "key": key,
        "uri": f"s3://{bucket}/{key}",
        "size_bytes": size_bytes,
        "sha256": sha256,
        "content_type": content_type,
        "duration_seconds": duration_seconds,
        "recorded_at": recorded_at,
        "archived_at": format_time(archived_at),
        "source_url": source_url,
        "source_event_id": source_event_id,
        "already_archived": already_archived,
    }
    event = make_event(
        RECORDING_ARCHIVED,
        data,
        source=SOURCE,
        event_id=deterministic_id("archived", bucket, key, sha256),
        customer_id=customer_id,
        app_id=app_id,
    )
    return Outcome(RECORDING_ARCHIVED, event, call_sid)


def failed(
    original: dict[str, Any],
    *,
    outcome: str,
    reason: str,
    detail: str,
    permanent: bool,
    attempts: int,
) -> Outcome:
    """A ``failed``/``skipped`` record for ``original`` (the consumed event as a dict)."""
    data = original.get("data") if isinstance(original.get("data"), dict) else {}
    call_sid = _text(data.get("call_sid"))
    customer_id = _text(data.get("customer_id"))
    app_id = _text(data.get("app_id"))
    record = {
        "call_sid": call_sid,
        "customer_id": customer_id,
        "app_id": app_id,
        "outcome": outcome,
        "reason": reason,
        "detail": detail[:2000],
        "permanent": permanent,
        "attempts": attempts,
        "failed_at": format_time(datetime.now(UTC)),
        "original_event": original,
    }
    event = make_event(
        RECORDING_FAILED,
        record,
        source=SOURCE,
        event_id=deterministic_id("failed", str(original.get("id", "")), outcome, reason),
        customer_id=customer_id,
        app_id=app_id,
    )
    return Outcome(RECORDING_FAILED, event, call_sid or "")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
