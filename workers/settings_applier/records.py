"""The records this worker writes: one result per command, and state/drift per app.

Event ids are deterministic (derived from the command's de-duplication key, or the app and the
command behind a state), so a copy re-sent after a crash is recognisably the same event and
consumers can drop it by id. Every record goes through :func:`topics.events.make_event`, which
validates ``data`` against the topic's schema.

This module must never put a token, an Authorization header or anything from the secrets file
into a record: it only ever sees commands, API answers and outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from topics.catalog import SETTINGS_RESULT, SETTINGS_STATE
from topics.events import CloudEvent, deterministic_id, format_time, make_event
from workers.exotel_client import SETTINGS_FIELDS
from workers.settings_applier.commands import Command, Rejected

__all__ = [
    "SOURCE",
    "Outcome",
    "differences",
    "drift_event",
    "result_event",
    "result_id",
    "state_event",
]

SOURCE = "exopipe/settings-applier"


@dataclass(frozen=True)
class Outcome:
    """How a command ended: the facts a result record reports."""

    outcome: str
    attempts: int = 0
    http_status: int | None = None
    settings: dict[str, Any] | None = None
    updated_at: str | None = None
    errors: list[str] = field(default_factory=list)
    api_error: Any = None


def result_id(dedup_key: str) -> str:
    return deterministic_id("exotel.settings.result", dedup_key)


def result_event(
    command: Command | Rejected,
    outcome: Outcome,
    *,
    dedup_key: str,
    partition: int,
    offset: int,
    now: datetime | None = None,
) -> CloudEvent:
    """The one result event of a command (or of an unreadable record)."""
    data: dict[str, Any] = {
        "command_id": command.command_id,
        "customer_id": command.customer_id,
        "app_id": command.app_id,
        "outcome": outcome.outcome,
        "attempts": outcome.attempts,
        "http_status": outcome.http_status,
        "errors": list(outcome.errors),
        "requested_by": command.requested_by,
        "source_offset": {"partition": partition, "offset": offset},
        "completed_at": format_time(now or datetime.now(UTC)),
    }
    if outcome.settings is not None:
        data["settings"] = _seven(outcome.settings)
        data["updated_at"] = outcome.updated_at
    if outcome.api_error is not None:
        data["api_error"] = outcome.api_error
    if isinstance(command, Command):
        data["dry_run"] = command.dry_run
    elif command.raw is not None:
        raw = command.raw
        data["raw"] = {
            "text": raw.text,
            "encoding": raw.encoding,
            "size": raw.size,
            "truncated": raw.truncated,
        }
    return make_event(
        SETTINGS_RESULT,
        data,
        source=SOURCE,
        event_id=result_id(dedup_key),
        time=data["completed_at"],
        customer_id=command.customer_id,
        app_id=command.app_id,
    )


def state_event(command: Command, outcome: Outcome, *, now: datetime | None = None) -> CloudEvent:
    """``kind: applied``: the settings the API returned after this command's PUT."""
    data = {
        "customer_id": command.customer_id,
        "app_id": command.app_id,
        "kind": "applied",
        "settings": _seven(outcome.settings or {}),
        "updated_at": outcome.updated_at,
        "command_id": command.command_id,
        "observed_at": format_time(now or datetime.now(UTC)),
    }
    return make_event(
        SETTINGS_STATE,
        data,
        source=SOURCE,
        event_id=deterministic_id("exotel.settings.state", command.app_key, command.command_id),
        time=data["observed_at"],
        customer_id=command.customer_id,
        app_id=command.app_id,
    )


def drift_event(
    customer_id: str,
    app_id: str,
    *,
    observed: dict[str, Any],
    expected: dict[str, Any],
    updated_at: str | None,
    command_id: str | None,
    now: datetime | None = None,
) -> CloudEvent:
    """``kind: drift``: Exotel's settings (``settings``) differ from the last applied ones."""
    stamp = format_time(now or datetime.now(UTC))
    data = {
        "customer_id": customer_id,
        "app_id": app_id,
        "kind": "drift",
        "settings": _seven(observed),
        "expected": _seven(expected),
        "differences": differences(expected, observed),
        "updated_at": updated_at,
        "command_id": command_id,
        "observed_at": stamp,
    }
    return make_event(
        SETTINGS_STATE,
        data,
        source=SOURCE,
        time=stamp,
        customer_id=customer_id,
        app_id=app_id,
    )


def differences(expected: dict[str, Any], observed: dict[str, Any]) -> list[str]:
    """The fields whose values differ, in the spec's order."""
    return [name for name in SETTINGS_FIELDS if expected.get(name) != observed.get(name)]


def _seven(settings: dict[str, Any]) -> dict[str, Any]:
    return {name: settings.get(name) for name in SETTINGS_FIELDS}
