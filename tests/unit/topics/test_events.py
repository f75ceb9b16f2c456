from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT
from topics.events import (
    InvalidEvent,
    deterministic_id,
    format_time,
    make_event,
    parse_event,
    parse_time,
)
from topics.schemas import SchemaViolation
from workers import json_codec

COMMAND = {
    "command_id": "cmd-1",
    "customer_id": "cust_1",
    "app_id": "app_abc123",
    "settings": {"recording_enabled": True, "recording_url": "https://example.com/rec"},
}


def test_event_is_structured_mode_cloudevent_with_extensions() -> None:
    event = make_event(
        SETTINGS_COMMAND, COMMAND, source="/tests", customer_id="cust_1", app_id="app_abc123"
    )
    raw = json_codec.loads(event.to_bytes())
    assert raw["specversion"] == "1.0"
    assert raw["type"] == "com.exotel.pipeline.settings.command"
    assert raw["datacontenttype"] == "application/json"
    assert raw["customerid"] == "cust_1" and raw["appid"] == "app_abc123"
    assert raw["data"] == COMMAND
    assert raw["time"].endswith("Z")


def test_round_trip_keeps_every_attribute() -> None:
    event = make_event(
        SETTINGS_COMMAND,
        COMMAND,
        source="/tests",
        event_id="e-1",
        time="2024-06-15T10:30:00.000Z",
        customer_id="cust_1",
        app_id="app_abc123",
        extensions={"replaycount": 2},
    )
    parsed = parse_event(event.to_bytes(), SETTINGS_COMMAND)
    assert parsed == event


def test_data_that_breaks_the_schema_is_refused_with_every_reason() -> None:
    bad = {"command_id": "", "customer_id": "c", "settings": {"recording_enabled": "yes"}}
    with pytest.raises(SchemaViolation) as caught:
        make_event(SETTINGS_COMMAND, bad, source="/tests")
    text = "; ".join(caught.value.errors)
    assert "app_id" in text
    assert "settings/recording_enabled" in text
    assert "command_id" in text


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"specversion": "1.0", "id": "x", "source": "s"}', "type"),
        (b'{"specversion": "0.3", "id": "x", "source": "s", "type": "t"}', "specversion"),
    ],
)
def test_parse_refuses_what_is_not_a_cloudevent(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(value)


def test_parse_checks_the_type_belongs_on_the_topic() -> None:
    event = make_event(SETTINGS_COMMAND, COMMAND, source="/tests")
    with pytest.raises(InvalidEvent, match="does not belong"):
        parse_event(event.to_bytes(), SETTINGS_RESULT)


def test_deterministic_id_is_stable_and_separates_parts() -> None:
    assert deterministic_id("missed", "call_1") == deterministic_id("missed", "call_1")
    assert deterministic_id("missed", "call_1") != deterministic_id("missed", "call_2")
    assert deterministic_id("a", "bc") != deterministic_id("ab", "c")


def test_format_time_is_utc_with_milliseconds() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    moment = datetime(2024, 6, 15, 16, 0, 0, 123456, tzinfo=ist)
    assert format_time(moment) == "2024-06-15T10:30:00.123Z"
    assert format_time(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00.000Z"
    with pytest.raises(ValueError):
        format_time(datetime(2024, 1, 1))


def test_parse_time_reads_what_format_time_writes_and_any_offset() -> None:
    moment = datetime(2024, 6, 15, 10, 30, 0, 123000, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment
    assert parse_time("2024-06-15T16:00:00.123+05:30") == moment
    naive = parse_time("2024-06-15T10:30:00.123")
    assert naive == moment and naive.tzinfo is UTC
    with pytest.raises(ValueError):
        parse_time("yesterday")
