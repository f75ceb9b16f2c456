"""Retries against injected faults, and per-app order with many apps in flight at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.conftest import PipelineEnv
from tests.integration.settings_applier.conftest import (
    Apps,
    Worker,
    by_command,
    command_event,
    results,
    send_commands,
)
from workers.exotel_double.control import AsyncDoubleControl


async def test_retry_then_success_after_500s_and_after_429_with_retry_after(
    settings_env: PipelineEnv,
    apps: Apps,
    ctl: AsyncDoubleControl,
    start_worker: Callable[..., Worker],
    unique: Callable[[str], str],
) -> None:
    customer = unique("cust")
    flaky, throttled, broken = unique("flaky"), unique("throttled"), unique("broken")
    for app in (flaky, throttled, broken):
        await apps.add(customer, app)
    prefix = f"/v2/integrations/{customer}/apps"
    await ctl.fail_next(2, 500, method="PUT", path_prefix=f"{prefix}/{flaky}/")
    await ctl.fail_next(1, 429, method="PUT", path_prefix=f"{prefix}/{throttled}/", retry_after=1)
    await ctl.fail_next(10, 503, method="PUT", path_prefix=f"{prefix}/{broken}/")
    commands = [
        command_event(customer, flaky, {"popup_url": "https://a.example.com/p"}),
        command_event(customer, throttled, {"streaming_url": "wss://a.example.com/s"}),
        command_event(customer, broken, {"recording_enabled": True}),
    ]
    await send_commands(settings_env, commands)
    start_worker(EXOPIPE_APPLIER_RETRY_ATTEMPTS="4")

    outcome = {
        cid: copies[0].data for cid, copies in by_command(await results(settings_env, 3)).items()
    }
    first, second, third = (outcome[c.data["command_id"]] for c in commands)
    assert (first["outcome"], first["attempts"], first["http_status"]) == ("applied", 3, 200)
    assert (second["outcome"], second["attempts"]) == ("applied", 2)
    assert (third["outcome"], third["attempts"], third["http_status"]) == ("failed", 4, 503)
    assert (await ctl.app_settings(customer, throttled))["streaming_url"] == "wss://a.example.com/s"

    # Retry-After: 1 was honoured (the policy's own delays here are at most 0.05 s at first).
    log = await ctl.requests(method="PUT", path_prefix=f"{prefix}/{throttled}/")
    assert [entry["status"] for entry in log] == [429, 200]
    gap = _seconds(log[1]["at"]) - _seconds(log[0]["at"])
    assert gap >= 0.9, gap
    # 4xx other than 429 are never retried; 503 was tried exactly the configured 4 times.
    broken_log = await ctl.requests(method="PUT", path_prefix=f"{prefix}/{broken}/")
    assert len(broken_log) == 4


@pytest.mark.slow
async def test_per_app_order_with_50_apps_by_20_commands(
    settings_env: PipelineEnv,
    apps: Apps,
    ctl: AsyncDoubleControl,
    start_worker: Callable[..., Worker],
    unique: Callable[[str], str],
) -> None:
    customer = unique("cust")
    names = [unique("app") for _ in range(50)]
    for name in names:
        await apps.add(customer, name)
    # Latency makes the calls overlap, so order would break if it were not enforced.
    await ctl.set_latency(20)
    commands = [
        command_event(customer, name, {"popup_url": f"https://h.example.com/{name}/{i}"})
        for i in range(20)
        for name in names
    ]
    await send_commands(settings_env, commands)
    started = time.monotonic()
    start_worker(EXOPIPE_APPLIER_IN_FLIGHT="16")

    found = await results(settings_env, len(commands), wait_seconds=120)
    elapsed = time.monotonic() - started
    grouped = by_command(found)
    assert len(found) == len(commands) and all(len(v) == 1 for v in grouped.values())
    assert {event.data["outcome"] for event in found} == {"applied"}
    for name in names:
        # Results of one app come out in command order, and so did the PUTs.
        mine = [e.data["settings"]["popup_url"] for e in found if e.data["app_id"] == name]
        assert mine == [f"https://h.example.com/{name}/{i}" for i in range(20)]
        puts = await ctl.requests(
            method="PUT", path_prefix=f"/v2/integrations/{customer}/apps/{name}/"
        )
        assert [r["json"]["popup_url"] for r in puts] == mine
        assert (await ctl.app_settings(customer, name))["popup_url"] == mine[-1]
    # Serial would take 1000 x 20 ms = 20 s of latency alone; concurrency must beat that.
    assert elapsed < 20, elapsed


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
