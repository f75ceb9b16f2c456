"""Webhook payload builders against the spec's examples, and the emitter against a receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web

from tests.unit.exotel_double.helpers import free_port
from workers.exotel_double.control import AsyncDoubleControl, ControlError
from workers.exotel_double.emitter import Webhook, emit
from workers.exotel_double.payloads import (
    build_payload,
    call_status_payload,
    incoming_call_payload,
    missed_call_payload,
    recording_ready_payload,
)
from workers.exotel_double.runner import DoubleServer
from workers.json_codec import loads

SPEC_POPUP = {
    "event": "incoming_call",
    "call_sid": "call_123",
    "from": "+919876543210",
    "to": "sip:user@app.exotel.com",
    "timestamp": "2024-06-15T10:30:00.000Z",
}
SPEC_RECORDING = {
    "event": "recording_ready",
    "call_sid": "call_123",
    "recording_url": "https://recordings.exotel.com/call_123.mp3",
    "duration": 180,
    "timestamp": "2024-06-15T10:35:00.000Z",
}


def test_builders_reproduce_the_spec_examples() -> None:
    popup = incoming_call_payload(timestamp=datetime(2024, 6, 15, 10, 30, tzinfo=UTC))
    assert popup == SPEC_POPUP
    assert list(popup) == list(SPEC_POPUP)
    recording = recording_ready_payload(timestamp="2024-06-15T10:35:00.000Z")
    assert recording == SPEC_RECORDING
    assert list(recording) == list(SPEC_RECORDING)


def test_missed_call_and_call_status_shapes() -> None:
    missed = missed_call_payload(call_sid="c9", from_="+911234", to="sip:a@b", timestamp="T")
    assert missed == {
        "event": "missed_call",
        "call_sid": "c9",
        "from": "+911234",
        "to": "sip:a@b",
        "timestamp": "T",
    }
    status = call_status_payload(
        call_sid="c9",
        status="no-answer",
        date_updated=datetime(2024, 6, 15, 10, 30, tzinfo=UTC),
        extra={"Direction": "inbound"},
    )
    assert status == {
        "CallSid": "c9",
        "Status": "no-answer",
        "DateUpdated": "2024-06-15 16:00:00",  # India time, no zone, as Exotel sends it
        "RecordingUrl": None,
        "Direction": "inbound",
    }


def test_default_timestamps_are_now_in_the_spec_format() -> None:
    stamp = incoming_call_payload()["timestamp"]
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


def test_build_payload_overlays_wire_fields() -> None:
    payload = build_payload("incoming_call", {"from": "+10", "direction": "inbound"})
    assert payload["from"] == "+10"
    assert payload["direction"] == "inbound"
    assert payload["event"] == "incoming_call"
    with pytest.raises(ValueError, match="unknown webhook kind"):
        build_payload("hangup")


class Receiver:
    """A tiny webhook receiver that records what it got and answers scripted statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[str, str, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, request.content_type, await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver([])
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield rec, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_emit_through_the_control_api(
    ctl: AsyncDoubleControl, double: DoubleServer, receiver: tuple[Receiver, str]
) -> None:
    rec, base = receiver
    rec.statuses = [200, 500, 204]
    results = await ctl.emit(
        f"{base}/webhook/popup",
        [
            {"kind": "incoming_call", "fields": {"call_sid": "call_9"}},
            "recording_ready",
            {"kind": "missed_call", "fields": {"timestamp": "2024-06-15T10:30:00.000Z"}},
        ],
    )
    assert [r["status"] for r in results] == [200, 500, 204]
    assert [r["kind"] for r in results] == ["incoming_call", "recording_ready", "missed_call"]
    assert all(r["error"] is None for r in results)
    assert [path for path, _, _ in rec.received] == ["/webhook/popup"] * 3
    assert all(ctype == "application/json" for _, ctype, _ in rec.received)
    bodies = [loads(body) for _, _, body in rec.received]
    assert bodies == [r["payload"] for r in results]
    assert bodies[0]["call_sid"] == "call_9"
    assert bodies[0]["event"] == "incoming_call"
    assert bodies[1]["event"] == "recording_ready"
    assert bodies[2] == {
        "event": "missed_call",
        "call_sid": "call_123",
        "from": "+919876543210",
        "to": "sip:user@app.exotel.com",
        "timestamp": "2024-06-15T10:30:00.000Z",
    }


async def test_emit_form_encoded_status_callback(receiver: tuple[Receiver, str]) -> None:
    rec, base = receiver
    payload = call_status_payload(call_sid="c1", recording_url="https://r/c1.mp3")
    (result,) = await emit(f"{base}/status", [Webhook(payload, "form", "call_status")])
    assert result.status == 200
    ((path, ctype, body),) = rec.received
    assert ctype == "application/x-www-form-urlencoded"
    assert b"CallSid=c1" in body
    assert b"Status=completed" in body
    assert b"RecordingUrl=https%3A%2F%2Fr%2Fc1.mp3" in body


async def test_emit_to_a_dead_receiver_reports_the_error(
    ctl: AsyncDoubleControl, double: DoubleServer
) -> None:
    (result,) = await ctl.emit(f"http://127.0.0.1:{free_port()}/x", ["missed_call"])
    assert result["status"] is None
    assert "ConnectError" in result["error"]


async def test_emit_rejects_unknown_kinds(ctl: AsyncDoubleControl, double: DoubleServer) -> None:
    with pytest.raises(ControlError, match="unknown webhook kind"):
        await ctl.emit("http://127.0.0.1:1/x", ["hangup"])
