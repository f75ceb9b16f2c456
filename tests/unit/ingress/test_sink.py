"""Kafka-or-spool: the bound, FIFO behind a non-empty spool, and no duplicate from a late ack.

A fake producer whose acknowledgements the test settles by hand stands in for the broker; the
same scenarios against a real broker are in tests/integration/ingress.
"""

from __future__ import annotations

import asyncio
import json

from aiokafka.errors import KafkaTimeoutError

from workers.exotel_double.payloads import incoming_call_payload

from .conftest import SECRET, eventually

POPUP = f"/v1/c1/a1/popup?token={SECRET}"


def hook(call_sid: str, second: int = 0) -> dict:
    return incoming_call_payload(call_sid=call_sid, timestamp=f"2024-06-15T10:30:{second:02d}.000Z")


def spooled_files(tmp_path):
    return sorted((tmp_path / "spool").glob("*.rec"))


def sids(sent) -> list[str]:
    return [json.loads(s.value)["data"]["call_sid"] for s in sent]


async def test_late_ack_after_timeout_is_not_sent_twice(make_client, broker, tmp_path):
    broker.auto_ack = False
    async with make_client() as client:
        response = await client.post(POPUP, json=hook("late"))
        assert (await response.json())["delivery"] == "spooled"  # past the 0.2 s bound
        assert len(spooled_files(tmp_path)) == 1
        broker.sent[0].ack.set_result("ok")  # the send that timed out lands after all
        await eventually(lambda: not spooled_files(tmp_path))
    assert sids(broker.sent) == ["late"]  # the drain waited for it instead of sending again


async def test_an_enqueue_waiting_past_the_bound_leaves_nothing_in_the_producer(
    make_client, broker, tmp_path
):
    broker.room = asyncio.Event()  # the producer's batch is full: send() waits for room
    async with make_client() as client:
        response = await client.post(POPUP, json=hook("full"))
        assert (await response.json())["delivery"] == "spooled"  # past the 0.2 s bound
        assert broker.sent == []  # the bound cancelled the enqueue: nothing left to arrive
        broker.room.set()
        await eventually(lambda: not spooled_files(tmp_path))
    assert sids(broker.sent) == ["full"]  # once, from the spool


async def test_failed_send_is_sent_again_from_the_spool(make_client, broker, tmp_path):
    broker.auto_ack = False
    async with make_client() as client:
        await client.post(POPUP, json=hook("retry"))
        broker.sent[0].ack.set_exception(KafkaTimeoutError())
        await eventually(lambda: len(broker.sent) == 2)
        broker.sent[1].ack.set_result("ok")
        await eventually(lambda: not spooled_files(tmp_path))
    assert sids(broker.sent) == ["retry", "retry"]


async def test_new_records_queue_behind_a_non_empty_spool(make_client, broker, tmp_path):
    broker.auto_ack = False
    async with make_client() as client:
        await client.post(POPUP, json=hook("call", 0))  # times out: spool not empty now
        broker.auto_ack = True
        answers = []
        for second in (1, 2, 3):
            response = await client.post(POPUP, json=hook("call", second))
            answers.append((await response.json())["delivery"])
        assert answers == ["spooled"] * 3  # even though the broker acks again
        assert len(broker.sent) == 1  # nothing overtook the first record
        broker.sent[0].ack.set_result("ok")
        await eventually(lambda: not spooled_files(tmp_path))
        times = [json.loads(s.value)["time"] for s in broker.sent]
        assert times == [f"2024-06-15T10:30:0{n}.000Z" for n in range(4)]
        # Spool empty again: straight to Kafka.
        response = await client.post(POPUP, json=hook("call", 4))
        assert (await response.json())["delivery"] == "kafka"


async def test_spool_survives_a_restart_and_drains_once_in_order(make_client, broker, tmp_path):
    broker.reachable = False
    async with make_client() as client:
        for n in range(5):
            response = await client.post(POPUP, json=hook(f"c{n % 2}", n))
            assert response.status == 200
    assert len(spooled_files(tmp_path)) == 5 and broker.sent == []
    broker.reachable = True
    async with make_client() as client:
        await eventually(lambda: not spooled_files(tmp_path))
        metrics = await (await client.get("/metrics")).text()
    assert [json.loads(s.value)["time"][17:19] for s in broker.sent] == [
        "00",
        "01",
        "02",
        "03",
        "04",
    ]
    assert "exopipe_ingress_drained_total 5.0" in metrics
    assert "exopipe_ingress_spool_depth 0.0" in metrics


async def test_full_spool_answers_503(make_client, broker, tmp_path):
    broker.reachable = False
    async with make_client(EXOPIPE_INGRESS_SPOOL_MAX_BYTES="3000") as client:
        statuses = [(await client.post(POPUP, json=hook("x", n))).status for n in range(6)]
        full = await client.post(POPUP, json=hook("x", 9))
        ready = await client.get("/readyz")
    assert statuses[0] == 200 and full.status == 503
    assert full.headers["Retry-After"]
    assert ready.status == 503
