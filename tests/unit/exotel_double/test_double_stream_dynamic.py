"""The double's streaming client and a dynamic endpoint: GET first (credentials as Basic, the
call's parameters added to the query), then the WebSocket it answers with; bad answers fail."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.unit.exotel_double.stream_receiver import running_receiver
from workers.exotel_double.stream_frames import StreamIdentity
from workers.exotel_double.streaming import StreamCall, stream_call
from workers.json_codec import dumps

WHO = StreamIdentity("stream_1", "call_1", "acct_1", "+919800000001", "08047123456")
PATH = "/v1/cust_1/app_1/stream"


def _call(url: str, **options: Any) -> StreamCall:
    options = {"speed": 0.0, "duration_s": 0.2, "retry_delay_s": 0.05, **options}
    return StreamCall(url=url, who=WHO, **options)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_the_endpoint_is_resolved_then_its_websocket_gets_the_stream() -> None:
    async with running_receiver() as receiver:
        host = receiver.base_url.removeprefix("ws://")
        receiver.dynamic_url = f"ws://cust_1:WS-SECRET@{host}{PATH}?sample-rate=16000"
        url = f"http://KEY:TOKEN@{host}/dynamic?sample-rate=16000&lang=hi"
        result = await stream_call(_call(url))
    assert result.state == "completed", result
    [asked] = receiver.resolutions
    assert asked.headers["Authorization"] == _basic("KEY", "TOKEN")
    query = parse_qsl(urlsplit(asked.raw_path).query)
    assert query[:2] == [("sample-rate", "16000"), ("lang", "hi")]
    assert dict(query[2:]) == {
        "CallSid": "call_1",
        "CallFrom": "+919800000001",
        "CallTo": "08047123456",
        "From": "+919800000001",
        "To": "08047123456",
        "Direction": "incoming",
    }
    [handshake] = receiver.handshakes
    assert handshake.headers["Authorization"] == _basic("cust_1", "WS-SECRET")
    assert handshake.raw_path == f"{PATH}?sample-rate=16000"
    assert receiver.events() == ["connected", "start", "media", "media", "stop"]
    [attempt] = result.attempts
    assert attempt["status"] == 101 and "WS-SECRET" not in attempt["resolved_url"]
    assert "TOKEN" not in str(result.describe())


async def test_a_refusing_endpoint_is_tried_once_more() -> None:
    async with running_receiver() as receiver:
        receiver.dynamic_url = receiver.base_url + PATH
        receiver.dynamic_answers = [(503, b"{}")]
        result = await stream_call(_call(receiver.base_url.replace("ws:", "http:") + "/dynamic"))
    assert [a["status"] for a in result.attempts] == [503, 101]
    assert result.state == "completed" and len(receiver.resolutions) == 2


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "not JSON"),
        (dumps({"wss": "ws://h/p"}), "not JSON"),
        (dumps({"url": "https://u:LEAK@h.example/p"}), "not one to stream to"),
        (dumps({"url": "ws://u:LEAK@h.example/p?sample-rate=16000"}), "16000 Hz"),
    ],
    ids=["not-json", "no-url", "not-websocket", "other-rate"],
)
async def test_an_unusable_answer_fails_both_attempts(body: bytes, error: str) -> None:
    async with running_receiver() as receiver:
        receiver.dynamic_answers = [(200, body), (200, body)]
        result = await stream_call(_call(receiver.base_url.replace("ws:", "http:") + "/dynamic"))
    assert result.state == "handshake_failed"
    assert [a["status"] for a in result.attempts] == [200, 200]
    assert all(error in a["error"] for a in result.attempts)
    assert receiver.handshakes == [] and "LEAK" not in str(result.describe())
