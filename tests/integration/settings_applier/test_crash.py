"""kill -9 of the worker in the middle of a run, then a restart: exactly one result per command."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from tests.integration.settings_applier.conftest import (
    Apps,
    Worker,
    command_event,
    results,
    send_commands,
)
from topics.catalog import SETTINGS_RESULT
from workers.exotel_double.control import AsyncDoubleControl

APPS = 30
PER_APP = 10


@pytest.mark.slow
async def test_kill_9_mid_run_then_restart_gives_exactly_one_result_each(
    settings_env: PipelineEnv,
    apps: Apps,
    ctl: AsyncDoubleControl,
    start_worker: Callable[..., Worker],
    unique: Callable[[str], str],
) -> None:
    customer = unique("cust")
    names = [unique("app") for _ in range(APPS)]
    for name in names:
        await apps.add(customer, name)
    await ctl.set_latency(30)  # a run of a few seconds, so the kill lands mid-run
    commands = [
        command_event(
            customer,
            name,
            {"callback_url": f"https://cb.example.com/{name}/{i}", "recording_enabled": i % 2 == 0},
        )
        for i in range(PER_APP)
        for name in names
    ]
    # A producer's retry: some commands are on the topic twice (the copy after the original).
    duplicates = commands[:150:10]
    await send_commands(settings_env, [*commands[:150], *duplicates, *commands[150:]])
    total = len(commands)

    first = start_worker(EXOPIPE_APPLIER_IN_FLIGHT="8")
    before_kill = await _wait_for_results(settings_env, at_least=total // 3)
    first.kill()  # SIGKILL: no shutdown, no commit, no flush
    assert first.process.returncode == -9
    assert len(before_kill) < total, "the run finished before the kill; make it longer"

    second = start_worker(EXOPIPE_APPLIER_IN_FLIGHT="8")
    found = await results(settings_env, total, wait_seconds=120)
    # Let any duplicate that would come show up before counting.
    await asyncio.sleep(3)
    found = await results(settings_env, total + len(duplicates), wait_seconds=5)

    counts = Counter(event.data["command_id"] for event in found)
    assert set(counts) == {c.data["command_id"] for c in commands}
    assert [cid for cid, n in counts.items() if n != 1] == []
    assert {event.data["outcome"] for event in found} == {"applied"}
    # Equal ids would also let a consumer drop a copy; here there are none to drop.
    assert len({event.id for event in found}) == total

    # The double ends with every app's last command applied.
    for name in names:
        current = await ctl.app_settings(customer, name)
        assert current["callback_url"] == f"https://cb.example.com/{name}/{PER_APP - 1}"
        assert current["recording_enabled"] is ((PER_APP - 1) % 2 == 0)

    # A command whose result was on Kafka before the kill was never PUT again.
    puts = Counter(
        r["json"]["callback_url"]
        for r in await ctl.requests(method="PUT")
        if r["status"] == 200 and r["json"]
    )
    finished_early = {event.data["settings"]["callback_url"] for event in before_kill}
    assert [url for url in finished_early if puts[url] != 1] == []
    # Only commands in flight at the kill may have been PUT twice (bounded by in-flight).
    assert sum(n - 1 for n in puts.values()) <= 8
    assert "Traceback" not in second.log()


async def _wait_for_results(env: PipelineEnv, *, at_least: int) -> list:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = await collect(env.settings, SETTINGS_RESULT, count=at_least, wait_seconds=0.5)
        if len(found) >= at_least:
            return [event for _, event in found]
    raise AssertionError(f"fewer than {at_least} results within 60 s")
