"""Properties of the ingress's parsers: whatever a sender puts in a body, query or field, the
request path raises only the two refusals the handler turns into a 400 (never a 500), the
tenant's token never reaches the fields, and an accepted webhook survives the envelope round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

from hypothesis import example, given
from hypothesis import strategies as st
from multidict import MultiDict

from topics.events import format_time, make_event, parse_event
from topics.schemas import SchemaViolation
from workers.config import Settings
from workers.ingress.normalize import KINDS, InvalidWebhook, normalize, parse_timestamp
from workers.ingress.payload import parse_fields
from workers.ingress.webhook import _field_of, _readable

from .strategies import json_values, safe_text

IST = timezone(timedelta(hours=5, minutes=30))
SETTINGS = Settings.from_env({})
RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# Every name normalize() looks under, so generated payloads hit the aliases, not only noise.
ALIAS_NAMES = [
    "event", "Event", "EventType", "call_sid", "CallSid", "from", "From", "CallFrom",
    "FromNumber", "to", "To", "CallTo", "ToNumber", "direction", "Direction", "status", "Status",
    "CallStatus", "CallType", "recording_url", "RecordingUrl", "CallRecordings", "duration",
    "Duration", "ConversationDuration", "DialCallDuration", "TotalDuration", "timestamp",
    "Timestamp", "DateUpdated", "CurrentTime", "EndTime", "StartTime", "DateCreated",
]  # fmt: skip
timestamps = (
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())
    | st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
    | st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "", "now"])
    | safe_text
)
digits_like = st.text(alphabet="0123456789²٣໓ -+", max_size=8)
string_fields = st.dictionaries(
    st.sampled_from(ALIAS_NAMES) | safe_text,
    safe_text | timestamps | digits_like | st.lists(safe_text, max_size=3),
    max_size=10,
)
typed_fields = st.dictionaries(st.sampled_from(ALIAS_NAMES) | safe_text, json_values, max_size=10)
kinds = st.sampled_from([*KINDS, "unknown"])


def run_request_path(kind: str, fields: dict, shape: str) -> None:
    """What handle_webhook runs between reading the body and delivering: may raise only the
    two exceptions it maps to a 400."""
    try:
        norm = normalize(
            kind,
            fields,
            shape,
            customer_id="c1",
            app_id="a1",
            received_at=RECEIVED,
            local_zone=IST,
        )
        spec = SETTINGS.topic(norm.spec)
        event = make_event(spec, norm.data, source="/p", event_id=norm.event_id, time=norm.time)
    except InvalidWebhook as exc:
        assert exc.errors and exc.field
        return
    except SchemaViolation as exc:
        errors = [_readable(e) for e in exc.errors]
        assert isinstance(_field_of(errors[0]), str)
        return
    # Accepted: the record on Kafka reads back as the same event, valid for its topic.
    again = parse_event(event.to_bytes(), spec)
    assert again.data == norm.data
    assert again.id == norm.event_id
    assert again.data["original"] == fields


@given(kind=kinds, fields=string_fields, shape=st.sampled_from(["form", "query", "legacy_json"]))
@example(kind="callback", fields={"CallSid": "x", "DateUpdated": "2026-01-01 10:00:00",
                                  "DialCallDuration": "²"}, shape="form")  # fmt: skip
@example(kind="callback", fields={"CallSid": "x", "DateUpdated": "9999-12-31T23:59:59-05:00"},
         shape="query")  # fmt: skip
def test_string_shapes_never_raise_beyond_a_refusal(kind: str, fields: dict, shape: str) -> None:
    run_request_path(kind, fields, shape)


@given(kind=kinds, fields=typed_fields)
def test_json_shape_never_raises_beyond_a_refusal(kind: str, fields: dict) -> None:
    run_request_path(kind, fields, "json")


@given(
    method=st.sampled_from(["GET", "POST"]),
    content_type=st.sampled_from(
        ["", "application/json", "application/json; charset=utf-8", "application/cloudevents+json",
         "application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
    ) | safe_text,
    body=st.binary(max_size=200) | json_values.map(repr).map(str.encode),
    query=st.lists(st.tuples(st.sampled_from(["token", "CallSid", "a"]) | safe_text, safe_text),
                   max_size=5),
)  # fmt: skip
def test_parse_fields_refuses_cleanly_and_drops_the_token(
    method: str, content_type: str, body: bytes, query: list[tuple[str, str]]
) -> None:
    try:
        fields, shape = parse_fields(method, content_type, body, MultiDict(query))
    except InvalidWebhook as exc:
        assert exc.field in {"body", "content-type"}
        return
    assert shape in {"json", "form", "query"}
    assert isinstance(fields, dict)
    if shape != "json":  # a JSON body is the sender's object; only form and query carry the token
        assert "token" not in fields


@given(fields=st.dictionaries(safe_text.filter(bool), safe_text, max_size=6), token=safe_text)
def test_form_round_trip_keeps_every_field_but_the_token(fields: dict, token: str) -> None:
    body = urlencode({**fields, "token": token}).encode()
    parsed, shape = parse_fields("POST", "application/x-www-form-urlencoded", body, MultiDict())
    assert shape == "form"
    assert parsed == {k: v for k, v in fields.items() if k != "token"}


# Fixed offsets: an ISO string carries an offset, not a zone (no DST gaps to trip over).
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@given(moment=st.datetimes(timezones=offsets, min_value=datetime(1900, 1, 1),
                           max_value=datetime(2200, 1, 1)))  # fmt: skip
def test_timestamp_round_trip_keeps_the_instant(moment: datetime) -> None:
    text = parse_timestamp(moment.isoformat(), IST)
    back = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert back == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert text == format_time(back)


@given(value=json_values | timestamps)
def test_parse_timestamp_raises_only_invalid_webhook(value: object) -> None:
    try:
        text = parse_timestamp(value, IST)
    except InvalidWebhook as exc:
        assert exc.field == "timestamp"
    else:
        assert text.endswith("Z")
