"""Dead letters and replayed events, without a broker."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from topics.catalog import RECORDING_FAILED, SETTINGS_COMMAND, SETTINGS_RESULT
from topics.events import make_event
from workers.dlq.cli import parse_since
from workers.dlq.letters import from_event, replay_command, replay_recording, replayable

ORIGINAL = {
    "specversion": "1.0",
    "id": "ev-1",
    "source": "exopipe/ingress",
    "type": "com.exotel.pipeline.webhook.recording_ready",
    "time": "2025-03-01T10:00:00.000Z",
    "datacontenttype": "application/json",
    "customerid": "acme",
    "appid": "app1",
    "data": {
        "event": "recording_ready",
        "call_sid": "c1",
        "customer_id": "acme",
        "app_id": "app1",
        "timestamp": "2025-03-01T10:00:00.000Z",
        "received_at": "2025-03-01T10:00:01.000Z",
        "from": None,
        "to": None,
        "direction": None,
        "status": None,
        "source_format": "json",
        "original": {},
        "recording_url": "https://recordings.exotel.com/c1.mp3",
        "duration": 5,
    },
}


def _failed(original: dict, outcome: str = "failed", reason: str = "retries_exhausted"):  # noqa: ANN202
    data = {
        "call_sid": "c1",
        "customer_id": "acme",
        "app_id": "app1",
        "outcome": outcome,
        "reason": reason,
        "detail": "GET https://recordings.exotel.com/c1.mp3: ConnectError",
        "permanent": False,
        "attempts": 5,
        "failed_at": "2025-03-01T10:01:00.000Z",
        "original_event": original,
    }
    return make_event(RECORDING_FAILED, data, source="t")


def test_a_failed_recording_replays_as_the_same_event_with_a_replay_count() -> None:
    letter = from_event(RECORDING_FAILED, _failed(ORIGINAL), 1_700_000_000_000)
    assert letter is not None and replayable(letter, None)
    key, event = replay_recording(letter)
    assert key == "c1" and event.id == "ev-1" and event.data == ORIGINAL["data"]
    assert event.extensions == {"replaycount": 1}
    again = from_event(RECORDING_FAILED, _failed(event.to_dict()), 1_700_000_000_000)
    assert replay_recording(again)[1].extensions == {"replaycount": 2}
    assert "c1" in letter.line() and "retries_exhausted" in letter.line()


def test_skipped_recordings_replay_only_when_asked_by_reason() -> None:
    letter = from_event(RECORDING_FAILED, _failed(ORIGINAL, "skipped", "recording_disabled"), 0)
    assert letter is not None
    assert not replayable(letter, None)
    assert replayable(letter, "recording_disabled")
    assert not replayable(letter, "retries_exhausted")


def test_an_unreadable_original_cannot_be_replayed() -> None:
    letter = from_event(RECORDING_FAILED, _failed({"raw": "not json"}), 0)
    with pytest.raises(ValueError, match="not a CloudEvent"):
        replay_recording(letter)


def _result(outcome: str):  # noqa: ANN202
    data = {
        "command_id": "cmd-1",
        "customer_id": "acme",
        "app_id": "app1",
        "outcome": outcome,
        "attempts": 5,
        "http_status": 503,
        "settings": None,
        "updated_at": None,
        "errors": [],
        "api_error": None,
        "raw": None,
        "requested_by": None,
        "dry_run": False,
        "source_offset": {"partition": 2, "offset": 41},
        "completed_at": "2025-03-01T10:01:00.000Z",
    }
    return make_event(SETTINGS_RESULT, data, source="t")


def test_a_failed_command_replays_under_one_derived_id_per_generation() -> None:
    result = _result("failed")
    assert from_event(SETTINGS_RESULT, _result("applied"), 0) is None
    letter = from_event(SETTINGS_RESULT, result, 0)
    assert letter is not None and letter.source_offset == (2, 41)
    command = make_event(
        SETTINGS_COMMAND,
        {
            "command_id": "cmd-1",
            "customer_id": "acme",
            "app_id": "app1",
            "settings": {"recording_enabled": True},
        },
        source="t",
    )
    key, first = replay_command(letter, command)
    assert key == "acme/app1"
    assert first.data["command_id"] == "cmd-1~replay1" and first.extensions["replaycount"] == 1
    assert replay_command(letter, command)[1].data["command_id"] == "cmd-1~replay1"  # same id twice
    second = replay_command(letter, first)[1]
    assert second.data["command_id"] == "cmd-1~replay2"


def test_since_takes_durations_and_iso_times() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == datetime(2025, 3, 1, 10, 30, tzinfo=UTC)
    assert parse_since("2d", now) == datetime(2025, 2, 27, 12, 0, tzinfo=UTC)
    assert parse_since("2025-03-01T08:00:00Z") == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    assert parse_since("2025-03-01T08:00:00") == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("yesterday")
