"""Properties of the CloudEvents envelope: parse_event raises only InvalidEvent on any bytes
(SchemaViolation too when a topic is given), and make_event -> bytes -> parse_event is the
identity on every attribute."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from topics.catalog import SETTINGS_COMMAND
from topics.events import CloudEvent, InvalidEvent, deterministic_id, format_time, parse_event
from topics.schemas import SchemaViolation
from workers import json_codec

from .strategies import json_values, safe_text

CORE = {"specversion", "id", "source", "type", "time", "datacontenttype", "data", "customerid",
        "appid"}  # fmt: skip
ext_names = st.from_regex(r"[a-z][a-z0-9]{0,19}", fullmatch=True).filter(lambda n: n not in CORE)
nonempty = safe_text.filter(bool)
events = st.builds(
    CloudEvent,
    id=nonempty,
    source=nonempty,
    type=nonempty,
    time=st.none() | st.datetimes(timezones=st.just(UTC)).map(format_time),
    data=json_values,
    customerid=st.none() | safe_text,
    appid=st.none() | safe_text,
    extensions=st.dictionaries(ext_names, json_values, max_size=3),
)


@given(event=events)
def test_round_trip_is_the_identity(event: CloudEvent) -> None:
    assert parse_event(event.to_bytes()) == event


@given(value=st.binary(max_size=300) | json_values.map(json_codec.dumps))
def test_any_bytes_parse_or_raise_invalid_event(value: bytes) -> None:
    try:
        event = parse_event(value)
    except InvalidEvent:
        return
    assert event.specversion == "1.0" and event.id and event.source and event.type


@given(
    fields=st.fixed_dictionaries(
        {"specversion": st.just("1.0"), "id": nonempty, "source": nonempty},
        optional={"type": st.just(SETTINGS_COMMAND.event_type) | safe_text, "data": json_values},
    )
)
def test_with_a_topic_only_the_two_refusals_escape(fields: dict[str, Any]) -> None:
    try:
        parse_event(json_codec.dumps(fields), SETTINGS_COMMAND)
    except (InvalidEvent, SchemaViolation):
        return


@given(parts=st.lists(safe_text, min_size=1, max_size=4))
def test_deterministic_id_is_stable_and_separates_parts(parts: list[str]) -> None:
    assert deterministic_id(*parts) == deterministic_id(*parts)
    if len(parts) >= 2 and "\x1f" not in "".join(parts):
        joined = [parts[0] + parts[1], *parts[2:]]
        assert deterministic_id(*joined) != deterministic_id(*parts)


@given(moment=st.datetimes(timezones=st.just(UTC), min_value=datetime(1, 1, 2)))
def test_format_time_parses_back_to_the_millisecond(moment: datetime) -> None:
    text = format_time(moment)
    back = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert back == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
