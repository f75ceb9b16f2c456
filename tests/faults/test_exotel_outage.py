"""The Exotel API fails with 500s, then hangs past the client's timeout, then recovers, while the
settings worker has commands for several apps: every command ends ``applied`` with exactly one
result, and per app the successful PUTs and the results keep command order.

What this test found, and asserts as the honest guarantee: a PUT the client gave up on (timeout)
may still be applied by the server *later*, after the retry and after the app's next commands, so
Exotel can end up holding an older command's value while every result says ``applied``. Exotel's
API has no conditional write to prevent that; the worker's reconciliation detects it and
publishes a ``drift`` record with what Exotel really holds (RELIABILITY.md, "settings").

The 500 phase lasts 10 s rather than the 20 s of the issue: with retry delays capped at 1 s it
already spans ten-plus attempts per command (far beyond any single backoff), and the CI budget
is shared. The hang phase holds each PUT 3 s against a 1 s client timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from tests.integration.settings_applier.conftest import (
    Apps,
    Worker,
    by_command,
    command_event,
    results,
    send_commands,
)
from topics.catalog import SETTINGS_STATE
from workers.exotel_double.control import AsyncDoubleControl

APPS = 4
COMMANDS_PER_APP = 5
OUTAGE_S = 10.0
HANG_S = 3.0


async def test_outage_then_hang_then_healthy_every_command_applied_once(
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
    prefix = f"/v2/integrations/{customer}/apps/"
    await ctl.fail_for(OUTAGE_S, 500, method="PUT", path_prefix=prefix)
    outage_started = time.monotonic()
    commands = [
        command_event(customer, name, {"popup_url": f"https://h.example.com/{name}/{i}"})
        for i in range(COMMANDS_PER_APP)
        for name in names
    ]
    await send_commands(settings_env, commands)
    worker = start_worker(
        EXOPIPE_APPLIER_RETRY_ATTEMPTS="60",
        EXOPIPE_APPLIER_RETRY_MAX_DELAY="1",
        EXOPIPE_APPLIER_HTTP_TIMEOUT="1",
        EXOPIPE_APPLIER_HTTP_CONNECT_TIMEOUT="1",
        EXOPIPE_APPLIER_RECONCILE_INTERVAL="2",
    )
    # When the 500s stop, the next PUTs hang past the client's timeout (one per app, twice).
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
    await ctl.hang_next(HANG_S, count=2 * APPS, method="PUT", path_prefix=prefix)

    total = len(commands)
    found = await results(settings_env, total, wait_seconds=75)
    assert len(found) == total, worker.log()[-4000:]
    # Ask for one more than expected: a duplicate result would show up now.
    again = await results(settings_env, total + 1, wait_seconds=3)
    grouped = by_command(again)
    duplicates = {cid: len(v) for cid, v in grouped.items() if len(v) > 1}
    assert duplicates == {}, f"commands with more than one result: {duplicates}"
    acknowledged = {c.data["command_id"] for c in commands}
    assert set(grouped) == acknowledged
    outcomes = {e.data["command_id"]: e.data["outcome"] for e in again}
    assert set(outcomes.values()) == {"applied"}, outcomes

    puts = await ctl.requests(method="PUT", path_prefix=prefix)
    statuses = [entry["status"] for entry in puts]
    assert statuses.count(500) >= APPS * 3, "the outage was not exercised"
    assert any(e.data["attempts"] > 3 for e in again), "no command needed retries"
    stale: dict[str, str] = {}
    for name in names:
        wanted = [f"https://h.example.com/{name}/{i}" for i in range(COMMANDS_PER_APP)]
        mine = [e.data["settings"]["popup_url"] for e in again if e.data["app_id"] == name]
        assert mine == wanted, f"results out of order for {name}"
        ok = [
            r["json"]["popup_url"]
            for r in puts
            if r["status"] == 200 and r["path"].startswith(f"{prefix}{name}/")
        ]
        # Hung PUTs are applied late and retried: the repeats are the same PUT (idempotent).
        # With repeats removed, the order of successful PUTs is the command order.
        assert [u for i, u in enumerate(ok) if i == 0 or ok[i - 1] != u] == wanted, ok
        actual = (await ctl.app_settings(customer, name))["popup_url"]
        assert actual in wanted
        if actual != wanted[-1]:
            stale[name] = actual
    if stale:
        # A late write landed after newer ones: reconciliation must report what Exotel holds.
        def is_drift(_key: bytes | None, event) -> bool:  # type: ignore[no-untyped-def]
            data = event.data
            return data["kind"] == "drift" and stale.get(data["app_id"]) == (
                data["settings"] or {}
            ).get("popup_url")

        drifts = await collect(
            settings_env.settings, SETTINGS_STATE, count=len(stale), wait_seconds=20, where=is_drift
        )
        assert {e.data["app_id"] for _, e in drifts} == set(stale), (stale, worker.log()[-3000:])
    print(f"late writes that overwrote a newer command (reported as drift): {len(stale)}")
    assert "tok-" not in worker.log()
