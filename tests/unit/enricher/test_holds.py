"""Held missed calls (no popup yet) go out in the order they were read, once each.

Stage one's logic against tables and topics faked in memory: the order of releases, the due time
of a hold read again after a rebalance, and a call held while another event of it goes out. The
integration and fault tests run the same code in a real worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from topics.catalog import WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL
from topics.events import deterministic_id, format_time, make_event
from workers import json_codec
from workers.config import EnricherSettings
from workers.enricher import agents
from workers.enricher.agents import Enricher, Outputs, Position
from workers.enricher.hours import parse_hours_book
from workers.enricher.outbox import collecting
from workers.enricher.tables import EnricherTables

PARTITION = 3


class Table:
    """A table as the enricher sees one: JSON dicts by key (values copied in and out)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.data.get(key)
        return None if raw is None else json_codec.loads(raw)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = json_codec.dumps(value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, raw in list(self.data.items()):
            yield key, json_codec.loads(raw)


class Topic:
    """faust's ``send``: queued now, on Kafka when ``delivered`` is set."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.delivered = asyncio.Event()
        self.delivered.set()

    async def send(self, *, key: Any, value: bytes) -> asyncio.Future[None]:
        self.sent.append(json_codec.loads(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def deliver() -> None:
            await self.delivered.wait()
            done.set_result(None)

        asyncio.get_running_loop().create_task(deliver())
        return done


def new_enricher() -> tuple[Enricher, Topic]:
    by_caller = Topic()
    tables = EnricherTables(*(Table(n) for n in ("popups", "handled", "pending", "callers")))
    outputs = Outputs(by_caller=by_caller, enriched=Topic(), rejected=Topic())
    enricher = Enricher(
        EnricherSettings(grace_seconds=3.0),
        tables,  # type: ignore[arg-type]
        outputs,
        parse_hours_book({}),
        settings_view=None,  # type: ignore[arg-type]  # stage two only
    )
    return enricher, by_caller


def webhook(kind: str, call_sid: str, second: int) -> bytes:
    at = datetime(2026, 11, 24, 10, 0, second, tzinfo=UTC)
    body = {
        "event": kind,
        "call_sid": call_sid,
        "customer_id": "acme",
        "app_id": "app1",
        "from": "09876543210",
        "to": "sip:agent7@acme.exotel.com",
        "timestamp": format_time(at),
        "received_at": format_time(at),
        "source_format": "json",
        "original": {},
    }
    spec = WEBHOOK_MISSED_CALL if kind == "missed_call" else WEBHOOK_INCOMING_CALL
    event_id = deterministic_id(kind, call_sid, str(second))
    return make_event(spec, body, source="test", event_id=event_id).to_bytes()


def missed(call_sid: str, second: int) -> bytes:
    return webhook("missed_call", call_sid, second)


def popup(call_sid: str, second: int) -> bytes:
    return webhook("incoming_call", call_sid, second)


def at(offset: int) -> Position:
    return Position("missed", PARTITION, offset)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    now = [1_000_000]
    monkeypatch.setattr(agents, "now_ms", lambda: now[0])
    return now


async def test_holds_due_in_the_same_millisecond_go_out_in_the_order_they_were_read(
    clock: list[int],
) -> None:
    """c3r10 sorts before c3r9 by name; it was read after it, so it goes out after it."""
    enricher, by_caller = new_enricher()
    await enricher.on_missed(missed("c3r9", 9), at(9))
    await enricher.on_missed(missed("c3r10", 10), at(10))
    clock[0] += 3_000
    await enricher.on_tick(b"", Position("ticks", PARTITION, 0))
    assert [stage["call_sid"] for stage in by_caller.sent] == ["c3r9", "c3r10"]


async def test_a_hold_read_again_keeps_its_due_time(clock: list[int]) -> None:
    """After a rebalance the call is read again: it must not wait a second grace period while
    the caller's later calls, read for the first time, go out before it."""
    enricher, by_caller = new_enricher()
    await enricher.on_missed(missed("c3r3", 3), at(3))
    due = enricher.tables.pending.get("c3r3")["due"]  # type: ignore[index]
    clock[0] += 2_000
    await enricher.on_missed(missed("c3r3", 3), at(3))  # the same record, redelivered
    await enricher.on_missed(missed("c3r4", 4), at(4))
    assert enricher.tables.pending.get("c3r3")["due"] == due  # type: ignore[index]
    clock[0] += 1_000
    await enricher.on_tick(b"", Position("ticks", PARTITION, 0))
    assert [stage["call_sid"] for stage in by_caller.sent] == ["c3r3"]


async def test_a_call_held_while_its_hold_goes_out_is_not_forgotten(clock: list[int]) -> None:
    enricher, by_caller = new_enricher()
    await enricher.on_missed(missed("c3r5", 5), at(5))
    clock[0] += 3_000
    by_caller.delivered.clear()  # the forward waits for Kafka...
    tick = asyncio.create_task(enricher.on_tick(b"", Position("ticks", PARTITION, 0)))
    await asyncio.sleep(0.01)
    assert len(by_caller.sent) == 1
    await enricher.on_missed(missed("c3r5", 6), at(6))  # ...while Exotel's second event comes
    by_caller.delivered.set()
    await tick
    clock[0] += 3_000
    await enricher.on_tick(b"", Position("ticks", PARTITION, 1))
    sent = [stage["event_id"] for stage in by_caller.sent]
    held = [deterministic_id("missed_call", "c3r5", s) for s in ("5", "6")]
    assert sorted(sent) == sorted(held)  # both went out, once each
    assert enricher.tables.pending.get("c3r5") is None


async def test_a_late_popup_forwards_at_once_and_the_hold_goes_only_once_that_is_on_kafka(
    clock: list[int],
) -> None:
    """The popup's record is not held back by the forward's delivery (its ack is), and the
    hold stays in its table until the tick sees the forward delivered: a crash before that
    forwards it again, never loses it."""
    enricher, by_caller = new_enricher()
    await enricher.on_missed(missed("c3r7", 7), at(7))
    by_caller.delivered.clear()  # Kafka has not acknowledged anything yet
    with collecting() as deliveries:
        await asyncio.wait_for(enricher.on_popup(popup("c3r7", 1), at(8)), 1)
    assert [stage["call_sid"] for stage in by_caller.sent] == ["c3r7"]
    assert len(deliveries) == 1  # the popup record is acked only once this is delivered
    assert enricher.tables.pending.get("c3r7") is not None
    clock[0] += 3_000
    tick = asyncio.create_task(enricher.on_tick(b"", Position("ticks", PARTITION, 0)))
    await asyncio.sleep(0.01)
    assert not tick.done()
    assert enricher.tables.pending.get("c3r7") is not None  # the forward is not on Kafka yet
    by_caller.delivered.set()
    await asyncio.wait_for(tick, 1)
    assert enricher.tables.pending.get("c3r7") is None
    assert [stage["call_sid"] for stage in by_caller.sent] == ["c3r7"]  # once
    assert by_caller.sent[0]["popup_ms"] is not None  # joined with the popup
