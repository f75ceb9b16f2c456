"""A settings command that failed (the API answered 503 until retries ran out) is applied by
``exopipe dlq replay``; replaying the same dead letter again makes no second PUT."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from topics.catalog import SETTINGS_RESULT
from workers.demo.processes import Children
from workers.exotel_double.control import AsyncDoubleControl


async def _exopipe(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    return process.returncode or 0, out.decode()


@pytest.mark.slow
async def test_replayed_command_is_applied_once(
    topics_env: PipelineEnv, unique, tmp_path: Path
) -> None:
    settings = topics_env.settings
    double_url = settings.exotel_base_url.removesuffix("/v2/integrations")
    customer, app = unique("cust"), unique("app")
    secrets = tmp_path / "secrets.json"
    secrets.write_text(f'{{"exotel_apps": {{"{customer}/{app}": "tok-{app}"}}}}')
    run = topics_env.with_vars(
        EXOPIPE_SECRETS_FILE=str(secrets),
        EXOPIPE_APPLIER_RETRY_ATTEMPTS="2",
        EXOPIPE_APPLIER_RETRY_BASE_DELAY="0.05",
        EXOPIPE_APPLIER_RETRY_MAX_DELAY="0.1",
        EXOPIPE_APPLIER_RECONCILE_INTERVAL="0",
    )
    env = run.process_env()
    path = f"/v2/integrations/{customer}/apps/{app}"
    children = Children(tmp_path)
    async with AsyncDoubleControl(double_url) as ctl:
        await ctl.register_app(customer, app, f"tok-{app}", {})
        await ctl.fail_next(2, 503, method="PUT", path_prefix=path)  # every attempt of the first
        try:
            children.start("settings", ["worker", "settings"], env)
            status, out = await _exopipe(
                env, "settings", "set", "--customer", customer, "--app", app,
                "--recording-enabled", "true", "--command-id", f"{app}-c1", "--wait",
            )  # fmt: skip
            assert status == 1 and '"failed"' in out, out

            status, listing = await _exopipe(env, "dlq", "list", "--topic", SETTINGS_RESULT.name)
            assert status == 0 and f"{app}-c1" in listing

            for _ in range(2):  # the same dead letter, replayed twice
                status, out = await _exopipe(env, "dlq", "replay", "--topic", SETTINGS_RESULT.name)
                assert status == 0 and f"replayed {app}-c1~replay1" in out, out
            # A later command for the same app is handled after both replays (per-app order).
            status, out = await _exopipe(
                env, "settings", "set", "--customer", customer, "--app", app,
                "--recording-enabled", "false", "--command-id", f"{app}-c2", "--wait",
            )  # fmt: skip
            assert status == 0, out

            def mine(key: bytes | None, event) -> bool:  # noqa: ANN001
                return event.data["customer_id"] == customer

            results = await collect(settings, SETTINGS_RESULT, count=4, wait_seconds=10, where=mine)
            outcomes = [(e.data["command_id"], e.data["outcome"]) for _, e in results]
            assert outcomes == [
                (f"{app}-c1", "failed"),
                (f"{app}-c1~replay1", "applied"),
                (f"{app}-c2", "applied"),
            ]
            puts = [r["status"] for r in await ctl.requests(method="PUT", path_prefix=path)]
            assert puts == [503, 503, 200, 200]  # the second replay made no PUT
        finally:
            children.stop_all()
