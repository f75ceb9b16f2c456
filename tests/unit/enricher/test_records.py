"""Reading input events strictly, the stage hand-over, the enriched record and rejects."""

from __future__ import annotations

from typing import Any

import pytest

from topics.catalog import MISSED_CALL_ENRICHED, WEBHOOK_MISSED_CALL, WEBHOOK_REJECTED
from topics.events import make_event
from topics.schemas import validate_data
from workers import json_codec
from workers.enricher.records import ReadError, enriched_data, read_call, stage_message
from workers.enricher.rejects import rejected_event


def missed(**changes: Any) -> dict[str, Any]:
    data = {
        "event": "missed_call",
        "call_sid": "CA1",
        "customer_id": "cust",
        "app_id": "app",
        "from": "09876543210",
        "to": "sip:agent7@example.exotel.com",
        "timestamp": "2026-03-02T05:00:10.000Z",
        "received_at": "2026-03-02T05:00:10.100Z",
        "source_format": "json",
        "original": {},
    }
    data.update(changes)
    return data


def test_reads_a_valid_event() -> None:
    event = make_event(WEBHOOK_MISSED_CALL, missed(), source="t", event_id="e1")
    call = read_call(event.to_bytes(), WEBHOOK_MISSED_CALL)
    assert (call.event_id, call.call_sid, call.caller) == ("e1", "CA1", "09876543210")
    assert call.at_ms == 1772427610000


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"not json", "not a CloudEvent"),
        (b'{"specversion":"1.0"}', "not a CloudEvent"),
        (
            json_codec.dumps(
                {"specversion": "1.0", "id": "x", "source": "s", "type": "other", "data": {}}
            ),
            "not a CloudEvent",
        ),
    ],
)
def test_refuses_what_is_not_an_event(value: bytes | None, reason: str) -> None:
    with pytest.raises(ReadError, match=reason):
        read_call(value, WEBHOOK_MISSED_CALL)


def test_refuses_data_that_breaks_the_schema_with_every_reason() -> None:
    event = make_event(WEBHOOK_MISSED_CALL, missed(), source="t")
    raw = event.to_dict()
    del raw["data"]["call_sid"]
    raw["data"]["from"] = 5
    with pytest.raises(ReadError) as caught:
        read_call(json_codec.dumps(raw), WEBHOOK_MISSED_CALL)
    assert len(caught.value.errors) == 2


def test_refuses_an_unreadable_timestamp() -> None:
    raw = make_event(WEBHOOK_MISSED_CALL, missed(), source="t").to_dict()
    raw["data"]["timestamp"] = "yesterday"
    with pytest.raises(ReadError, match="timestamp"):
        read_call(json_codec.dumps(raw), WEBHOOK_MISSED_CALL)


def test_stage_and_enriched_record_follow_the_schema() -> None:
    call = read_call(
        make_event(WEBHOOK_MISSED_CALL, missed(), source="t", event_id="e1").to_bytes(),
        WEBHOOK_MISSED_CALL,
    )
    stage = stage_message(call, call.at_ms - 7500, "IN")
    assert stage["key"] == "cust/app|+919876543210"
    assert stage["ring_seconds"] == 7.5
    data = enriched_data(
        stage,
        count=2,
        first_ms=call.at_ms - 1000,
        callback_url_configured=None,
        within_business_hours=None,
        priority="medium",
        enriched_at="2026-03-02T05:00:11.000Z",
    )
    validate_data(MISSED_CALL_ENRICHED, data)
    assert data["callee"] == {"raw": "sip:agent7@example.exotel.com", "user": "agent7"}
    assert data["popup_seen"] is True and data["missed_at"] == "2026-03-02T05:00:10.000Z"
    assert data["first_missed_at"] == "2026-03-02T05:00:09.000Z"


def test_popup_after_missed_call_in_event_time_gives_no_ring_time() -> None:
    call = read_call(
        make_event(WEBHOOK_MISSED_CALL, missed(), source="t").to_bytes(), WEBHOOK_MISSED_CALL
    )
    assert stage_message(call, call.at_ms + 1, "IN")["ring_seconds"] is None
    assert stage_message(call, None, "IN")["ring_seconds"] is None


def test_rejected_event_keeps_the_input_and_the_reasons() -> None:
    body = json_codec.dumps({"data": {"call_sid": "CA9", "customer_id": "c", "app_id": "a"}})
    key, event = rejected_event(body, "bad", ["x: y"], kind="missed_call", source="s")
    validate_data(WEBHOOK_REJECTED, event.data)
    assert key == "CA9"
    assert event.data["stage"] == "enricher" and event.data["original_event"]["data"]["app_id"]
    key, event = rejected_event(b"\xff" * 10, "bad", ["bad"], kind=None, source="s")
    assert key == "unknown" and isinstance(event.data["original_event"], str)
