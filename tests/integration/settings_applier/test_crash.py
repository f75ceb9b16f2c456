"""kill -9 of the worker in the middle of a run, then a restart: exactly one result per command.

Which PUTs may be sent twice, precisely: a command is PUT again after the kill only if the
killed worker had not got Kafka's acknowledgement of its ledger entry (processor steps 2-3).
Commands of one app run one after another and each ends with its ledger entry acknowledged, so
at the kill each app has at most one such command, the last one the killed worker PUT for it.
``EXOPIPE_APPLIER_IN_FLIGHT`` does not bound this: it caps concurrent API calls only, and a
command gives its slot back when the PUT answers, before its Kafka writes. On a busy machine
those writes outlast the 30 ms PUT, so up to one command per app (not 8) is exposed at once.
Re-sent copies never PUT: each waits behind its original and finds its final ledger entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.conftest import PipelineEnv
from tests.integration.settings_applier.conftest import (
    Apps,
    Worker,
    command_event,
    results,
    send_commands,
)
from topics.catalog import SETTINGS_RESULT
from topics.events import CloudEvent, parse_event
from workers.exotel_double.control import AsyncDoubleControl

APPS = 30
PER_APP = 10
CALLBACK = "https://cb.example.com/"

log = logging.getLogger(__name__)


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
            {"callback_url": f"{CALLBACK}{name}/{i}", "recording_enabled": i % 2 == 0},
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
    # Let the double read what the dead worker left in its sockets, then mark its request log:
    # every request after the mark comes from the second worker, which is not started yet.
    await asyncio.sleep(1)
    mark = max((entry["seq"] for entry in await ctl.requests()), default=0)

    second = start_worker(EXOPIPE_APPLIER_IN_FLIGHT="8")
    found = await results(settings_env, total, wait_seconds=120)
    # Let any duplicate that would come show up before counting.
    await asyncio.sleep(3)
    found = await results(settings_env, total + len(duplicates), wait_seconds=5)

    counts = Counter(event.data["command_id"] for event in found)
    missing = {c.data["command_id"] for c in commands} - set(counts)
    assert not missing, f"{len(missing)} commands without a result; the second worker's " + (
        f"warnings and errors:\n{_notable(second.log())}"
    )
    assert set(counts) == {c.data["command_id"] for c in commands}
    assert [cid for cid, n in counts.items() if n != 1] == []
    assert {event.data["outcome"] for event in found} == {"applied"}
    # Equal ids would also let a consumer drop a copy; here there are none to drop.
    assert len({event.id for event in found}) == total

    # The double ends with every app's last command applied.
    for name in names:
        current = await ctl.app_settings(customer, name)
        assert current["callback_url"] == f"{CALLBACK}{name}/{PER_APP - 1}"
        assert current["recording_enabled"] is ((PER_APP - 1) % 2 == 0)

    # Which worker PUT which command ((app, index)), from the double's log.
    put_log = await ctl.requests(method="PUT")
    by_first, by_second = _applied_puts(put_log, after=mark)
    # Neither worker PUT any command twice: a re-sent copy never reaches the API.
    assert [c for c, n in by_first.items() if n != 1] == []
    assert [c for c, n in by_second.items() if n != 1] == []
    # A command whose result was on Kafka before the kill was never PUT again.
    finished_early = {_command(event.data["settings"]["callback_url"]) for event in before_kill}
    assert sorted(finished_early & set(by_second)) == []
    # Per app, at most one command is PUT by both workers: the last one the first worker PUT,
    # the only one that can have been between its PUT and its ledger write at the kill.
    again = sorted(set(by_first) & set(by_second))
    last_first = {name: max(i for n, i in by_first if n == name) for name, _ in by_first}
    assert [(name, i) for name, i in again if i != last_first[name]] == []
    assert len({name for name, _ in again}) == len(again) <= APPS
    log.info(
        "%d results before the kill; PUTs: %d by the first worker, %d by the second, "
        "%d commands PUT by both (%d of them also sent twice)",
        len(before_kill),
        by_first.total(),
        by_second.total(),
        len(again),
        len({_command(c.data["settings"]["callback_url"]) for c in duplicates} & set(again)),
    )
    assert "Traceback" not in second.log()


def _notable(log_text: str, last: int = 40) -> str:
    """A worker log's last warnings and errors: what a failure report needs to be read."""
    lines = [line for line in log_text.splitlines() if "[WARNING]" in line or "[ERROR]" in line]
    return "\n".join(line[:300] for line in lines[-last:])


def _command(url: str) -> tuple[str, int]:
    name, _, index = url.removeprefix(CALLBACK).rpartition("/")
    return name, int(index)


def _applied_puts(
    entries: list[dict[str, Any]], *, after: int
) -> tuple[Counter[tuple[str, int]], Counter[tuple[str, int]]]:
    """Successful PUTs per command: those logged up to ``after`` (seq), and those after it."""
    before: Counter[tuple[str, int]] = Counter()
    later: Counter[tuple[str, int]] = Counter()
    for entry in entries:
        if entry["status"] == 200 and entry["json"]:
            side = before if entry["seq"] <= after else later
            side[_command(entry["json"]["callback_url"])] += 1
    return before, later


async def _wait_for_results(env: PipelineEnv, *, at_least: int) -> list[CloudEvent]:
    """Results as soon as ``at_least`` are on Kafka: one consumer without a group, so the kill
    follows within a poll instead of a group join per try (slow on a busy machine)."""
    topic = env.settings.topic(SETTINGS_RESULT)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=env.settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    found: list[CloudEvent] = []
    try:
        consumer.assign([TopicPartition(topic.name, p) for p in range(topic.partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + 60
        while len(found) < at_least:
            assert time.monotonic() < deadline, f"fewer than {at_least} results within 60 s"
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(parse_event(record.value, SETTINGS_RESULT) for record in records)
    finally:
        await consumer.stop()
    return found
