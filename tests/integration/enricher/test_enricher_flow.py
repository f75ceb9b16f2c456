"""The enricher against real Kafka: join, late popups, dedupe, bad data, settings, repeats."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.conftest import PipelineEnv
from tests.integration.enricher.conftest import Inputs, Worker, at
from tests.integration.kafka_io import collect
from topics.catalog import MISSED_CALL_ENRICHED, WEBHOOK_MISSED_CALL, WEBHOOK_REJECTED
from workers import json_codec


async def enriched(env: PipelineEnv, count: int, wait: float = 30.0) -> dict[str, dict[str, Any]]:
    """Every enriched record by call_sid; fails on a second record for the same call."""
    found = await collect(env.settings, MISSED_CALL_ENRICHED, count=count, wait_seconds=wait)
    by_sid: dict[str, dict[str, Any]] = {}
    for key, event in found:
        sid = event.data["call_sid"]
        assert key == sid.encode()
        assert sid not in by_sid, f"two records for {sid}"
        by_sid[sid] = event.data
    return by_sid


async def test_join_late_popup_dedupe_bad_numbers_and_settings(
    enricher_env: PipelineEnv,
    inputs: Inputs,
    workers: Callable[[PipelineEnv], Worker],
    unique: Callable[[str], str],
) -> None:
    await inputs.state("acme", "app1", "https://crm.example.com/cb")
    await inputs.state("acme", "app2", None)
    worker = workers(enricher_env)
    joined, late, alone, dup = (unique(s) for s in ("joined", "late", "alone", "dup"))
    # In order: the popup, then the missed call 12.5 s later (event time).
    await inputs.popup(joined, at(0), caller="09812345678")
    await inputs.missed(joined, at(12.5), caller="09812345678")
    # Out of order: the missed call first, its popup a moment later, well within the grace.
    await inputs.missed(late, at(20), caller="+14155552671", app_id="app2")
    await asyncio.sleep(0.3)
    await inputs.popup(late, at(5), caller="+14155552671", app_id="app2")
    # No popup at all: released without one when the grace period ends.
    await inputs.missed(alone, at(30), caller="+442079460958", customer_id="other", app_id="x9")
    # The same event delivered twice (an Exotel retry with the same payload).
    value = await inputs.missed(dup, at(40), caller="+6591234567")
    await inputs.raw_missed(dup, value)
    bad = {unique(f"bad{i}"): raw for i, raw in enumerate(["anonymous", "+1 555", "+99912345678"])}
    for sid, raw in bad.items():
        await inputs.popup(sid, at(50), caller=raw)
        await inputs.missed(sid, at(51), caller=raw)
    # Malformed input: not JSON, and an event whose data breaks the schema.
    await inputs.raw_missed("junk", b"\x00not json")
    broken = json_codec.loads(inputs.call_event(WEBHOOK_MISSED_CALL, unique("broken"), at(60)))
    del broken["data"]["from"]
    await inputs.raw_missed(broken["data"]["call_sid"], json_codec.dumps(broken))

    records = await enriched(enricher_env, count=4 + len(bad))
    assert set(records) == {joined, late, alone, dup, *bad}

    j = records[joined]
    assert j["popup_seen"] is True and j["ring_seconds"] == 12.5
    assert j["caller"]["e164"] == "+919812345678" and j["caller"]["country"] == "IN"
    assert j["callee"] == {"raw": "sip:agent7@acme.exotel.com", "user": "agent7"}
    assert j["callback_url_configured"] is True
    assert j["within_business_hours"] is True and j["priority"] == "medium"
    assert j["repeat_count_24h"] == 1 and j["first_missed_at"] == j["missed_at"]

    assert records[late]["popup_seen"] is True and records[late]["ring_seconds"] == 15.0
    assert records[late]["caller"]["country"] == "US"
    assert records[late]["callback_url_configured"] is False

    lone = records[alone]
    assert lone["popup_seen"] is False and lone["ring_seconds"] is None
    assert lone["caller"]["region"] == "London"
    assert lone["callback_url_configured"] is None  # unknown app: no settings state
    assert lone["within_business_hours"] is None and lone["priority"] == "low"

    assert records[dup]["repeat_count_24h"] == 1
    for sid, raw in bad.items():
        caller = records[sid]["caller"]
        assert caller["valid"] is False and caller["raw"] == raw and caller["e164"] is None

    rejected = await collect(enricher_env.settings, WEBHOOK_REJECTED, count=2, wait_seconds=10)
    assert len(rejected) == 2
    reasons = sorted(event.data["reason"] for _, event in rejected)
    assert all(event.data["stage"] == "enricher" for _, event in rejected)
    assert "data does not follow" in reasons[0] and "not a CloudEvent" in reasons[1]
    # The worker is still alive and well after all that.
    assert worker.proc is not None and worker.proc.poll() is None
    # A popup later than the grace period does not make a second record.
    await inputs.popup(alone, at(29), caller="+442079460958", customer_id="other", app_id="x9")
    again = await enriched(enricher_env, count=len(records) + 1, wait=3)
    assert len(again) == len(records)


async def test_repeat_count_over_the_24h_window_by_event_time(
    enricher_env: PipelineEnv,
    inputs: Inputs,
    workers: Callable[[PipelineEnv], Worker],
    unique: Callable[[str], str],
) -> None:
    workers(enricher_env)
    day = 24 * 3600
    # Same caller written two ways; one call to another app; one at the window's edges.
    plan = [
        (unique("c1"), at(0), "09876500001", "app1"),
        (unique("c2"), at(3600), "+91 98765 00001", "app1"),
        (unique("c3"), at(7200), "09876500001", "app2"),
        (unique("c4"), at(day - 0.001), "09876500001", "app1"),
        (unique("c5"), at(day), "09876500001", "app1"),
        (unique("c6"), at(2 * day + 3600), "09876500001", "app1"),
    ]
    # One at a time: calls of one caller under different call_sids travel different
    # partitions of the input, so only their arrival order at the count is defined by the test.
    for done, (sid, moment, caller, app) in enumerate(plan, start=1):
        await inputs.popup(sid, moment, caller=caller, app_id=app)
        await inputs.missed(sid, moment, caller=caller, app_id=app)
        records = await enriched(enricher_env, count=done)
        assert sid in records
    got = [(records[sid]["repeat_count_24h"], records[sid]["first_missed_at"]) for sid, *_ in plan]
    assert got == [
        (1, "2026-03-02T05:00:00.000Z"),
        (2, "2026-03-02T05:00:00.000Z"),
        (1, "2026-03-02T07:00:00.000Z"),  # another app: counted apart
        (3, "2026-03-02T05:00:00.000Z"),  # 1 ms inside the window
        (3, "2026-03-02T06:00:00.000Z"),  # exactly 24 h later: the first call has left
        (1, "2026-03-04T06:00:00.000Z"),
    ]
    # Repeat callers within business hours come first.
    assert records[plan[1][0]]["priority"] == "high"
    assert records[plan[0][0]]["priority"] == "medium"
