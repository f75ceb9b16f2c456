"""The App Settings resource as the spec defines it: fields, their types, order and timestamps.

Kept apart from the HTTP handlers so that validation and rendering can be unit-tested directly and
so that the one definition of "what a valid body is" is shared by the API and the control API.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "BOOL_FIELDS",
    "SETTINGS_FIELDS",
    "URL_FIELDS",
    "SettingsError",
    "default_settings",
    "format_timestamp",
    "parse_timestamp",
    "render_settings",
    "validate_settings_body",
]

# Order as in the spec's request body and responses; responses are rendered in this order.
# Not imported from workers.exotel_client on purpose: the double checks the client against the
# spec, so a field the client wrongly adds or drops must be refused here, not shared.
SETTINGS_FIELDS: tuple[str, ...] = (
    "popup_url",
    "missed_call_url",
    "callback_url",
    "recording_enabled",
    "recording_url",
    "streaming_enabled",
    "streaming_url",
)
BOOL_FIELDS: frozenset[str] = frozenset({"recording_enabled", "streaming_enabled"})
URL_FIELDS: frozenset[str] = frozenset(SETTINGS_FIELDS) - BOOL_FIELDS


class SettingsError(ValueError):
    """A request body the spec does not allow; the message names the offending field(s)."""


def default_settings() -> dict[str, Any]:
    """Never-set fields read back as null (URLs) and false (booleans), as the spec's examples do."""
    return {name: (False if name in BOOL_FIELDS else None) for name in SETTINGS_FIELDS}


def validate_settings_body(body: Any) -> dict[str, Any]:
    """Check a PUT body strictly and return the fields it sets.

    Strict on purpose: a client bug such as sending ``"true"`` or ``1`` for a Boolean, or ``null``
    for a String, must fail loudly here rather than be papered over by a lenient double.
    """
    if not isinstance(body, dict):
        raise SettingsError(f"request body must be a JSON object, not {_json_type(body)}")
    problems = []
    unknown = sorted(key for key in body if key not in SETTINGS_FIELDS)
    if unknown:
        problems.append(f"unknown field(s): {', '.join(unknown)}")
    for name, value in body.items():
        if name in BOOL_FIELDS and not isinstance(value, bool):
            problems.append(f"{name} must be a Boolean, not {_json_type(value)}")
        elif name in URL_FIELDS and not isinstance(value, str):
            problems.append(f"{name} must be a String, not {_json_type(value)}")
    if problems:
        raise SettingsError("; ".join(problems))
    return dict(body)


def render_settings(
    values: Mapping[str, Any],
    *,
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
) -> dict[str, Any]:
    """The ``settings`` object of a response, fields in spec order, timestamps last."""
    rendered = {name: values.get(name, default_settings()[name]) for name in SETTINGS_FIELDS}
    if created_at is not None:
        rendered["created_at"] = format_timestamp(created_at)
    if updated_at is not None:
        rendered["updated_at"] = format_timestamp(updated_at)
    return rendered


def format_timestamp(moment: datetime) -> str:
    """``2024-06-15T10:30:00.000Z``: UTC, milliseconds, ``Z``, the only form the spec shows."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """Read an ISO 8601 timestamp (``Z`` or an offset); naive values are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a Boolean"
    if isinstance(value, int | float):
        return "a Number"
    if isinstance(value, str):
        return "a String"
    if isinstance(value, list):
        return "an Array"
    return "an Object"
