"""The enricher as processes: a crash and restart keeps counts and joins; two workers = one."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import PipelineEnv
from tests.integration.enricher.conftest import ENRICHER_VARS, Inputs, Worker, at
from tests.integration.enricher.test_enricher_flow import enriched
from tests.integration.kafka_io import collect
from topics.catalog import MISSED_CALL_ENRICHED
from workers.kafka import admin_client, new_producer
from workers.topic_admin import apply_catalog


@pytest.mark.slow
async def test_kill_and_restart_keeps_counts_joins_and_dedupe(
    enricher_env: PipelineEnv,
    inputs: Inputs,
    workers: Callable[[PipelineEnv], Worker],
    unique: Callable[[str], str],
) -> None:
    first = workers(enricher_env)
    c1, c2, c3 = unique("c1"), unique("c2"), unique("c3")
    await inputs.popup(c1, at(0), caller="09811100001")
    await inputs.missed(c1, at(1), caller="09811100001")
    value2 = await inputs.missed(c2, at(600), caller="09811100001")  # held: no popup
    # A popup whose missed call only comes after the restart: the join must survive.
    await inputs.popup(c3, at(1200), caller="09811100001")
    before = await enriched(enricher_env, count=2)
    assert [before[c]["repeat_count_24h"] for c in (c1, c2)] == [1, 2]
    first.kill()

    workers(enricher_env)
    await inputs.raw_missed(c2, value2)  # a redelivery of c2 after the crash: counted once
    await inputs.missed(c3, at(1230), caller="09811100001")
    settings = enricher_env.settings
    got = await collect(
        settings, MISSED_CALL_ENRICHED, count=1, where=lambda _k, e: e.data["call_sid"] == c3
    )
    assert got, "no record for the call after the restart"
    everything = await collect(settings, MISSED_CALL_ENRICHED, count=100, wait_seconds=3)
    by_sid: dict[str, list[Any]] = {}
    for _, event in everything:
        by_sid.setdefault(event.data["call_sid"], []).append(event)
    assert set(by_sid) == {c1, c2, c3}
    # The crash came before the worker committed its input offsets, so it may emit a record
    # again: then it is the same record (same CloudEvent id, same data), never a new count.
    for events in by_sid.values():
        assert len({e.id for e in events}) == 1
        assert all(e.data == events[0].data for e in events)
    after = {sid: events[0].data for sid, events in by_sid.items()}
    assert [after[c]["repeat_count_24h"] for c in (c1, c2, c3)] == [1, 2, 3]
    assert after[c3]["first_missed_at"] == before[c1]["missed_at"]
    assert after[c3]["popup_seen"] is True and after[c3]["ring_seconds"] == 30.0


def _plan(unique: Callable[[str], str]) -> list[dict[str, Any]]:
    """40 calls from 10 callers over two apps, every other one with a popup, 10 h apart.

    Call i comes from caller i % 10, so each caller calls 4 times over 30 h of event time:
    repeat counts 1, 2, 3 and then 3 again (the first call has left the window).
    """
    return [
        {
            "sid": unique(f"s{i}"),
            "caller": f"0981230{i % 10:04d}",
            "app_id": f"app{i % 10 % 2}",
            "at": at(i // 10 * 36000 + i % 10),
            "popup": i % 3 != 0,
        }
        for i in range(40)
    ]


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "enriched_at"}


_ASSIGNED = re.compile(r"exotel\.webhook\.missed_call\s*\|\s*\{([^}]*)\}")


def _missed_call_partitions(log: str) -> str:
    """The missed_call partitions in the last assignment a worker logged (e.g. ``0-2``)."""
    sets = _ASSIGNED.findall(log)
    return sets[-1] if sets else ""


async def _run(env: PipelineEnv, plan: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    async with admin_client(env.settings) as admin:
        await apply_catalog(admin, name_prefix=env.settings.topic_prefix)
    producer = new_producer(env.settings)
    await producer.start()
    try:
        inputs = Inputs(env.settings, producer)
        # In waves of distinct callers: calls of one caller under different call_sids travel
        # different input partitions, so the test defines their order at the count this way.
        for wave in range(4):
            for call in plan[wave * 10 : wave * 10 + 10]:
                extra = {"caller": call["caller"], "app_id": call["app_id"]}
                if call["popup"]:
                    await inputs.popup(call["sid"], call["at"], **extra)
                await inputs.missed(call["sid"], call["at"], **extra)
            # The first wave also waits out a loaded machine's slow first assignment.
            wait = 60.0 if wave == 0 else 30.0
            assert len(await enriched(env, count=wave * 10 + 10, wait=wait)) == wave * 10 + 10
    finally:
        await producer.stop()
    return {sid: _comparable(record) for sid, record in (await enriched(env, 40)).items()}


@pytest.mark.slow
async def test_two_workers_give_the_same_records_as_one(
    env_factory: Callable[..., PipelineEnv],
    workers: Callable[[PipelineEnv], Worker],
    unique: Callable[[str], str],
) -> None:
    plan = _plan(unique)
    env_one = env_factory(**ENRICHER_VARS)
    env_two = env_factory(**ENRICHER_VARS)
    async with admin_client(env_two.settings) as admin:
        await apply_catalog(admin, name_prefix=env_two.settings.topic_prefix)
    single = workers(env_one)
    a = workers(env_two)
    b = workers(env_two)
    a.wait_for("Setting newly assigned partitions", 60, count=2)  # rebalanced with b
    shares = [_missed_call_partitions(w.log_text()) for w in (a, b)]
    assert all(shares) and shares[0] != shares[1], shares
    single.wait_for("Worker ready", 60)

    one = await _run(env_one, plan)
    two = await _run(env_two, plan)
    assert len(one) == 40
    assert one == two
    counts = [one[call["sid"]]["repeat_count_24h"] for call in plan]
    assert counts == [1] * 10 + [2] * 10 + [3] * 10 + [3] * 10
    assert [one[c["sid"]]["popup_seen"] for c in plan] == [c["popup"] for c in plan]
