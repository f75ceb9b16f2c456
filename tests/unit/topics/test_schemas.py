"""validate_data: the quick check lets valid data through; jsonschema decides and words the rest."""

from __future__ import annotations

import pytest

from topics.catalog import STREAM_AUDIO, WEBHOOK_INCOMING_CALL
from topics.schemas import (
    SchemaViolation,
    load_schema,
    quick_check_for,
    validate_data,
    validator_for,
    violations,
)


def test_invalid_data_still_gets_jsonschemas_errors() -> None:
    name = WEBHOOK_INCOMING_CALL.schema
    data = dict(load_schema(name)["examples"][0], call_sid=7)
    del data["to"]
    assert not quick_check_for(name)(data)
    with pytest.raises(SchemaViolation) as caught:
        validate_data(WEBHOOK_INCOMING_CALL, data)
    assert caught.value.errors == violations(WEBHOOK_INCOMING_CALL, data)
    assert caught.value.errors == [
        "(root): 'to' is a required property",
        "call_sid: 7 is not of type 'string'",
    ]


def test_data_the_quick_check_refuses_on_a_format_alone_is_decided_by_jsonschema() -> None:
    """jsonschema-rs asserts date-time; jsonschema's checker here has no date-time check, so
    what is accepted stays jsonschema's decision (no record valid before is refused now)."""
    name = WEBHOOK_INCOMING_CALL.schema
    data = dict(load_schema(name)["examples"][0], timestamp="2024-13-01T00:00:00Z")
    assert not quick_check_for(name)(data)
    assert validator_for(name).is_valid(data)
    validate_data(WEBHOOK_INCOMING_CALL, data)  # no SchemaViolation


@pytest.mark.parametrize("event", ["start", "media", "dtmf", "mark", "stop", "closed"])
def test_a_stream_frame_must_carry_the_part_its_event_names(event) -> None:
    frame = {
        "stream_sid": "s1",
        "customer_id": "c",
        "app_id": "a",
        "connection_id": "x",
        "frame_index": 3,
        "event": event,
        "sequence_number": 3,
        "received_at": "2024-06-15T10:30:00.120Z",
        "continuity": {"status": "ok", "expected": 3, "missing": 0},
    }
    assert violations(STREAM_AUDIO, frame), f"a {event} frame without its {event!r} part passed"
