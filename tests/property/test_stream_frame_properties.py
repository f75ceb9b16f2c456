"""Properties of the stream frame reader: whatever a frame holds, reading it raises only
``FrameRefused``, and a frame it reads makes a record the topic's schema accepts or refuses with
``SchemaViolation`` (which the connection records as a rejected frame): never anything else, so
no frame can end a stream by an exception."""

from __future__ import annotations

import base64
import json

from hypothesis import example, given
from hypothesis import strategies as st

from topics.catalog import STREAM_AUDIO
from topics.schemas import SchemaViolation, validate_data
from workers.ingress.stream_continuity import Continuity
from workers.ingress.stream_frames import EVENTS, FrameRefused, frame_data, parse_frame

from .strategies import json_values, safe_text

IDENTITY = {"stream_sid": "S", "customer_id": "c", "app_id": "a", "connection_id": "x"}
numbers = st.integers(-5, 2**40) | st.floats(allow_nan=False) | safe_text | st.none()
payloads = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()) | safe_text
# Frames shaped like Exotel's, with any value in any field, and fields of other events too.
frames = st.fixed_dictionaries(
    {"event": st.sampled_from(sorted(EVENTS)) | safe_text},
    optional={
        "sequence_number": numbers,
        "stream_sid": safe_text | json_values,
        "start": st.fixed_dictionaries(
            {},
            optional={
                "call_sid": safe_text | json_values,
                "stream_sid": safe_text,
                "custom_parameters": st.dictionaries(safe_text, json_values, max_size=20)
                | json_values,
                "media_format": st.fixed_dictionaries(
                    {}, optional={"sample_rate": numbers, "encoding": safe_text | json_values}
                ),
            },
        )
        | json_values,
        "media": st.fixed_dictionaries(
            {},
            optional={
                "payload": payloads | json_values,
                "chunk": numbers,
                "timestamp": numbers,
                "track": safe_text | json_values,
            },
        )  # fmt: skip
        | json_values,
        "dtmf": st.fixed_dictionaries({}, optional={"digit": numbers, "duration": numbers}),
        "mark": st.fixed_dictionaries({}, optional={"name": safe_text | json_values}),
        "stop": st.fixed_dictionaries({}, optional={"reason": safe_text | json_values})
        | json_values,
    },
)


@given(frame=frames)
@example(frame={"event": "media", "sequence_number": "\u00b2"})  # a digit int() cannot read
@example(frame={"event": "start", "start": {"call_sid": "C", "custom_parameters": {"k": 1.5}}})
def test_a_frame_is_read_or_refused_and_its_record_is_valid_or_refused(frame):
    raw = json.dumps(frame).encode()
    try:
        read = parse_frame(raw)
    except FrameRefused as refused:
        assert refused.reason in {"invalid_json", "invalid_frame", "unknown_event"}
        assert refused.errors and refused.errors[0].startswith(refused.field)
        return
    assert read.event == frame["event"]
    continuity = Continuity()
    mark = continuity.mark(read.sequence_number)
    data = frame_data(IDENTITY, frame_index=0, received_at="2026-01-02T03:04:05.000Z",
                      frame=read, mark=mark)  # fmt: skip
    try:
        validate_data(STREAM_AUDIO, data)
    except SchemaViolation:
        return
    continuity.commit(read.sequence_number, mark)


@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_are_read_or_refused(raw):
    try:
        parse_frame(raw)
    except FrameRefused:
        pass
