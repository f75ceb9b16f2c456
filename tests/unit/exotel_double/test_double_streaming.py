"""The double's streaming client against a WebSocket server started here: frame shapes and
order, sequence numbers, the Basic header, chunk sizes, the handshake retry, pacing, early close."""

from __future__ import annotations

import base64
import itertools
import time
from typing import Any

import pytest

from tests.unit.exotel_double.stream_receiver import Receiver, running_receiver
from workers.exotel_double.stream_audio import ToneAudio
from workers.exotel_double.stream_frames import StreamIdentity
from workers.exotel_double.streaming import (
    Dtmf,
    Mark,
    StreamCall,
    planned_frames,
    sample_rate_of,
    split_credentials,
    stream_call,
)

WHO = StreamIdentity("stream_1", "call_1", "acct_1", "+919800000001", "08047123456", {"k": "v"})
PATH = "/v1/cust_1/app_1/stream"


def _call(url: str, **options: Any) -> StreamCall:
    return StreamCall(url=url, who=WHO, **{"speed": 0.0, "duration_s": 1.0, **options})


def _payloads(receiver: Receiver) -> list[bytes]:
    return [base64.b64decode(frame["media"]["payload"]) for frame in receiver.media()]


async def test_frames_arrive_in_exotel_shape_and_order() -> None:
    async with running_receiver() as receiver:
        call = _call(
            receiver.base_url + PATH,
            dtmf=(Dtmf(0.5, "5", 250),),
            marks=(Mark(0.7, "m1"),),
        )
        result = await stream_call(call)
    assert result.state == "completed", result
    # 1 s at 8 kHz, 16-bit: 16,000 bytes = 5 chunks of 3,200 (200 ms each).
    assert receiver.events() == [
        "connected",
        "start",
        "media",
        "media",
        "dtmf",
        "media",
        "mark",
        "media",
        "media",
        "stop",
    ]
    assert receiver.frames[0] == {"event": "connected"}
    assert receiver.frames[1] == {
        "event": "start",
        "sequence_number": 1,
        "stream_sid": "stream_1",
        "start": {
            "stream_sid": "stream_1",
            "call_sid": "call_1",
            "account_sid": "acct_1",
            "from": "+919800000001",
            "to": "08047123456",
            "custom_parameters": {"k": "v"},
            "media_format": {"encoding": "base64", "sample_rate": "8000", "bit_rate": "128kbps"},
        },
    }
    numbered = [frame["sequence_number"] for frame in receiver.frames[1:]]
    assert numbered == list(range(1, len(receiver.frames)))
    media = receiver.media()
    assert [m["media"]["chunk"] for m in media] == [1, 2, 3, 4, 5]
    assert [m["media"]["timestamp"] for m in media] == ["200", "400", "600", "800", "1000"]
    assert all(set(m) == {"event", "sequence_number", "stream_sid", "media"} for m in media)
    assert all(set(m["media"]) == {"chunk", "timestamp", "payload"} for m in media)
    assert [len(p) for p in _payloads(receiver)] == [3200] * 5
    assert b"".join(_payloads(receiver)) == ToneAudio.lasting(1.0, "stream_1").pcm()
    dtmf = receiver.frames[4]
    assert dtmf["dtmf"] == {"duration": "250", "digit": "5"}
    assert receiver.frames[6]["mark"] == {"name": "m1"}
    assert receiver.frames[-1]["stop"] == {
        "call_sid": "call_1",
        "account_sid": "acct_1",
        "reason": "callended",
    }
    assert receiver.client_close_code == 1000  # the client closed, after stop
    assert result.closed_by == "client"
    assert result.frames_sent == len(receiver.frames)
    assert result.media_bytes == 16_000
    assert result.describe()["duration_ms"] == 1000
    assert result.describe()["audio_sha256"] == ToneAudio.lasting(1.0, "stream_1").sha256()


async def test_url_credentials_become_a_basic_header_and_the_query_is_kept() -> None:
    async with running_receiver() as receiver:
        host = receiver.base_url.removeprefix("ws://")
        url = f"ws://KEY:TO%40KEN@{host}{PATH}?sample-rate=16000&lang=hi"
        result = await stream_call(_call(url, duration_s=0.2))
    assert result.state == "completed"
    [handshake] = receiver.handshakes
    expected = base64.b64encode(b"KEY:TO@KEN").decode()
    assert handshake.headers["Authorization"] == f"Basic {expected}"
    assert handshake.raw_path == f"{PATH}?sample-rate=16000&lang=hi"  # the request line
    assert handshake.headers["Host"] == host
    assert "TO" not in result.url.split("@")[0].split(":")[-1]  # redacted in the result
    start = receiver.frames[1]["start"]["media_format"]
    assert start == {"encoding": "base64", "sample_rate": "16000", "bit_rate": "256kbps"}
    # 0.2 s at 16 kHz is 6,400 bytes: two chunks of 3,200 (100 ms each at this rate).
    assert [len(p) for p in _payloads(receiver)] == [3200, 3200]
    assert [m["media"]["timestamp"] for m in receiver.media()] == ["100", "200"]


async def test_no_userinfo_means_no_authorization_header() -> None:
    async with running_receiver() as receiver:
        await stream_call(_call(receiver.base_url + PATH, duration_s=0.2))
    assert "Authorization" not in receiver.handshakes[0].headers


async def test_a_refused_handshake_is_tried_once_more() -> None:
    async with running_receiver() as receiver:
        receiver.refuse = [503]
        result = await stream_call(_call(receiver.base_url + PATH, retry_delay_s=0.05))
    assert [h.status for h in receiver.handshakes] == [503, 101]
    assert [a["status"] for a in result.attempts] == [503, 101]
    assert result.state == "completed"
    assert receiver.events()[0] == "connected"


async def test_two_failed_handshakes_give_the_stream_up() -> None:
    async with running_receiver() as receiver:
        receiver.refuse = [401, 401, 401]
        result = await stream_call(_call(receiver.base_url + PATH, retry_delay_s=0.05))
    assert len(receiver.handshakes) == 2
    assert result.state == "handshake_failed"
    assert [a["status"] for a in result.attempts] == [401, 401]
    assert receiver.frames == []


async def test_a_receiver_that_is_not_there_is_tried_twice() -> None:
    async with running_receiver() as receiver:
        url = receiver.base_url + PATH
    result = await stream_call(_call(url, retry_delay_s=0.05))
    assert result.state == "handshake_failed"
    assert [a["status"] for a in result.attempts] == [None, None]
    assert all("ConnectError" in a["error"] for a in result.attempts)


async def test_a_receiver_closing_early_ends_the_stream_without_raising() -> None:
    async with running_receiver() as receiver:
        receiver.close_after, receiver.close_code = 4, 1009
        result = await stream_call(_call(receiver.base_url + PATH, duration_s=3.0))
    assert result.state == "closed_by_receiver"
    assert result.closed_by == "server"
    assert result.close_code == 1009
    assert 4 <= result.frames_sent < 18
    assert len(receiver.frames) == 4


async def test_a_cut_connection_fails_the_stream_without_raising() -> None:
    async with running_receiver() as receiver:
        receiver.drop_after = 3
        result = await stream_call(_call(receiver.base_url + PATH, duration_s=3.0, speed=20))
    assert result.state == "failed", result
    assert result.close_code is None and result.closed_by is None
    assert result.error
    assert 3 <= result.frames_sent < 18


async def test_what_the_receiver_sends_back_is_counted() -> None:
    async with running_receiver() as receiver:
        receiver.reply = True
        result = await stream_call(_call(receiver.base_url + PATH, duration_s=0.4))
    assert result.state == "completed"
    assert result.messages_received == len(receiver.frames)


@pytest.mark.parametrize(("speed", "low", "high"), [(1.0, 0.95, 1.5), (4.0, 0.24, 0.6)])
async def test_real_time_pace_and_the_speed_factor(speed: float, low: float, high: float) -> None:
    async with running_receiver() as receiver:
        started = time.monotonic()
        result = await stream_call(_call(receiver.base_url + PATH, speed=speed))
        elapsed = time.monotonic() - started
    assert result.state == "completed"
    assert low <= elapsed <= high, elapsed
    arrivals = zip(receiver.arrived_at, receiver.frames, strict=True)
    media_times = [t for t, frame in arrivals if frame["event"] == "media"]
    gaps = [b - a for a, b in itertools.pairwise(media_times)]
    # Each 200 ms chunk leaves when its audio has played, scaled by the speed.
    assert all(0.2 / speed * 0.5 <= gap <= 0.2 / speed * 2 for gap in gaps), gaps


async def test_speed_zero_sends_as_fast_as_it_can() -> None:
    async with running_receiver() as receiver:
        started = time.monotonic()
        result = await stream_call(_call(receiver.base_url + PATH, duration_s=10.0))
        elapsed = time.monotonic() - started
    assert result.media_frames == 50
    assert elapsed < 2.0


def test_planned_frames_put_keys_and_marks_at_their_time_and_stop_last() -> None:
    call = _call(
        "ws://h/s",
        duration_s=0.6,
        dtmf=(Dtmf(0.0, "1"), Dtmf(9.0, "#")),
        marks=(Mark(0.2, "at-first-chunk-end"),),
    )
    planned = list(planned_frames(call))
    shown = [(p.frame["event"], round(p.due_s, 3)) for p in planned]
    assert shown == [
        ("connected", 0.0),
        ("start", 0.0),
        ("dtmf", 0.0),
        ("mark", 0.2),
        ("media", 0.2),
        ("media", 0.4),
        ("media", 0.6),
        ("dtmf", 0.6),  # after the audio's end: still before stop
        ("stop", 0.6),
    ]


def test_sample_rate_comes_from_the_url() -> None:
    assert sample_rate_of("wss://h/s") == 8000
    assert sample_rate_of("wss://h/s?a=1&sample-rate=24000") == 24000
    with pytest.raises(ValueError, match="sample-rate"):
        sample_rate_of("wss://h/s?sample-rate=44100")


def test_split_credentials_keeps_everything_but_the_userinfo() -> None:
    bare, headers = split_credentials("wss://u%3Ax:p%2Fw@h.example.com:8443/p?x=1")
    assert bare == "wss://h.example.com:8443/p?x=1"
    assert headers == {"Authorization": "Basic " + base64.b64encode(b"u:x:p/w").decode()}
    assert split_credentials("ws://h/p") == ("ws://h/p", {})


async def test_a_url_the_double_cannot_stream_to_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://, or resolves an http"):
        await stream_call(_call("ftp://h.example.com/dynamic"))


def test_tone_audio_is_deterministic_and_no_two_blocks_repeat() -> None:
    audio = ToneAudio.lasting(2.0, "seed-a")
    assert audio.total_bytes == 32_000 and audio.duration_ms == 2000
    assert audio.pcm() == ToneAudio.lasting(2.0, "seed-a").pcm()
    assert audio.pcm() != ToneAudio.lasting(2.0, "seed-b").pcm()
    # The samples do not depend on how the stream is cut into chunks.
    assert b"".join(audio.chunks(3200)) == b"".join(audio.chunks(6400)) == audio.pcm()
    blocks = list(audio.chunks(320))
    assert len(set(blocks)) == len(blocks)
    # Little-endian 16-bit: the first sample is the noise around sin(0) = 0.
    first = int.from_bytes(audio.pcm()[:2], "little", signed=True)
    assert -128 <= first <= 127
    # Lengths are whole 320-byte blocks, as Exotel's chunks are.
    assert ToneAudio.lasting(0.015, "s").total_bytes == 320


def test_track_both_sends_each_chunk_as_inbound_then_outbound_with_one_timestamp() -> None:
    call = _call("ws://127.0.0.1:1/s", duration_s=1.0, track="both")
    media = [p for p in planned_frames(call) if p.pcm is not None]
    assert len(media) == 2 * 5  # 1 s at 8 kHz in 200 ms chunks, on each track
    tracks = [p.frame["media"]["track"] for p in media]
    assert tracks == ["inbound", "outbound"] * 5
    numbers = [p.frame["sequence_number"] for p in media]
    assert numbers == list(range(2, 12))  # one each: Exotel numbers every frame
    for inbound, outbound in zip(media[0::2], media[1::2], strict=True):
        assert inbound.frame["media"]["chunk"] == outbound.frame["media"]["chunk"]
        assert inbound.frame["media"]["timestamp"] == outbound.frame["media"]["timestamp"]
    assert call.outbound_audio is not None
    assert b"".join(p.pcm for p in media[0::2]) == call.audio.pcm()
    assert b"".join(p.pcm for p in media[1::2]) == call.outbound_audio.pcm()
    assert call.audio.pcm() != call.outbound_audio.pcm()
    assert _call("ws://127.0.0.1:1/s", track="inbound").outbound_audio is None
