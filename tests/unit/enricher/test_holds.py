"""Held missed calls (no popup yet) go out in the order they were read, once each.

Stage one's logic on real stores with no Kafka under them: the order of releases, the due time
of a hold read again after a rebalance, a call held while another event of it goes out, and a
late popup. The integration and fault tests run the same code in a real worker; that the core
writes a batch's store changes only once its outputs are on Kafka is tested with the core
(tests/unit/plumbing/test_batch_worker.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from topics.catalog import WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL
from topics.events import deterministic_id, format_time, make_event
from workers import json_codec
from workers.config import EnricherSettings
from workers.enricher import stages
from workers.enricher.hours import parse_hours_book
from workers.enricher.stages import Enricher, Position, Topics
from workers.enricher.stores import EnricherStores
from workers.plumbing.batch_worker import Outbox

PARTITION = 3
NAMES = Topics("incoming", "missed", "by-caller", "enriched", "rejected")


class Sent:
    """The outbox of each step, and what went to the by-caller topic across them."""

    def __init__(self) -> None:
        self.by_caller: list[dict[str, Any]] = []

    def outbox(self) -> Outbox:
        return Outbox({name: 6 for name in (NAMES.by_caller, NAMES.enriched, NAMES.rejected)})

    def take(self, out: Outbox) -> None:
        for (topic, _), records in out.records.items():
            if topic == NAMES.by_caller:
                self.by_caller.extend(json_codec.loads(value) for _, value in records)


def new_enricher(state_dir: Path | None = None) -> tuple[Enricher, Sent]:
    stores = EnricherStores.declare("g", (NAMES.incoming, NAMES.missed), NAMES.by_caller)
    for store in stores.all():
        if state_dir is not None:
            store.store.use_directory(state_dir / store.name)
        store.store.adopt(PARTITION, {})
    enricher = Enricher(
        EnricherSettings(grace_seconds=3.0),
        stores,
        NAMES,
        parse_hours_book({}),
        settings_view=None,  # type: ignore[arg-type]  # stage two only
    )
    return enricher, Sent()


def on_missed(enricher: Enricher, sent: Sent, value: bytes, where: Position) -> None:
    out = sent.outbox()
    enricher.on_missed(value, where, out)
    sent.take(out)


def on_popup(enricher: Enricher, sent: Sent, value: bytes, where: Position) -> None:
    out = sent.outbox()
    enricher.on_popup(value, where, out)
    sent.take(out)


def tick(enricher: Enricher, sent: Sent, now: int) -> None:
    out = sent.outbox()
    enricher.tick(now, out)
    sent.take(out)


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
    monkeypatch.setattr(stages, "now_ms", lambda: now[0])
    return now


def pending(enricher: Enricher, call_sid: str) -> dict[str, Any] | None:
    return enricher.stores.pending.get(PARTITION, call_sid)


def test_holds_due_in_the_same_millisecond_go_out_in_the_order_they_were_read(
    clock: list[int],
) -> None:
    """c3r10 sorts before c3r9 by name; it was read after it, so it goes out after it."""
    enricher, sent = new_enricher()
    on_missed(enricher, sent, missed("c3r9", 9), at(9))
    on_missed(enricher, sent, missed("c3r10", 10), at(10))
    clock[0] += 3_000
    tick(enricher, sent, clock[0])
    assert [stage["call_sid"] for stage in sent.by_caller] == ["c3r9", "c3r10"]


def test_a_hold_read_again_keeps_its_due_time(clock: list[int]) -> None:
    """After a rebalance the call is read again: it must not wait a second grace period while
    the caller's later calls, read for the first time, go out before it."""
    enricher, sent = new_enricher()
    on_missed(enricher, sent, missed("c3r3", 3), at(3))
    due = pending(enricher, "c3r3")["due"]  # type: ignore[index]
    clock[0] += 2_000
    on_missed(enricher, sent, missed("c3r3", 3), at(3))  # the same record, redelivered
    on_missed(enricher, sent, missed("c3r4", 4), at(4))
    assert pending(enricher, "c3r3")["due"] == due  # type: ignore[index]
    clock[0] += 1_000
    tick(enricher, sent, clock[0])
    assert [stage["call_sid"] for stage in sent.by_caller] == ["c3r3"]


def test_a_call_held_after_its_hold_went_out_waits_for_its_own_release(clock: list[int]) -> None:
    enricher, sent = new_enricher()
    on_missed(enricher, sent, missed("c3r5", 5), at(5))
    clock[0] += 3_000
    tick(enricher, sent, clock[0])
    assert len(sent.by_caller) == 1
    on_missed(enricher, sent, missed("c3r5", 6), at(6))  # Exotel's second event of the call
    clock[0] += 3_000
    tick(enricher, sent, clock[0])
    ids = [stage["event_id"] for stage in sent.by_caller]
    held = [deterministic_id("missed_call", "c3r5", s) for s in ("5", "6")]
    assert ids == held  # both went out, once each, in order
    assert pending(enricher, "c3r5") is None


def test_a_late_popup_forwards_its_held_calls_at_once_joined_and_once(clock: list[int]) -> None:
    """The hold is forgotten in the popup's own batch: the core writes that only once the
    forward is on Kafka, so a crash before then forwards it again, never loses it."""
    enricher, sent = new_enricher()
    on_missed(enricher, sent, missed("c3r7", 7), at(7))
    assert sent.by_caller == []
    on_popup(enricher, sent, popup("c3r7", 1), at(8))
    assert [stage["call_sid"] for stage in sent.by_caller] == ["c3r7"]
    assert sent.by_caller[0]["popup_ms"] is not None  # joined with the popup
    assert pending(enricher, "c3r7") is None
    clock[0] += 3_000
    tick(enricher, sent, clock[0])
    assert [stage["call_sid"] for stage in sent.by_caller] == ["c3r7"]  # once


def test_expiry_is_rebuilt_from_the_stores_after_a_restore(clock: list[int]) -> None:
    """A restored hold (its queue entry lost with the process) still goes out when due."""
    enricher, sent = new_enricher()
    on_missed(enricher, sent, missed("c3r11", 11), at(11))
    enricher.expiry.forget()  # what a new process starts with
    enricher.assigned(frozenset())
    clock[0] += 3_000
    tick(enricher, sent, clock[0])
    assert [stage["call_sid"] for stage in sent.by_caller] == ["c3r11"]


def test_holds_due_together_go_out_in_read_order_after_a_restore_from_disk(
    clock: list[int], tmp_path: Path
) -> None:
    """A store on disk lists by key ("c3r10" before "c3r8"): the rebuilt queue must not."""
    enricher, sent = new_enricher(tmp_path)
    for offset, sid in enumerate(["c3r8", "c3r9", "c3r10"], start=20):
        on_missed(enricher, sent, missed(sid, 8), at(offset))
    for store in enricher.stores.all():  # acknowledged on the changelog, as the core does
        changes = [(key, value) for _, key, value in store.store.take_changes()]
        store.store.persisted(PARTITION, changes, len(changes))
    enricher.expiry.forget()
    enricher.assigned(frozenset())
    clock[0] += 3_000
    tick(enricher, sent, clock[0])
    assert [stage["call_sid"] for stage in sent.by_caller] == ["c3r8", "c3r9", "c3r10"]
    for store in enricher.stores.all():
        store.store.drop(PARTITION)
