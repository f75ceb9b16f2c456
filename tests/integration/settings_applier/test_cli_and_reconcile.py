"""``exopipe settings set --wait`` / ``get`` against the worker and the double; drift records."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from tests.integration.settings_applier.conftest import (
    Apps,
    Worker,
    command_event,
    results,
    send_commands,
)
from topics.catalog import SETTINGS_COMMAND, SETTINGS_STATE
from workers import json_codec
from workers.exotel_double.control import AsyncDoubleControl

REC = "https://hooks.example.com/rec"


async def exopipe(env: PipelineEnv, *args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop (the double answers from this same loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *args,
        env=env.process_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_set_wait_prints_applied_and_get_reads_it_back(
    settings_env: PipelineEnv,
    apps: Apps,
    ctl: AsyncDoubleControl,
    start_worker: Callable[..., Worker],
    unique: Callable[[str], str],
) -> None:
    customer, app = unique("cust"), unique("app")
    token = await apps.add(customer, app)
    start_worker()
    ident = ("--customer", customer, "--app", app)

    code, out, err = await exopipe(
        settings_env,
        "settings",
        "set",
        *ident,
        "--recording-enabled",
        "true",
        "--recording-url",
        REC,
        "--wait",
    )
    assert code == 0, err
    result = json_codec.loads(out[out.index("\n{") :])
    assert result["outcome"] == "applied"
    assert result["settings"]["recording_url"] == REC
    assert (await ctl.app_settings(customer, app))["recording_enabled"] is True

    code, out, err = await exopipe(settings_env, "settings", "get", *ident)
    assert code == 0, err
    shown = json_codec.loads(out)
    assert shown["settings"]["recording_url"] == REC and shown["updated_at"]

    # A 404 with --wait exits non-zero and still prints the result.
    await ctl.delete_app(customer, app)
    code, out, err = await exopipe(
        settings_env, "settings", "set", *ident, "--popup-url", "https://p.example.com", "--wait"
    )
    assert code == 1
    assert json_codec.loads(out[out.index("\n{") :])["outcome"] == "not_found"

    # Invalid input never reaches Kafka: every reason is printed, exit status 2.
    code, out, err = await exopipe(
        settings_env, "settings", "set", *ident, "--popup-url", "ftp://nope", "--wait"
    )
    assert code == 2 and "popup_url" in err
    commands = await collect(settings_env.settings, SETTINGS_COMMAND, count=3, wait_seconds=3)
    assert len(commands) == 2
    assert token not in out + err


async def test_reconcile_publishes_drift_once(
    settings_env: PipelineEnv,
    apps: Apps,
    ctl: AsyncDoubleControl,
    start_worker: Callable[..., Worker],
    unique: Callable[[str], str],
) -> None:
    customer, app, steady = unique("cust"), unique("app"), unique("steady")
    token = await apps.add(customer, app)
    await apps.add(customer, steady)
    await send_commands(
        settings_env,
        [
            command_event(customer, app, {"popup_url": "https://ours.example.com/p"}),
            command_event(customer, steady, {"popup_url": "https://ours.example.com/s"}),
        ],
    )
    start_worker(EXOPIPE_APPLIER_RECONCILE_INTERVAL="1")
    assert len(await results(settings_env, 2)) == 2

    # Someone changes the app at Exotel behind the pipeline's back.
    await ctl.register_app(customer, app, token, {"popup_url": "https://theirs.example.com/p"})
    states = await collect(
        settings_env.settings,
        SETTINGS_STATE,
        count=1,
        wait_seconds=20,
        where=lambda key, event: event.data["kind"] == "drift",
    )
    await asyncio.sleep(3)  # several more rounds: the same drift is not published again
    drifts = await collect(
        settings_env.settings,
        SETTINGS_STATE,
        count=2,
        wait_seconds=3,
        where=lambda key, event: event.data["kind"] == "drift",
    )
    assert len(states) == 1 and len(drifts) == 1
    key, drift = drifts[0]
    assert key == f"{customer}/{app}".encode()
    assert drift.data["settings"]["popup_url"] == "https://theirs.example.com/p"
    assert drift.data["expected"]["popup_url"] == "https://ours.example.com/p"
    assert drift.data["differences"] == ["popup_url"]
