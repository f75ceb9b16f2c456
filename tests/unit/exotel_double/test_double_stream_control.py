"""Streamed calls through the control API: they go where the app's settings say, only when
streaming is on, and run in the background until they end or the double is reset."""

from __future__ import annotations

import base64

import pytest

from tests.unit.exotel_double.helpers import APP, CUSTOMER, TOKEN
from tests.unit.exotel_double.stream_receiver import running_receiver
from workers.exotel_double.control import AsyncDoubleControl, ControlError
from workers.exotel_double.runner import DoubleServer
from workers.exotel_double.stream_audio import ToneAudio

PATH = f"/v1/{CUSTOMER}/{APP}/stream"


async def _streaming_app(ctl: AsyncDoubleControl, url: str) -> None:
    settings = {"streaming_enabled": True, "streaming_url": url}
    await ctl.register_app(CUSTOMER, APP, TOKEN, settings)


async def test_a_streamed_call_goes_to_the_apps_streaming_url(ctl: AsyncDoubleControl) -> None:
    async with running_receiver() as receiver:
        host = receiver.base_url.removeprefix("ws://")
        await _streaming_app(ctl, f"ws://{CUSTOMER}:s3cret@{host}{PATH}?sample-rate=16000")
        started = await ctl.start_stream(
            CUSTOMER,
            APP,
            call_sid="call_9",
            stream_sid="stream_9",
            from_="+919811111111",
            custom_parameters={"lang": "hi"},
            duration_s=0.5,
            speed=0,
            seed="s9",
            dtmf=[{"at_s": 0.1, "digit": "#"}],
        )
        assert started["stream_sid"] == "stream_9"
        assert "s3cret" not in started["url"]
        done = await ctl.stream("stream_9", wait_s=10)
    assert done["state"] == "completed", done
    assert done["done"] is True
    assert receiver.events()[:3] == ["connected", "start", "dtmf"]
    start = receiver.frames[1]["start"]
    assert start["call_sid"] == "call_9"
    assert start["from"] == "+919811111111"
    assert start["account_sid"] == CUSTOMER  # the account defaults to the customer
    assert start["custom_parameters"] == {"lang": "hi"}
    auth = receiver.handshakes[0].headers["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")) == f"{CUSTOMER}:s3cret".encode()
    audio = done["audio"]
    assert audio == {
        "seed": "s9",
        "sample_rate": 16000,
        "tone_hz": 440.0,
        "total_bytes": 16000,
        "duration_ms": 500,
    }
    rebuilt = ToneAudio(audio["seed"], audio["sample_rate"], audio["total_bytes"], audio["tone_hz"])
    sent = b"".join(base64.b64decode(m["media"]["payload"]) for m in receiver.media())
    assert sent == rebuilt.pcm()
    assert done["audio_sha256"] == rebuilt.sha256()
    assert [s["stream_sid"] for s in await ctl.streams()] == ["stream_9"]


async def test_track_both_sends_the_caller_as_inbound_and_the_agent_as_outbound(
    ctl: AsyncDoubleControl,
) -> None:
    async with running_receiver() as receiver:
        await _streaming_app(ctl, receiver.base_url + PATH)
        started = await ctl.start_stream(
            CUSTOMER, APP, stream_sid="both", duration_s=0.4, speed=0, track="both"
        )
        done = await ctl.stream("both", wait_s=10)
    assert done["state"] == "completed", done
    assert (started["track"], done["media_frames"], done["duration_ms"]) == ("both", 4, 400)
    by_track: dict[str, bytes] = {"inbound": b"", "outbound": b""}
    for media in receiver.media():
        by_track[media["media"]["track"]] += base64.b64decode(media["media"]["payload"])
    for track, described in (("inbound", done["audio"]), ("outbound", done["outbound_audio"])):
        rebuilt = ToneAudio(
            described["seed"], described["sample_rate"], described["total_bytes"],
            described["tone_hz"],
        )  # fmt: skip
        assert by_track[track] == rebuilt.pcm()


async def test_an_app_that_does_not_stream_is_refused(ctl: AsyncDoubleControl) -> None:
    await ctl.register_app(CUSTOMER, APP, TOKEN, {"streaming_url": "ws://127.0.0.1:9/s"})
    with pytest.raises(ControlError, match="409"):
        await ctl.start_stream(CUSTOMER, APP)
    await ctl.register_app(CUSTOMER, APP, TOKEN, {"streaming_enabled": True})
    with pytest.raises(ControlError, match="409"):
        await ctl.start_stream(CUSTOMER, APP)
    with pytest.raises(ControlError, match="404"):
        await ctl.start_stream(CUSTOMER, "no-such-app")


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("ftp://h.example.com/s", {}, "ws:// or wss://, or resolves an http"),
        ("ws://h.example.com/s?sample-rate=11025", {}, "sample-rate"),
        ("ws://h.example.com/s", {"chunk_bytes": 3000}, "multiple of 320"),
        ("ws://h.example.com/s", {"chunk_bytes": 320}, "multiple of 320"),
        ("ws://h.example.com/s", {"duration_s": 4000}, "duration_s"),
        ("ws://h.example.com/s", {"dtmf": [{"at_s": 1, "digit": "x"}]}, "digit"),
        ("ws://h.example.com/s", {"custom_parameters": {"a": 1}}, "custom_parameters"),
        ("ws://h.example.com/s", {"speeed": 2}, "unknown key"),
        ("ws://h.example.com/s", {"track": "mixed"}, "track"),
    ],
)
async def test_bad_stream_requests_are_400(
    ctl: AsyncDoubleControl, url: str, options: dict[str, object], message: str
) -> None:
    await _streaming_app(ctl, url)
    with pytest.raises(ControlError, match=message):
        await ctl.start_stream(CUSTOMER, APP, **options)


async def test_a_stream_sid_is_used_once(ctl: AsyncDoubleControl) -> None:
    async with running_receiver() as receiver:
        await _streaming_app(ctl, receiver.base_url + PATH)
        await ctl.start_stream(CUSTOMER, APP, stream_sid="once", duration_s=0.2, speed=0)
        with pytest.raises(ControlError, match="409"):
            await ctl.start_stream(CUSTOMER, APP, stream_sid="once")
        await ctl.stream("once", wait_s=10)


async def test_reset_stops_a_stream_that_is_still_sending(
    double: DoubleServer, ctl: AsyncDoubleControl
) -> None:
    async with running_receiver() as receiver:
        await _streaming_app(ctl, receiver.base_url + PATH)
        await ctl.start_stream(CUSTOMER, APP, stream_sid="long", duration_s=600, speed=1)
        await receiver.wait_for(lambda: len(receiver.frames) >= 2)
        run = double.state.streams["long"]
        await ctl.reset()
        await run.wait(5.0)
        assert run.result.state == "cancelled"
        await receiver.wait_for(lambda: receiver.connections_ended == 1)
        assert receiver.events() == ["connected", "start"]
    assert await ctl.streams() == []


async def test_shutting_the_double_down_cancels_its_streams() -> None:
    async with running_receiver() as receiver:
        async with DoubleServer() as double, AsyncDoubleControl(double.base_url) as ctl:
            await _streaming_app(ctl, receiver.base_url + PATH)
            await ctl.start_stream(CUSTOMER, APP, stream_sid="s", duration_s=600)
            await receiver.wait_for(lambda: bool(receiver.frames))
            run = double.state.streams["s"]
        assert run.task.done()
        assert run.result.state == "cancelled"
