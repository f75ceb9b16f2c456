"""Webhook URL credentials reach Exotel's PUT and nothing else the worker writes.

The real client and applier run over ``httpx.MockTransport`` (an Exotel that stores what it is
PUT and can echo a URL back in an error); the tables and the outbox are the in-memory fakes,
whose contents are exactly what would be on the changelog and record topics.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.unit.settings_applier.fakes import FakeOutbox, FakeTable, Faults
from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT, SETTINGS_STATE
from topics.events import make_event
from topics.schemas import violations
from workers import json_codec
from workers.exotel_client import SETTINGS_FIELDS, ExotelClient
from workers.retry import RetryPolicy
from workers.secret_store import SecretStore
from workers.settings_applier.applier import Applier
from workers.settings_applier.processor import CommandProcessor
from workers.settings_applier.reconcile import Reconciler
from workers.settings_applier.records import drift_event, public_settings
from workers.settings_applier.state import DurableTable
from workers.url_credentials import URL_REDACTED as M

SECRET = "S3CR3T-q-7f1c9a"
PASSWORD = "S3CR3T-p-0b2e4d"
INGRESS = "https://ingress.example.com/v1/c/a"
SETTINGS = {
    "popup_url": f"{INGRESS}/popup?token={SECRET}",
    "callback_url": f"https://c:{PASSWORD}@ingress.example.com/v1/c/a/callback",
    "recording_enabled": True,
}
REDACTED = {
    "popup_url": f"{INGRESS}/popup?token={M}",
    "callback_url": f"https://c:{M}@ingress.example.com/v1/c/a/callback",
    "recording_enabled": True,
}


@dataclass
class Exotel:
    """One app's settings; PUT bodies are kept as sent; ``echo`` answers 400 quoting the body."""

    settings: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(SETTINGS_FIELDS))
    puts: list[dict[str, Any]] = field(default_factory=list)
    echo: bool = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            body = json_codec.loads(request.content)
            self.puts.append(body)
            if self.echo:
                error = {"code": 400, "message": f"cannot reach {body.get('popup_url')}"}
                return httpx.Response(400, content=json_codec.dumps({"error": error}))
            self.settings |= body
        envelope = {"success": True, "data": {"app_id": "a", "settings": self.settings}}
        return httpx.Response(200, content=json_codec.dumps(envelope))


@dataclass
class World:
    exotel: Exotel
    processor: CommandProcessor
    reconciler: Reconciler
    outbox: FakeOutbox
    ledger: dict[bytes, bytes]
    apps: dict[bytes, bytes]
    table: DurableTable

    def written(self) -> bytes:
        """Every byte the worker wrote: records, and both tables' changelogs (keys too)."""
        records = [key.encode() + value for log in self.outbox.logs.values() for key, value in log]
        changelogs = [
            key + value for table in (self.ledger, self.apps) for key, value in table.items()
        ]
        return b"\n".join(records + changelogs)

    async def send(self, value: bytes, offset: int) -> dict[str, Any]:
        await self.processor.handle(self.processor.parse(b"c/a", value, 0, offset))
        return self.outbox.results()[-1]["data"]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    exotel, faults = Exotel(), Faults()
    ledger: dict[bytes, bytes] = {}
    apps: dict[bytes, bytes] = {}
    outbox = FakeOutbox(faults)
    client = ExotelClient(
        "https://x.example.com",
        SecretStore.from_mapping({"exotel_apps": {"c/a": "tok"}}),
        transport=httpx.MockTransport(exotel),
    )
    table = DurableTable(FakeTable(apps, faults, "apps"))
    slots = asyncio.Semaphore(1)
    processor = CommandProcessor(
        ledger=DurableTable(FakeTable(ledger, faults, "ledger")),
        apps=table,
        applier=Applier(client, RetryPolicy(max_attempts=1), slots),
        outbox=outbox,  # type: ignore[arg-type]
        kafka_policy=RetryPolicy(max_attempts=1),
        raw_cap=4096,
    )
    reconciler = Reconciler(table, client, outbox, slots)  # type: ignore[arg-type]
    try:
        yield World(exotel, processor, reconciler, outbox, ledger, apps, table)
    finally:
        await client.aclose()


def command(settings: dict[str, Any], command_id: str = "cmd-1", **extra: Any) -> bytes:
    """A command envelope, not validated here: invalid commands are sent on purpose."""
    data = {"command_id": command_id, "customer_id": "c", "app_id": "a", "settings": settings}
    template = make_event(
        SETTINGS_COMMAND, {**data, "settings": {"recording_enabled": True}}, source="t"
    )
    return json_codec.dumps(template.to_dict() | {"data": data | extra})


def assert_no_secret(blob: bytes) -> None:
    for secret in (SECRET, PASSWORD):
        assert secret.encode() not in blob


async def test_the_put_carries_the_real_urls_and_every_record_the_redacted_ones(
    world: World,
) -> None:
    result = await world.send(command(SETTINGS), 1)

    assert world.exotel.puts == [SETTINGS]  # the client is not weakened
    assert result["outcome"] == "applied"
    assert result["settings"] == public_settings(REDACTED)
    ((key, value),) = world.outbox.logs["state"]
    state = json_codec.loads(value)["data"]
    assert state["settings"] == public_settings(REDACTED)
    assert violations(SETTINGS_STATE, state) == [] and violations(SETTINGS_RESULT, result) == []
    # The ledger's recorded result (re-sent as is after a crash) and the apps table entry.
    assert world.table.get("c/a")["settings"] == public_settings(REDACTED)  # type: ignore[index]
    assert len(world.ledger) == 1 and len(world.apps) == 1
    assert_no_secret(world.written())

    preview = await world.send(command(SETTINGS, "cmd-2", dry_run=True), 2)
    assert preview["outcome"] == "dry_run"
    assert preview["settings"]["popup_url"] == REDACTED["popup_url"]
    assert_no_secret(world.written())


async def test_refusals_and_api_errors_quote_no_secret(world: World) -> None:
    # A validation message quotes the value it refuses (here: too long, and not a Boolean).
    long_url = f"{INGRESS}/popup?token={SECRET}&pad={'x' * 2100}"
    bad = {"popup_url": long_url, "recording_enabled": f"{INGRESS}/x?token={SECRET}"}
    invalid = await world.send(command(bad), 1)
    assert invalid["outcome"] == "invalid"
    assert any("popup_url" in error for error in invalid["errors"])
    assert any("recording_enabled" in error for error in invalid["errors"])

    # Not JSON: the raw bytes kept in the result, as text and as base64.
    text = await world.send(
        f"oops {INGRESS}?token={SECRET} and https://c:{PASSWORD}@h.example".encode(), 2
    )
    assert text["raw"]["encoding"] == "utf-8" and f"token={M}" in text["raw"]["text"]
    binary = await world.send(b"\xff\xfe https://u:" + PASSWORD.encode() + b"@h/?sig=" + b"x", 3)
    assert binary["raw"]["encoding"] == "base64"
    assert_no_secret(base64.b64decode(binary["raw"]["text"]))

    # An API that echoes the URL in its 400.
    world.exotel.echo = True
    rejected = await world.send(command(SETTINGS, "cmd-4"), 4)
    assert rejected["outcome"] == "rejected"
    assert f"token={M}" in rejected["api_error"]["error"]["message"]
    assert world.exotel.puts[-1] == SETTINGS
    assert_no_secret(world.written())


async def test_drift_compares_redacted_forms_without_false_drift(world: World) -> None:
    await world.send(command(SETTINGS), 1)
    # Exotel holds the real URLs, the table the redacted ones: no drift.
    assert (await world.reconciler.run_once()).drifted == 0

    # Only the credential changed at Exotel: not seen (the documented limit).
    world.exotel.settings["popup_url"] = f"{INGRESS}/popup?token=S3CR3T-rotated"
    assert (await world.reconciler.run_once()).drifted == 0

    # The URL itself changed: drift, published once, with both sides redacted.
    world.exotel.settings["popup_url"] = f"https://elsewhere.example.com/p?token={SECRET}"
    first, second = await world.reconciler.run_once(), await world.reconciler.run_once()
    assert (first.published, second.drifted, second.published) == (1, 1, 0)
    ((_, value),) = world.outbox.logs["state"][1:]  # after the applied state
    drift = json_codec.loads(value)["data"]
    assert drift["differences"] == ["popup_url"]
    assert drift["settings"]["popup_url"] == f"https://elsewhere.example.com/p?token={M}"
    assert drift["expected"]["popup_url"] == REDACTED["popup_url"]
    assert violations(SETTINGS_STATE, drift) == []
    assert_no_secret(world.written())
    assert b"S3CR3T-rotated" not in world.written()


async def test_an_entry_written_before_redaction_gives_no_false_drift(world: World) -> None:
    world.exotel.settings |= SETTINGS
    # As the apps table held it before redaction: real URLs, for the settings and a seen drift.
    entry = {"settings": dict(world.exotel.settings), "command_id": "old", "p": 0}
    await world.table.put(0, "c/a", entry)
    assert (await world.reconciler.run_once()).drifted == 0
    world.exotel.settings["popup_url"] = f"https://elsewhere.example.com/p?token={SECRET}"
    await world.table.put(0, "c/a", {**entry, "drift": dict(world.exotel.settings)})
    report = await world.reconciler.run_once()
    assert (report.drifted, report.published) == (1, 0)  # the same drift: not news again
    # Healed: the entry is written again, redacted.
    world.exotel.settings["popup_url"] = SETTINGS["popup_url"]
    assert (await world.reconciler.run_once()).drifted == 0
    assert world.table.get("c/a") == {**entry, "settings": public_settings(REDACTED), "drift": None}
    assert_no_secret(world.apps[b"c/a"])


def test_a_drift_event_built_from_real_urls_is_redacted() -> None:
    event = drift_event(
        "c",
        "a",
        observed=SETTINGS | {"popup_url": f"https://x.example/?key={SECRET}"},
        expected=SETTINGS,
        updated_at=None,
        command_id="cmd-1",
    )
    assert_no_secret(event.to_bytes())
    assert event.data["differences"] == ["popup_url"]
