"""The settings resource rules on their own: validation, field order, timestamp format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from workers.exotel_double.schema import (
    SETTINGS_FIELDS,
    SettingsError,
    format_timestamp,
    parse_timestamp,
    render_settings,
    validate_settings_body,
)


def test_timestamp_is_utc_with_milliseconds_and_z() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    assert format_timestamp(datetime(2024, 6, 15, 16, 0, 0, 999_999, tzinfo=ist)) == (
        "2024-06-15T10:30:00.999Z"
    )
    assert format_timestamp(datetime(2024, 6, 1, 9, tzinfo=UTC)) == "2024-06-01T09:00:00.000Z"
    assert parse_timestamp("2024-06-15T10:30:00.000Z") == datetime(2024, 6, 15, 10, 30, tzinfo=UTC)
    assert parse_timestamp("2024-06-15T10:30:00") == datetime(2024, 6, 15, 10, 30, tzinfo=UTC)


def test_render_keeps_spec_order_and_defaults() -> None:
    rendered = render_settings(
        {"streaming_url": "wss://s", "popup_url": "https://p"},
        created_at=datetime(2024, 6, 1, tzinfo=UTC),
        updated_at=datetime(2024, 6, 2, tzinfo=UTC),
    )
    assert list(rendered) == [*SETTINGS_FIELDS, "created_at", "updated_at"]
    assert rendered["popup_url"] == "https://p"
    assert rendered["streaming_url"] == "wss://s"
    assert rendered["recording_enabled"] is False
    assert rendered["callback_url"] is None


def test_validation_accepts_every_field_and_reports_every_problem() -> None:
    body = {name: name.endswith("_enabled") or f"https://x/{name}" for name in SETTINGS_FIELDS}
    assert validate_settings_body(body) == body
    with pytest.raises(SettingsError) as caught:
        validate_settings_body({"zzz": 1, "recording_enabled": 1, "popup_url": None})
    message = str(caught.value)
    assert "zzz" in message
    assert "recording_enabled must be a Boolean, not a Number" in message
    assert "popup_url must be a String, not null" in message
