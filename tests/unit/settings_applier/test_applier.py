"""The applier with the real client over ``httpx.MockTransport`` and the shared retry policy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from workers import json_codec
from workers.exotel_client import ExotelClient
from workers.retry import RetryPolicy
from workers.secret_store import SecretStore
from workers.settings_applier.applier import Applier
from workers.settings_applier.commands import Command

OK = {
    "success": True,
    "data": {
        "app_id": "a",
        "settings": {"recording_enabled": True, "updated_at": "2024-06-15T10:30:00.000Z"},
    },
}
SECRETS = SecretStore.from_mapping({"exotel_apps": {"c/a": "tok-1"}})


def scripted(
    statuses: list[tuple[int, dict[str, str]]],
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        status, headers = statuses.pop(0)
        body = (
            OK if status == 200 else {"success": False, "error": {"code": status, "message": "x"}}
        )
        return httpx.Response(status, content=json_codec.dumps(body), headers=headers)

    return handler


async def run(
    statuses: list[tuple[int, dict[str, str]]], *, dry_run: bool = False, attempts: int = 4
):
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = ExotelClient(
        "https://x.example.com/v2/integrations",
        SECRETS,
        transport=httpx.MockTransport(scripted(statuses)),
    )
    applier = Applier(
        client,
        RetryPolicy(max_attempts=attempts, base_delay=0.1, max_delay=10),
        asyncio.Semaphore(1),
        sleep=sleep,
    )
    command = Command("cmd", "c", "a", {"recording_enabled": True}, dry_run=dry_run)
    try:
        return await applier.apply(command), sleeps
    finally:
        await client.aclose()


async def test_500s_then_success() -> None:
    outcome, sleeps = await run([(500, {}), (502, {}), (200, {})])
    assert (outcome.outcome, outcome.attempts, outcome.http_status) == ("applied", 3, 200)
    assert outcome.updated_at == "2024-06-15T10:30:00.000Z"
    assert len(sleeps) == 2 and all(0 <= s <= 0.2 for s in sleeps)


async def test_429_honours_retry_after() -> None:
    outcome, sleeps = await run([(429, {"Retry-After": "7"}), (200, {})])
    assert outcome.outcome == "applied" and sleeps == [7.0]


async def test_4xx_is_final_without_retry() -> None:
    for status, kind in [
        (400, "rejected"),
        (401, "unauthorized"),
        (404, "not_found"),
        (409, "rejected"),
    ]:
        outcome, sleeps = await run([(status, {})])
        assert (outcome.outcome, outcome.attempts, outcome.http_status) == (kind, 1, status)
        assert outcome.api_error["error"]["code"] == status and sleeps == []


async def test_exhausted_retries_fail_with_the_last_status() -> None:
    outcome, sleeps = await run([(503, {})] * 4, attempts=4)
    assert (outcome.outcome, outcome.attempts, outcome.http_status) == ("failed", 4, 503)
    assert len(sleeps) == 3 and "4 attempts" in outcome.errors[0]


async def test_dry_run_gets_and_previews() -> None:
    outcome, _ = await run([(200, {})], dry_run=True)
    assert outcome.outcome == "dry_run" and outcome.settings["recording_enabled"] is True


async def test_the_slot_is_not_held_during_a_backoff() -> None:
    slots = asyncio.Semaphore(1)
    held_while_sleeping: list[bool] = []

    async def sleep(seconds: float) -> None:
        held_while_sleeping.append(slots.locked())

    client = ExotelClient(
        "https://x.example.com/v2",
        SECRETS,
        transport=httpx.MockTransport(scripted([(503, {}), (200, {})])),
    )
    applier = Applier(client, RetryPolicy(max_attempts=3), slots, sleep=sleep)
    try:
        outcome = await applier.apply(Command("c1", "c", "a", {"recording_enabled": True}))
    finally:
        await client.aclose()
    assert outcome.outcome == "applied" and held_while_sleeping == [False]
