"""Every webhook shape onto the right topic with the right key, id and data (real broker)."""

from __future__ import annotations

import asyncio
import json

from topics.catalog import (
    WEBHOOK_CALL_STATUS,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_RECORDING_READY,
    WEBHOOK_REJECTED,
)
from topics.events import deterministic_id
from workers.exotel_double.payloads import (
    incoming_call_payload,
    missed_call_payload,
    recording_ready_payload,
)

from ..kafka_io import collect
from .conftest import NEXT_SECRET, SECRET

BASE = "/v1/cust_it/app_it"
T0 = "2024-06-15T10:30:00.000Z"


async def wait_ready(client) -> None:
    for _ in range(200):
        if (await client.get("/readyz")).status == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("ingress never became ready")


async def test_every_shape_lands_on_its_topic(ingress_client, unique):
    sid = {
        name: unique(name) for name in ("popup", "rec", "missed", "form", "get", "legacy", "ans")
    }
    async with ingress_client() as (client, settings):
        await wait_ready(client)
        sends = [
            client.post(
                f"{BASE}/popup?token={SECRET}",
                json=incoming_call_payload(call_sid=sid["popup"], timestamp=T0),
            ),
            client.post(
                f"{BASE}/recording?token={NEXT_SECRET}",
                json=recording_ready_payload(call_sid=sid["rec"], timestamp=T0),
            ),
            client.post(
                f"{BASE}/missed-call?token={SECRET}",
                json=missed_call_payload(call_sid=sid["missed"], timestamp=T0),
            ),
            client.post(
                f"{BASE}/popup?token={SECRET}",
                json=incoming_call_payload(call_sid=sid["ans"], timestamp=T0)
                | {"event": "call_answered"},
            ),
            client.post(
                f"{BASE}/callback?token={SECRET}",
                data={
                    "CallSid": sid["form"],
                    "Status": "completed",
                    "DateUpdated": "2024-06-15 16:00:00",
                    "RecordingUrl": "https://recordings.exotel.com/x.mp3",
                },
            ),
            client.get(
                f"{BASE}/callback",
                params={
                    "token": SECRET,
                    "CallSid": sid["get"],
                    "CallFrom": "09876543210",
                    "CallTo": "08000000000",
                    "CallType": "completed",
                    "CurrentTime": "2024-06-15 16:00:00",
                },
            ),
            client.post(
                f"{BASE}/popup?token={SECRET}",
                json={
                    "CallSid": sid["legacy"],
                    "FromNumber": "+919876543210",
                    "ToNumber": "+918000000000",
                    "CallStatus": "busy",
                    "StartTime": "2024-06-15T10:30:00Z",
                    "TotalDuration": "",
                },
            ),
        ]
        responses = await asyncio.gather(*sends)
        bodies = [await r.json() for r in responses]
        assert [r.status for r in responses] == [200] * len(sends), bodies
        assert {b["delivery"] for b in bodies} == {"kafka"}

        incoming, recording, missed, status = await asyncio.gather(
            collect(settings, WEBHOOK_INCOMING_CALL, count=2),
            collect(settings, WEBHOOK_RECORDING_READY, count=1),
            collect(settings, WEBHOOK_MISSED_CALL, count=1),
            collect(settings, WEBHOOK_CALL_STATUS, count=3),
        )
    by_sid = {e.data["call_sid"]: (key, e) for key, e in incoming + recording + missed + status}
    assert set(by_sid) == set(sid.values())
    for key, event in by_sid.values():
        assert key == event.data["call_sid"].encode()
        assert event.customerid == "cust_it" and event.appid == "app_it"

    key, popup = by_sid[sid["popup"]]
    assert popup.id == deterministic_id("popup", sid["popup"], "incoming_call", T0)
    assert popup.id == bodies[0]["id"]
    assert popup.time == T0
    assert popup.data["original"]["call_sid"] == sid["popup"]
    assert popup.data["from"] == "+919876543210"

    _, rec = by_sid[sid["rec"]]
    assert rec.data["recording_url"] == "https://recordings.exotel.com/call_123.mp3"
    assert rec.data["duration"] == 180
    assert by_sid[sid["missed"]][1].data["event"] == "missed_call"
    assert by_sid[sid["ans"]][1].data["event"] == "call_answered"  # on call_status

    _, form = by_sid[sid["form"]]
    assert form.data["source_format"] == "form"
    assert form.time == T0  # 16:00 in Asia/Kolkata
    assert form.data["status"] == "completed"

    _, get = by_sid[sid["get"]]
    assert get.data["source_format"] == "query"
    assert get.data["from"] == "09876543210"
    assert "token" not in get.data["original"]

    _, legacy = by_sid[sid["legacy"]]
    assert legacy.data["source_format"] == "legacy_json"
    assert legacy.data["to"] == "+918000000000"
    assert legacy.time == T0


async def test_refusals_get_their_status_and_a_rejected_record(ingress_client, unique):
    env = {
        "EXOPIPE_INGRESS_BODY_LIMIT_BYTES": "2048",
        "EXOPIPE_INGRESS_RATE_LIMIT_PER_S": "0.001",
        "EXOPIPE_INGRESS_RATE_LIMIT_BURST": "6",
    }
    marker = unique("bad")
    good = incoming_call_payload(call_sid=marker, timestamp=T0)
    url = f"{BASE}/popup?token={SECRET}"

    async def post(data, content_type="application/json", token=SECRET):
        return await client.post(
            f"{BASE}/popup?token={token}", data=data, headers={"Content-Type": content_type}
        )

    async with ingress_client(**env) as (client, settings):
        await wait_ready(client)
        unauthorized = await post(json.dumps(good), token="wrong")
        cases = {
            "bad_json": await post(b'{"call_sid": '),
            "wrong_type": await post(json.dumps(good | {"from": 919876543210})),
            "missing": await post(json.dumps({k: v for k, v in good.items() if k != "to"})),
            "oversize": await post(json.dumps(good | {"pad": "x" * 4096})),
            "unknown_kind": await client.post(f"{BASE}/streaming?token={SECRET}", json=good),
        }
        accepted = await client.post(url, json=good)  # the sixth token of the burst
        limited = await client.post(url, json=good)
        answers = {name: (r.status, (await r.json())["field"]) for name, r in cases.items()}
        rejected = await collect(settings, WEBHOOK_REJECTED, count=5, wait_seconds=20)
        extra = await collect(settings, WEBHOOK_REJECTED, count=6, wait_seconds=3)

    assert unauthorized.status == 401
    assert accepted.status == 200
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert answers == {
        "bad_json": (400, "body"),
        "wrong_type": (400, "from"),
        "missing": (400, "to"),
        "oversize": (413, "body"),
        "unknown_kind": (404, "kind"),
    }
    # Five records, one per refusal; none for the 401 or the 429.
    assert len(extra) == 5
    reasons = sorted(e.data["reason"] for _, e in rejected)
    assert reasons == sorted(
        [
            "invalid_payload",
            "schema_violation",
            "schema_violation",
            "body_too_large",
            "unknown_kind",
        ]
    )
    for _key, event in rejected:
        data = event.data
        assert data["customer_id"] == "cust_it" and data["stage"] == "ingress"
        assert SECRET not in json.dumps(event.to_dict())
        assert data["url"].endswith("?token=%5Bredacted%5D")  # offered, and redacted
    wrong_type = next(e for _, e in rejected if "from" in " ".join(e.data["errors"]))
    assert wrong_type.data["call_sid"] == marker
    assert json.loads(wrong_type.data["body"])["from"] == 919876543210
