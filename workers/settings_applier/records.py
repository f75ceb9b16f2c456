"""The records this worker writes: one result per command, and state/drift per app.

Event ids are deterministic (derived from the command's de-duplication key, or the app and the
command behind a state), so a copy re-sent after a crash is recognisably the same event and
consumers can drop it by id. Every record goes through :func:`topics.events.make_event`, which
validates ``data`` against the topic's schema.

This module must never put a token, an Authorization header or anything from the secrets file
into a record: it only ever sees commands, API answers and outcomes. The webhook URLs in those
may carry credentials of their own (``?token=``, ``user:password@``): every settings object in a
record, and in the worker's tables, goes through :func:`public_settings`, and the free text of a
result (errors, the API's error body, the raw bytes of an unreadable command) through
:func:`~workers.url_credentials.redact_text`, so those credentials are redacted too. Only the
PUT to Exotel carries the real URLs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from topics.catalog import SETTINGS_RESULT, SETTINGS_STATE
from topics.events import CloudEvent, deterministic_id, format_time, make_event
from workers.exotel_client import SETTINGS_FIELDS
from workers.settings_applier.commands import URL_FIELDS, Command, RawCapture, Rejected
from workers.url_credentials import redact_json, redact_text, redact_url

__all__ = [
    "SOURCE",
    "Outcome",
    "differences",
    "drift_event",
    "public_settings",
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
        # Validation messages quote the values they refuse, and an API may echo a URL back.
        "errors": [redact_text(error) for error in outcome.errors],
        "requested_by": command.requested_by,
        "source_offset": {"partition": partition, "offset": offset},
        "completed_at": format_time(now or datetime.now(UTC)),
    }
    if outcome.settings is not None:
        data["settings"] = public_settings(outcome.settings)
        data["updated_at"] = outcome.updated_at
    if outcome.api_error is not None:
        data["api_error"] = redact_json(outcome.api_error)
    if isinstance(command, Command):
        data["dry_run"] = command.dry_run
    elif command.raw is not None:
        raw = command.raw
        data["raw"] = {
            "text": _redacted_raw(raw),
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
        "settings": public_settings(outcome.settings or {}),
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
    """``kind: drift``: Exotel's settings (``settings``) differ from the last applied ones.

    ``differences`` compares the redacted forms: a change of a URL's credential alone is no drift.
    """
    observed, expected = public_settings(observed), public_settings(expected)
    stamp = format_time(now or datetime.now(UTC))
    data = {
        "customer_id": customer_id,
        "app_id": app_id,
        "kind": "drift",
        "settings": observed,
        "expected": expected,
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


def public_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The seven fields in the spec's order, every URL with its credentials redacted.

    The only form settings take in a record or a table (the real URLs go to Exotel and nowhere
    else). Redacting a redacted form changes nothing, so values written before redaction existed
    compare equal to new ones once passed through here.
    """
    return {name: _public(name, settings.get(name)) for name in SETTINGS_FIELDS}


def _public(name: str, value: Any) -> Any:
    return redact_url(value) if name in URL_FIELDS and isinstance(value, str) else value


def _redacted_raw(raw: RawCapture) -> str:
    if raw.encoding == "utf-8":
        return redact_text(raw.text)
    # Not UTF-8: redact the bytes read as Latin-1 (one character per byte, so the bytes around a
    # credential come back unchanged), then encode them again.
    try:
        data = base64.b64decode(raw.text, validate=True)
    except (binascii.Error, ValueError):
        return raw.text
    return base64.b64encode(redact_text(data.decode("latin-1")).encode("latin-1")).decode("ascii")
