"""A second enricher joins during a steady missed-call load and then leaves (SIGTERM): partitions
and their tables move twice, yet every missed call gets its enriched record, every repeat count
is the one the load implies, and a missed call sent twice is still counted once.

The load: one caller per input partition (call sids chosen by the partitioner), one missed call
per caller per round, event times a minute apart, so call r of a caller has repeat count r + 1
and its first missed call is round 0's. Half the callers send a popup first (joined, ring time
20 s); the other half never do (held for the grace period, released by the timer). Some rounds
re-send a caller's previous missed call (an Exotel retry): the copy is dropped, never counted.

RELIABILITY.md (enricher) allows a record to be emitted again when its input was not committed
yet; the copy must be the same record (same CloudEvent id, same data). Copies are counted and
printed, not refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from tests.conftest import PipelineEnv
from tests.faults.rebalance import Joiner, Load, committed_offsets, drain, lost_report, positions
from tests.integration.enricher.conftest import (
    Inputs,
    Worker,
    at,
    enricher_env,
    inputs,
    workers,
)
from tests.integration.kafka_io import collect
from topics.catalog import (
    CALL_PARTITIONS,
    MISSED_CALL_ENRICHED,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_REJECTED,
)
from topics.events import format_time
from workers import json_codec
from workers.config import Settings

# The enricher's fixtures: its variables, its input producer, its worker processes.
enricher_env, inputs, workers = enricher_env, inputs, workers  # noqa: PLW0127
CALLERS = CALL_PARTITIONS  # caller i's calls all go to partition i
ROUND_S = 1.0
MAX_ROUNDS = 36  # 216 missed calls, 108 popups and 54 re-sends at most
TAIL_ROUNDS = 6  # 6 s of load after the second worker left
WORK_S = 5.0  # both workers share the load this long
RING_S = 20


def _sid_on(partition: int, stem: str) -> str:
    """A call sid the default partitioner puts on ``partition`` of a call topic."""
    n = 0
    while (murmur2(f"{stem}-{n}".encode()) & 0x7FFFFFFF) % CALL_PARTITIONS != partition:
        n += 1
    return f"{stem}-{n}"


def _caller(i: int) -> str:
    return f"0981230{i:04d}"


def _with_popup(i: int) -> bool:
    return i % 2 == 0


def _missed_at(i: int, r: int) -> float:
    return r * 60 + i + RING_S


def _check_record(events: list[Any], i: int, r: int) -> None:
    """The copies of one call's record are one record, with the counts the load implies."""
    assert len({e.id for e in events}) == 1, [e.id for e in events]
    data = events[0].data
    assert all(e.data == data for e in events), [e.data for e in events]
    wanted = {
        "repeat_count_24h": r + 1,
        "first_missed_at": format_time(at(_missed_at(i, 0))),
        "missed_at": format_time(at(_missed_at(i, r))),
        "popup_seen": _with_popup(i),
        "ring_seconds": float(RING_S) if _with_popup(i) else None,
    }
    assert {k: data[k] for k in wanted} == wanted, (data["call_sid"], data)


async def _stage_two_notes(settings: Settings, group: str, missing: set[str]) -> dict[str, str]:
    """Where each missing call is on the by-caller topic, or that stage one never sent it."""
    stage = f"{group}-by-caller"
    on_stage = await positions(settings, stage, lambda v: json_codec.loads(v)["call_sid"])
    committed = await committed_offsets(settings, group, stage)
    notes = {}
    for sid in missing:
        if sid not in on_stage:
            notes[sid] = "never reached by-caller (lost in stage one)"
            continue
        where = [
            f"partition {p} offset {o} (committed {committed.get(p)})" for p, o in on_stage[sid]
        ]
        notes[sid] = f"by-caller at {', '.join(where)}"
    return notes


async def test_a_worker_joins_and_leaves_during_load(
    enricher_env: PipelineEnv,
    inputs: Inputs,
    workers: Callable[[PipelineEnv], Worker],
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    settings = enricher_env.settings
    missed_topic = settings.topic(WEBHOOK_MISSED_CALL).name
    calls: dict[str, tuple[int, int]] = {}  # call_sid -> (caller, round)
    last: dict[int, tuple[str, bytes]] = {}  # caller -> its latest missed call (sid, value)
    resent: list[str] = []

    async def send_round(r: int) -> None:
        for i in range(CALLERS):
            sid = _sid_on(i, unique(f"c{i}r{r}"))
            extra = {"caller": _caller(i)}
            if r > 0 and (r + i) % 4 == 0:  # an Exotel retry of the previous missed call
                await inputs.raw_missed(*last[i])
                resent.append(last[i][0])
            if _with_popup(i):
                await inputs.popup(sid, at(_missed_at(i, r) - RING_S), **extra)
            value = inputs.call_event(WEBHOOK_MISSED_CALL, sid, at(_missed_at(i, r)), **extra)
            meta = await inputs.producer.send_and_wait(missed_topic, value, key=sid.encode())
            assert meta.partition == i, (sid, meta.partition)
            load.where[sid] = (meta.partition, meta.offset)
            calls[sid] = (i, r)
            last[i] = (sid, value)

    first = await asyncio.to_thread(workers, enricher_env)
    second = Worker(enricher_env, tmp_path / "enricher-second.log")
    load = Load(send_round, interval=ROUND_S, tail=TAIL_ROUNDS, max_rounds=MAX_ROUNDS)
    joiner = Joiner(second, second.log_text)
    try:
        load.start()
        # The first worker is busy before the second one comes.
        found = await collect(settings, MISSED_CALL_ENRICHED, count=2 * CALLERS, wait_seconds=30)
        assert len(found) >= 2 * CALLERS and load.running(), first.log_text()[-3000:]
        await joiner.join_and_leave(load, work=lambda: asyncio.sleep(WORK_S))
        await load.finish()
    finally:
        await load.cancel()
        await asyncio.to_thread(second.stop)
    sent = set(calls)
    print(
        f"rounds {load.rounds}, missed calls {len(sent)}, re-sent {len(resent)}, "
        f"load over at {time.monotonic() - began:.1f}s"
    )

    found_events = await drain(
        settings, MISSED_CALL_ENRICHED, sent, lambda e: e.data["call_sid"], wait=25
    )
    by_sid: dict[str, list[Any]] = {}
    for event in found_events:
        by_sid.setdefault(event.data["call_sid"], []).append(event)
    copies = len(found_events) - len(by_sid)
    print(
        f"enriched {len(by_sid)}/{len(sent)}, copies {copies}, at {time.monotonic() - began:.1f}s"
    )
    # The enricher rejects what it cannot handle: a missed call there is lost to the count too.
    found = await collect(settings, WEBHOOK_REJECTED, count=3 * len(sent), wait_seconds=2)
    rejected = [event for _, event in found]
    missing = sent - set(by_sid)
    if missing or rejected:
        group = f"{settings.topic_prefix}exopipe-enricher"
        notes = await _stage_two_notes(settings, group, missing)
        why = {e.data["call_sid"]: f"rejected: {e.data['reason'][:200]}" for e in rejected}
        extra = {
            sid: f"caller {calls[sid][0]} round {calls[sid][1]}; {why.get(sid, notes[sid])}"
            for sid in missing
        }
        committed = await committed_offsets(settings, group, missed_topic)
        logs = {"first worker": first.log_text(), "second worker": second.log_text()}
        report = lost_report(missing, load.where, committed, logs, extra=extra)
        raise AssertionError(f"{len(rejected)} records rejected {sorted(why)}; {report}")
    assert set(by_sid) == sent  # no record for a call we did not send
    for sid, events in by_sid.items():
        _check_record(events, *calls[sid])
