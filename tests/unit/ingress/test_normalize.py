"""Every webhook shape to one normalized event per kind."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from topics.catalog import (
    WEBHOOK_CALL_STATUS,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_RECORDING_READY,
)
from topics.events import deterministic_id
from topics.schemas import violations
from workers.exotel_double.payloads import (
    call_status_payload,
    incoming_call_payload,
    missed_call_payload,
    recording_ready_payload,
)
from workers.ingress.normalize import InvalidWebhook, normalize

RECEIVED = datetime(2024, 6, 15, 10, 30, 1, 250_000, tzinfo=UTC)
IST = ZoneInfo("Asia/Kolkata")
SEED_TIME = "2024-06-15T10:30:00.000Z"


def run(kind, fields, shape="json"):
    return normalize(
        kind, fields, shape, customer_id="c1", app_id="a1", received_at=RECEIVED, local_zone=IST
    )


def test_seed_popup_is_an_incoming_call_keyed_by_call_sid():
    payload = incoming_call_payload(timestamp=SEED_TIME)
    out = run("popup", payload)
    assert out.spec == WEBHOOK_INCOMING_CALL
    assert out.key == "call_123"
    assert out.time == SEED_TIME
    assert out.event_id == deterministic_id("popup", "call_123", "incoming_call", SEED_TIME)
    assert out.data["from"] == "+919876543210"
    assert out.data["to"] == "sip:user@app.exotel.com"
    assert out.data["received_at"] == "2024-06-15T10:30:01.250Z"
    assert out.data["original"] == payload
    assert out.data["source_format"] == "json"
    assert violations(out.spec, out.data) == []


def test_seed_recording_keeps_url_and_duration():
    out = run("recording", recording_ready_payload(timestamp="2024-06-15T10:35:00.000Z"))
    assert out.spec == WEBHOOK_RECORDING_READY
    assert out.data["recording_url"] == "https://recordings.exotel.com/call_123.mp3"
    assert out.data["duration"] == 180
    assert out.data["from"] is None
    assert violations(out.spec, out.data) == []


def test_missed_call():
    out = run("missed-call", missed_call_payload(timestamp=SEED_TIME))
    assert out.spec == WEBHOOK_MISSED_CALL
    assert out.data["event"] == "missed_call"
    assert violations(out.spec, out.data) == []


def test_other_events_on_popup_go_to_call_status():
    payload = incoming_call_payload(timestamp=SEED_TIME) | {"event": "call_answered"}
    out = run("popup", payload)
    assert out.spec == WEBHOOK_CALL_STATUS
    assert out.data["event"] == "call_answered"
    assert violations(out.spec, out.data) == []


def test_status_callback_form_reads_zone_less_date_in_the_configured_zone():
    fields = call_status_payload(
        call_sid="cs1", status="completed", date_updated="2024-06-15 16:00:00"
    )
    fields = {k: "" if v is None else str(v) for k, v in fields.items()}
    out = run("callback", fields, "form")
    assert out.spec == WEBHOOK_CALL_STATUS
    assert out.data["timestamp"] == "2024-06-15T10:30:00.000Z"  # 16:00 IST
    assert out.data["status"] == "completed"
    assert out.data["recording_url"] is None
    assert out.data["event"] == "call_status"
    assert violations(out.spec, out.data) == []


def test_passthru_query_fields_and_quoted_values():
    fields = {
        "CallSid": "pt1",
        "CallFrom": "09876543210",
        "CallTo": "08000000000",
        "Direction": "incoming",
        "CallType": "call-attempt",
        "CurrentTime": "2024-06-15 16:00:05",
        "DialCallDuration": "12",
        "digits": '"123"',
    }
    out = run("callback", fields, "query")
    assert out.data["from"] == "09876543210"
    assert out.data["to"] == "08000000000"
    assert out.data["status"] == "call-attempt"
    assert out.data["duration"] == 12
    assert out.data["timestamp"] == "2024-06-15T10:30:05.000Z"
    assert out.data["original"]["digits"] == '"123"'
    assert violations(out.spec, out.data) == []


def test_legacy_pascal_case_json():
    fields = {
        "CustomerId": "c1",
        "AppId": "a1",
        "CallSid": "legacy1",
        "FromNumber": "+919876543210",
        "ToNumber": "+918000000000",
        "Direction": "inbound",
        "CallStatus": "busy",
        "CallState": "active",
        "TotalDuration": "",
        "CallRecordings": "",
        "StartTime": "2024-06-15T10:30:00Z",
        "EndTime": "0001-01-01T00:00:00Z",
    }
    out = run("popup", fields)
    assert out.spec == WEBHOOK_INCOMING_CALL
    assert out.data["source_format"] == "legacy_json"
    assert out.data["from"] == "+919876543210"
    assert out.data["duration"] is None
    assert out.data["timestamp"] == SEED_TIME  # the zero EndTime is skipped
    assert violations(out.spec, out.data) == []


def test_the_same_webhook_twice_has_the_same_id():
    payload = incoming_call_payload(timestamp=SEED_TIME)
    later = RECEIVED.replace(second=9)
    first = run("popup", payload)
    again = normalize(
        "popup", payload, "json", customer_id="c1", app_id="a1", received_at=later, local_zone=IST
    )
    assert first.event_id == again.event_id
    assert first.data["received_at"] != again.data["received_at"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event": "incoming_call", "timestamp": SEED_TIME}, "call_sid"),
        ({"call_sid": "x"}, "timestamp"),
        ({"call_sid": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"call_sid": "x", "timestamp": 1718447400}, "timestamp"),
    ],
)
def test_missing_or_unreadable_fields_are_named(fields, field):
    with pytest.raises(InvalidWebhook) as info:
        run("popup", fields)
    assert info.value.field == field


def test_wrong_json_types_are_not_coerced():
    payload = recording_ready_payload(timestamp=SEED_TIME) | {"duration": "180", "call_sid": 7}
    out = run("recording", payload)
    errors = violations(out.spec, out.data)
    assert any(e.startswith("duration:") for e in errors)
    assert any(e.startswith("call_sid:") for e in errors)
