"""Reconcile: a drift record when Exotel differs from the last applied settings, once per drift."""

from __future__ import annotations

import asyncio

import httpx

from tests.unit.settings_applier.fakes import FakeOutbox, FakeTable, Faults
from workers import json_codec
from workers.exotel_client import SETTINGS_FIELDS, ExotelClient
from workers.secret_store import SecretStore
from workers.settings_applier.reconcile import Reconciler
from workers.settings_applier.state import DurableTable

APPLIED = {name: None for name in SETTINGS_FIELDS} | {"popup_url": "https://ours.example.com"}


async def test_drift_is_published_once_and_cleared_when_it_heals() -> None:
    remote = dict(APPLIED)

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"success": True, "data": {"app_id": "a", "settings": remote}}
        return httpx.Response(200, content=json_codec.dumps(body))

    faults = Faults()
    apps = DurableTable(FakeTable({}, faults, "apps"))
    await apps.put(2, "c/a", {"settings": APPLIED, "command_id": "cmd-1", "p": 2})
    outbox = FakeOutbox(faults)
    secrets = SecretStore.from_mapping({"exotel_apps": {"c/a": "tok"}})
    client = ExotelClient("https://x.example.com", secrets, transport=httpx.MockTransport(handler))
    reconciler = Reconciler(apps, client, outbox, asyncio.Semaphore(2))  # type: ignore[arg-type]
    try:
        assert (await reconciler.run_once()).drifted == 0
        remote["popup_url"] = "https://theirs.example.com"
        first, second = await reconciler.run_once(), await reconciler.run_once()
        assert (first.published, second.drifted, second.published) == (1, 1, 0)
        ((key, value),) = outbox.logs["state"]
        drift = json_codec.loads(value)["data"]
        assert key == "c/a" and drift["kind"] == "drift" and drift["differences"] == ["popup_url"]
        assert drift["expected"]["popup_url"] == "https://ours.example.com"
        remote["popup_url"] = "https://ours.example.com"
        await reconciler.run_once()
        assert apps.get("c/a")["drift"] is None  # type: ignore[index]
        remote["popup_url"] = "https://theirs.example.com"
        assert (await reconciler.run_once()).published == 1  # a new drift is news again
    finally:
        await client.aclose()


async def test_a_failed_get_is_counted_not_raised() -> None:
    faults = Faults()
    apps = DurableTable(FakeTable({}, faults, "apps"))
    await apps.put(0, "c/a", {"settings": APPLIED, "p": 0})
    client = ExotelClient(
        "https://x.example.com",
        SecretStore.from_mapping({"exotel_apps": {"c/a": "tok"}}),
        transport=httpx.MockTransport(lambda request: httpx.Response(503)),
    )
    try:
        report = await Reconciler(apps, client, FakeOutbox(faults), asyncio.Semaphore(1)).run_once()  # type: ignore[arg-type]
    finally:
        await client.aclose()
    assert (report.errors, report.checked) == (1, 0)
