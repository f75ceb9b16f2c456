"""The double's streaming client resolves the dynamic endpoint of an in-process ingress on the
real broker, then streams a short call to the URL it answered: every frame lands on Kafka."""

from __future__ import annotations

import base64

import pytest

from topics.catalog import STREAM_AUDIO
from workers.exotel_double.stream_frames import StreamIdentity
from workers.exotel_double.streaming import StreamCall, stream_call

from .conftest import SECRET
from .test_ingress_kafka import wait_ready
from .test_spool_restart import free_port
from .test_stream_kafka import read_stream

ENDPOINT = "/v1/cust_it/app_it/stream/url?sample-rate=16000"


@pytest.mark.parametrize("form", ["token", "basic"])
async def test_the_double_streams_to_the_url_the_ingress_answers(ingress_client, unique, form):
    port = free_port()
    if form == "token":
        url = f"http://127.0.0.1:{port}{ENDPOINT}&token={SECRET}"
    else:
        url = f"http://cust_it:{SECRET}@127.0.0.1:{port}{ENDPOINT}"
    who = StreamIdentity(stream_sid=unique("S"), call_sid=unique("C"), account_sid="cust_it")
    # 1 s at 16 kHz: 32,000 bytes, 10 chunks of 3,200.
    call = StreamCall(url=url, who=who, duration_s=1.0, speed=0.0)
    public = {"EXOPIPE_INGRESS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    async with ingress_client(port=port, **public) as (client, settings):
        await wait_ready(client)
        result = await stream_call(call)
        audio = await read_stream(settings, STREAM_AUDIO, who.stream_sid, 14)
    assert result.state == "completed", result.describe()
    [attempt] = result.attempts
    assert attempt["status"] == 101
    assert attempt["resolved_url"].startswith(f"ws://{'cust_it:' if form == 'basic' else ''}")
    assert SECRET not in str(result.describe())
    kinds = [e.data["event"] for e in audio]
    assert kinds == ["connected", "start"] + ["media"] * 10 + ["stop", "closed"]
    sent = b"".join(base64.b64decode(e.data["media"]["payload"]) for e in audio[2:12])
    assert sent == call.audio.pcm()
    assert audio[1].data["start"]["call_sid"] == who.call_sid
    assert audio[1].data["start"]["media_format"]["sample_rate"] == 16000
    closed = audio[-1].data["closed"]
    assert (closed["reason"], closed["media_frames"], closed["lost"]) == ("stop_received", 10, 0)
