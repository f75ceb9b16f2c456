"""The rolling 24 h count by event time: window boundary, late calls, duplicates, redelivery."""

from __future__ import annotations

import gc
from typing import Any

from workers.enricher.counting import record_call
from workers.enricher.expiry import ExpiryQueues

H = 3_600_000
DAY = 24 * H


def add(entries: list[dict[str, Any]], event_id: str, t_ms: int, pos: str = "") -> Any:
    return record_call(
        entries,
        event_id=event_id,
        t_ms=t_ms,
        position=pos or f"0:{event_id}",
        enriched_at=f"at-{event_id}",
        window_ms=DAY,
        slack_ms=H,
    )


def test_counts_calls_within_24h_and_not_at_the_boundary() -> None:
    first = add([], "a", 0)
    assert (first.status, first.count, first.first_ms) == ("new", 1, 0)
    second = add(first.entries, "b", 10 * H)
    assert (second.count, second.first_ms) == (2, 0)
    just_inside = add(second.entries, "c", DAY - 1)
    assert (just_inside.count, just_inside.first_ms) == (3, 0)
    at_boundary = add(just_inside.entries, "d", DAY)  # 24 h after "a": "a" no longer counts
    assert (at_boundary.count, at_boundary.first_ms) == (3, 10 * H)


def test_a_late_call_counts_only_what_came_before_it_in_event_time() -> None:
    history = add(add([], "a", 0).entries, "c", 20 * H).entries
    late = add(history, "b", 10 * H)
    assert (late.count, late.first_ms) == (2, 0)


def test_duplicate_counts_once_and_redelivery_repeats_the_result() -> None:
    first = add([], "a", 0, pos="3:10")
    second = add(first.entries, "b", H, pos="3:11")
    again = add(second.entries, "a", 0, pos="3:99")
    assert again.status == "duplicate"
    redelivered = add(second.entries, "b", H, pos="3:11")
    assert redelivered.status == "redelivery"
    assert (redelivered.count, redelivered.enriched_at) == (2, "at-b")
    assert len(redelivered.entries) == 2


def test_old_entries_are_pruned_after_window_and_slack() -> None:
    entries = add([], "a", 0).entries
    entries = add(entries, "b", DAY + H + 1).entries
    assert [e["id"] for e in entries] == ["b"]


def test_expiry_queues_give_what_is_due_in_due_order() -> None:
    queues = ExpiryQueues()
    queues.push(2, 100, "pending", "CA1")
    queues.push(2, 50, "popups", "CA2")
    queues.push(2, 100, "pending", "CA0")  # due with CA1: after it, in the order queued
    assert queues.pop_due(2, now_ms=49) == []
    assert [d.key for d in queues.pop_due(2, now_ms=100)] == ["CA2", "CA1", "CA0"]
    assert queues.pop_due(2, now_ms=1000) == []
    queues.push(2, 10, "popups", "CA3")
    queues.forget()
    assert queues.pop_due(2, now_ms=1000) == []


def test_expiry_queue_entries_drop_out_of_the_garbage_collector() -> None:
    """A queue holds an entry per stored key: entries the collector tracks made every full
    collection walk all of them (a tuple subclass is never untracked)."""
    queues = ExpiryQueues()
    for i in range(1000):
        queues.push(0, i, "handled", f"CA{i}")
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in queues.heaps[0])
