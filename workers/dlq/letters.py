"""Dead letters as plain values, and the replayed events built from them (pure: no I/O).

A replayed event carries the CloudEvents extension attribute ``replaycount`` (1 for the first
replay of an original, n+1 for a replay of a replay). A recording is re-published as the same
event (same id: the archiver's HEAD+sha256 check makes a second archive a no-op). A settings
command gets the id ``<command_id>~replay<n>``: the settings worker drops a command id that
already has a result, so the original id would never be applied again, while a fixed derived
id makes replaying the same dead letter twice one PUT, not two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from topics.catalog import RECORDING_FAILED, SETTINGS_RESULT, TopicSpec
from topics.events import CloudEvent, parse_event
from workers import json_codec

__all__ = [
    "DLQ_TOPICS",
    "REPLAY_ATTRIBUTE",
    "DeadLetter",
    "from_event",
    "replay_command",
    "replay_recording",
    "replayable",
]

REPLAY_ATTRIBUTE = "replaycount"
DLQ_TOPICS: dict[str, TopicSpec] = {
    RECORDING_FAILED.name: RECORDING_FAILED,
    SETTINGS_RESULT.name: SETTINGS_RESULT,
}
_MAX_DETAIL = 100


@dataclass(frozen=True)
class DeadLetter:
    """One failure: when, what (call_sid or command_id), why, and how to find the original."""

    topic: str
    at: datetime
    key: str
    customer_id: str | None
    app_id: str | None
    outcome: str
    reason: str
    detail: str
    attempts: int
    original: dict[str, Any] | None  # recordings: the whole original event
    source_offset: tuple[int, int] | None  # settings: (partition, offset) of the command

    def line(self) -> str:
        where = f"{self.customer_id}/{self.app_id}"
        detail = self.detail if len(self.detail) <= _MAX_DETAIL else self.detail[:97] + "..."
        stamp = self.at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{stamp}  {self.key:28} {where:28} {self.outcome:8} {self.reason:22} "
            f"{self.attempts:>3}  {detail}"
        )


def from_event(spec: TopicSpec, event: CloudEvent, timestamp_ms: int) -> DeadLetter | None:
    """The dead letter a record on ``spec`` is, or None (a settings result that succeeded)."""
    data = event.data if isinstance(event.data, dict) else {}
    at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    if spec.name == RECORDING_FAILED.name:
        return DeadLetter(
            topic=spec.name,
            at=at,
            key=str(data.get("call_sid")),
            customer_id=data.get("customer_id"),
            app_id=data.get("app_id"),
            outcome=str(data.get("outcome")),
            reason=str(data.get("reason")),
            detail=str(data.get("detail", "")),
            attempts=int(data.get("attempts") or 0),
            original=data.get("original_event"),
            source_offset=None,
        )
    outcome = str(data.get("outcome"))
    if outcome in {"applied", "dry_run"}:
        return None
    offset = data.get("source_offset") or None
    errors = data.get("errors") or []
    api_error = data.get("api_error")
    detail = "; ".join(str(e) for e in errors) or (
        json_codec.dumps(api_error).decode() if api_error else ""
    )
    return DeadLetter(
        topic=spec.name,
        at=at,
        key=str(data.get("command_id")),
        customer_id=data.get("customer_id"),
        app_id=data.get("app_id"),
        outcome=outcome,
        reason=outcome,
        detail=detail,
        attempts=int(data.get("attempts") or 0),
        original=None,
        source_offset=(offset["partition"], offset["offset"]) if offset else None,
    )


def replayable(letter: DeadLetter, reason: str | None) -> bool:
    """``failed`` letters by default; with ``reason``, exactly the letters with that reason."""
    if reason is not None:
        return letter.reason == reason
    return letter.outcome == "failed"


def replay_recording(letter: DeadLetter) -> tuple[str, CloudEvent]:
    """(key, event) to publish on exotel.webhook.recording_ready again."""
    if not isinstance(letter.original, dict) or "raw" in letter.original:
        raise ValueError(f"{letter.key}: the original event was not a CloudEvent; cannot replay")
    event = parse_event(json_codec.dumps(letter.original))
    return letter.key, _bumped(event, event.data)


def replay_command(letter: DeadLetter, command: CloudEvent) -> tuple[str, CloudEvent]:
    """(key, event) to publish on exotel.settings.command, from the command the letter names."""
    count = _count(command) + 1
    data = dict(command.data)
    original_id = str(data["command_id"]).split("~replay", 1)[0]
    data["command_id"] = f"{original_id}~replay{count}"
    key = f"{data['customer_id']}/{data['app_id']}"
    return key, _bumped(command, data)


def _count(event: CloudEvent) -> int:
    value = event.extensions.get(REPLAY_ATTRIBUTE, 0)
    return value if isinstance(value, int) else int(str(value) or 0)


def _bumped(event: CloudEvent, data: Any) -> CloudEvent:
    extensions = {**event.extensions, REPLAY_ATTRIBUTE: _count(event) + 1}
    return CloudEvent(
        id=event.id if data is event.data else f"{event.id}~replay{extensions[REPLAY_ATTRIBUTE]}",
        source=event.source,
        type=event.type,
        time=event.time,
        data=data,
        customerid=event.customerid,
        appid=event.appid,
        datacontenttype=event.datacontenttype,
        specversion=event.specversion,
        extensions=extensions,
    )
