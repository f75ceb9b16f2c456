"""Exotel's frames read into our record shape; every unreadable frame refused with its reason."""

from __future__ import annotations

import base64
import json

import pytest

from topics.catalog import STREAM_AUDIO, STREAM_EVENT
from topics.schemas import validate_data
from workers.ingress.stream_continuity import Continuity, Mark
from workers.ingress.stream_frames import (
    FrameRefused,
    StreamTally,
    closed_data,
    frame_data,
    parse_frame,
    sample_rate_of,
)

PCM = bytes(range(256)) * 25  # 6,400 bytes: 400 ms at 8 kHz
IDENTITY = {
    "stream_sid": "S1",
    "customer_id": "c1",
    "app_id": "a1",
    "connection_id": "0b8a0b52-3c1e-4d55-a4a1-2f0f8e2d7a10",
}
T = "2024-06-15T10:30:00.120Z"


def raw(frame: dict) -> bytes:
    return json.dumps(frame).encode()


START = {
    "event": "start",
    "sequence_number": "1",
    "stream_sid": "S1",
    "start": {
        "stream_sid": "S1",
        "call_sid": "C1",
        "account_sid": "A1",
        "from": "+919876543210",
        "to": "08047491899",
        "custom_parameters": {"campaign": "june", "n": 3},
        "media_format": {"encoding": "base64", "sample_rate": "16000", "bit_rate": "256kbps"},
    },
}
MEDIA = {
    "event": "media",
    "sequence_number": 2,
    "stream_sid": "S1",
    "media": {"chunk": "1", "timestamp": "100", "payload": base64.b64encode(PCM).decode()},
}


def test_start_numbers_as_strings_become_integers():
    frame = parse_frame(raw(START))
    assert (frame.event, frame.sequence_number, frame.stream_sid) == ("start", 1, "S1")
    assert frame.fields == {
        "call_sid": "C1",
        "account_sid": "A1",
        "from": "+919876543210",
        "to": "08047491899",
        "custom_parameters": {"campaign": "june", "n": "3"},
        "media_format": {"encoding": "base64", "sample_rate": 16000, "bit_rate": "256kbps"},
    }


def test_start_without_a_media_format_takes_the_urls_rate():
    bare = {"event": "start", "start": {"call_sid": "C1", "stream_sid": "S9"}}
    frame = parse_frame(raw(bare), sample_rate=sample_rate_of("24000"))
    assert frame.stream_sid == "S9"  # from inside start
    assert frame.fields["media_format"] == {
        "encoding": "base64",
        "sample_rate": 24000,
        "bit_rate": None,
    }
    assert frame.fields["custom_parameters"] == {}
    assert sample_rate_of(None) == sample_rate_of("44100") == sample_rate_of("x") == 8000


def test_media_keeps_its_payload_and_counts_its_bytes():
    frame = parse_frame(raw(MEDIA))
    assert frame.media_bytes == len(PCM)
    assert frame.fields == {
        "chunk": 1,
        "timestamp_ms": 100,
        "track": None,
        "payload": MEDIA["media"]["payload"],
        "size_bytes": len(PCM),
    }
    tracked = parse_frame(raw({**MEDIA, "media": {**MEDIA["media"], "track": "outbound"}}))
    assert tracked.fields["track"] == "outbound"


def test_dtmf_mark_stop_and_connected():
    dtmf = parse_frame(raw({"event": "dtmf", "dtmf": {"digit": 5, "duration": "200"}}))
    assert dtmf.fields == {"digit": "5", "duration_ms": 200}
    assert parse_frame(raw({"event": "mark", "mark": {"name": "m1"}})).fields == {"name": "m1"}
    stop = parse_frame(raw({"event": "stop", "stop": {"reason": "callended", "call_sid": "C1"}}))
    assert stop.fields == {"reason": "callended", "call_sid": "C1", "account_sid": None}
    assert parse_frame(raw({"event": "stop"})).fields == {
        "reason": None,
        "call_sid": None,
        "account_sid": None,
    }
    connected = parse_frame(raw({"event": "connected", "protocol": "Call"}))
    assert (connected.fields, connected.sequence_number, connected.stream_sid) == (None, None, None)


@pytest.mark.parametrize(
    ("frame", "reason", "field"),
    [
        (b'{"event": "media", ', "invalid_json", "frame"),
        (b"\xff\xfe", "invalid_json", "frame"),
        (b"[1, 2]", "invalid_frame", "frame"),
        (b'{"sequence_number": 1}', "invalid_frame", "event"),
        (b'{"event": "clear"}', "unknown_event", "event"),
        (raw({**MEDIA, "media": {"payload": "not base64!"}}), "invalid_frame", "media.payload"),
        (raw({**MEDIA, "media": {"payload": "AAE"}}), "invalid_frame", "media.payload"),  # padding
        (raw({**MEDIA, "media": {}}), "invalid_frame", "media.payload"),
        (raw({"event": "media"}), "invalid_frame", "media"),
        (raw({**MEDIA, "sequence_number": "two"}), "invalid_frame", "sequence_number"),
        (raw({**MEDIA, "sequence_number": -1}), "invalid_frame", "sequence_number"),
        (raw({**MEDIA, "sequence_number": True}), "invalid_frame", "sequence_number"),
        (
            raw({**MEDIA, "media": {**MEDIA["media"], "timestamp": "1.5"}}),
            "invalid_frame",
            "media.timestamp",
        ),
        (raw({**MEDIA, "stream_sid": 7}), "invalid_frame", "stream_sid"),
        (raw({"event": "start", "start": {"stream_sid": "S"}}), "invalid_frame", "start.call_sid"),
        (
            raw({**START, "start": {**START["start"], "custom_parameters": {"k": [1]}}}),
            "invalid_frame",
            "start.custom_parameters",
        ),
        (raw({"event": "dtmf", "dtmf": {}}), "invalid_frame", "dtmf.digit"),
        (raw({"event": "mark", "mark": {"name": ""}}), "invalid_frame", "mark.name"),
        (raw({"event": "stop", "stop": "now"}), "invalid_frame", "stop"),
    ],
)
def test_unreadable_frames_are_refused_with_reason_and_field(frame, reason, field):
    with pytest.raises(FrameRefused) as refused:
        parse_frame(frame)
    assert (refused.value.reason, refused.value.field) == (reason, field)
    assert refused.value.errors and refused.value.errors[0].startswith(field)


def test_records_follow_both_schemas():
    continuity = Continuity()
    for frame_raw, index in ((START, 1), (MEDIA, 2)):
        frame = parse_frame(raw(frame_raw))
        mark = continuity.mark(frame.sequence_number)
        continuity.commit(frame.sequence_number, mark)
        data = frame_data(IDENTITY, frame_index=index, received_at=T, frame=frame, mark=mark)
        validate_data(STREAM_AUDIO, data)
        assert data["continuity"] == {"status": "ok", "expected": index, "missing": 0}
        assert data["frame_index"] == index and data[frame.event] == frame.fields
    validate_data(STREAM_EVENT, frame_data(
        IDENTITY, frame_index=1, received_at=T, frame=parse_frame(raw(START)), mark=Mark("ok", 1)
    ))  # fmt: skip
    connected = parse_frame(b'{"event": "connected"}')
    unchecked = continuity.mark(None)
    data = frame_data(IDENTITY, frame_index=0, received_at=T, frame=connected, mark=unchecked)
    validate_data(STREAM_AUDIO, data)
    assert "connected" not in data and data["sequence_number"] is None


def test_closed_carries_every_counter_and_lost_is_what_is_left():
    tally = StreamTally(
        frames=12, forwarded=7, rejected=2, media_frames=5, media_bytes=32000, after_close=2
    )
    continuity = Continuity(gaps=1, missing=3, duplicates=1, out_of_order=2)
    data = closed_data(
        IDENTITY,
        frame_index=10,
        received_at=T,
        reason="spool_full",
        close_code=1013,
        started_at=T,
        tally=tally,
        continuity=continuity,
    )
    validate_data(STREAM_AUDIO, data)
    validate_data(STREAM_EVENT, data)
    assert data["closed"] == {
        "reason": "spool_full",
        "close_code": 1013,
        "started_at": T,
        "frames": 12,
        "media_frames": 5,
        "media_bytes": 32000,
        "gaps": 1,
        "missing": 3,
        "duplicates": 1,
        "out_of_order": 2,
        "rejected": 2,
        "lost": 3,
        "after_close": 2,
    }
    assert data["continuity"] == {"status": "unchecked", "expected": None, "missing": 0}
