"""Webhook URLs with credentials: the real ones reach Exotel, no byte of a secret reaches Kafka.

A command points an app's webhooks at the ingress with its tenant secret in the URL, both ways
the ingress takes it (``?token=`` and ``https://cust:SECRET@...``). The worker applies it (and a
dry run, an invalid command quoting the URL, a record that is not JSON), reconciles every second,
and finds a drift. Then every record of every topic of the test's prefix but the command topic
(results, state and drift, the ledger's and the apps table's changelogs) is read back: no secret
in any key or value, nor in the worker's log, nor in ``exopipe settings get``'s output.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from tests.conftest import PipelineEnv
from tests.integration.kafka_io import collect
from tests.integration.settings_applier.conftest import (
    Apps,
    Worker,
    command_event,
    results,
    send_commands,
)
from tests.integration.settings_applier.test_cli_and_reconcile import exopipe
from topics.catalog import SETTINGS_COMMAND, SETTINGS_STATE
from workers import json_codec
from workers.config import Settings
from workers.exotel_client import SETTINGS_FIELDS
from workers.exotel_double.control import AsyncDoubleControl
from workers.kafka import admin_client, new_reader
from workers.topic_admin import describe_topics
from workers.url_credentials import URL_REDACTED, redact_url


async def every_record(settings: Settings, prefix: str, skip: str) -> dict[str, list[bytes]]:
    """Key and value of every record of every topic named ``prefix...`` except ``skip``."""
    async with admin_client(settings) as admin:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix) and t != skip)
        states = await describe_topics(admin, names)
    tps = [TopicPartition(n, p) for n in names for p in range(states[n].partitions)]
    consumer = new_reader(settings)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[str, list[bytes]] = {name: [] for name in names}
        pending = {tp for tp in tps if ends[tp] > 0}
        deadline = asyncio.get_running_loop().time() + 30
        while pending and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                found[tp.topic] += [(r.key or b"") + b"\x00" + (r.value or b"") for r in records]
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        assert not pending, f"could not read {pending} to its end"
        return found
    finally:
        await consumer.stop()


async def drifts(env: PipelineEnv, count: int, wait_seconds: float) -> list[dict[str, Any]]:
    found = await collect(
        env.settings,
        SETTINGS_STATE,
        count=count,
        wait_seconds=wait_seconds,
        where=lambda key, event: event.data["kind"] == "drift",
    )
    return [event.data for _, event in found]


async def test_no_url_credential_in_any_record_while_exotel_gets_the_real_url(
    settings_env: PipelineEnv,
    apps: Apps,
    ctl: AsyncDoubleControl,
    start_worker: Callable[..., Worker],
    unique: Callable[[str], str],
) -> None:
    customer, app = unique("cust"), unique("app")
    token = await apps.add(customer, app)
    secret, password, rotated, later = (f"S3CR3T{i}-{uuid.uuid4().hex}" for i in range(4))
    ingress = f"https://ingress.example.com/v1/{customer}/{app}"
    real = {
        "popup_url": f"{ingress}/popup?token={secret}",
        "missed_call_url": f"{ingress}/missed-call?x=1&token={secret}",
        "callback_url": f"https://{customer}:{password}@ingress.example.com/v1/{customer}/{app}/cb",
        "recording_enabled": True,
    }
    applied = command_event(customer, app, real)
    dry = command_event(
        customer, app, {"recording_url": f"{ingress}/rec?token={secret}"}, dry_run=True
    )
    too_long = command_event(customer, app, {"popup_url": f"{real['popup_url']}&p={'x' * 2100}"})
    not_json = (f"{customer}/{app}", f"oops {real['callback_url']} {real['popup_url']}".encode())
    await send_commands(settings_env, [applied, dry, too_long, not_json])
    worker = start_worker(EXOPIPE_APPLIER_RECONCILE_INTERVAL="1")

    found = await results(settings_env, 4)
    outcome = {event.data["command_id"]: event.data for event in found}
    assert sorted(data["outcome"] for data in outcome.values()) == [
        "applied", "dry_run", "invalid", "invalid",
    ]  # fmt: skip
    # Exotel got the URLs as given; the records hold them redacted.
    puts = [r["json"] for r in await ctl.requests(method="PUT") if f"/{app}/" in r["path"]]
    assert puts == [real]
    assert (await ctl.app_settings(customer, app))["callback_url"] == real["callback_url"]
    shown = outcome[applied.data["command_id"]]["settings"]
    assert shown["popup_url"] == f"{ingress}/popup?token={URL_REDACTED}"
    assert shown["callback_url"] == redact_url(real["callback_url"])
    assert f"{customer}:{URL_REDACTED}@" in shown["callback_url"]

    # Several reconcile rounds against the real URLs: no drift, not even for a new credential.
    await asyncio.sleep(3)
    now = await ctl.app_settings(customer, app)
    current = {name: now[name] for name in SETTINGS_FIELDS if now[name] is not None}
    await ctl.register_app(
        customer, app, token, current | {"popup_url": f"{ingress}/popup?token={rotated}"}
    )
    await asyncio.sleep(3)
    assert await drifts(settings_env, 1, wait_seconds=2) == []
    # A real change (another host) is one drift, redacted on both sides.
    moved = f"https://elsewhere.example.com/p?token={later}"
    await ctl.register_app(customer, app, token, current | {"popup_url": moved})
    (drift,) = await drifts(settings_env, 1, wait_seconds=20)
    assert drift["differences"] == ["popup_url"]
    assert drift["settings"]["popup_url"] == redact_url(moved)
    assert drift["expected"]["popup_url"] == shown["popup_url"]

    code, out, err = await exopipe(
        settings_env, "settings", "get", "--customer", customer, "--app", app
    )
    assert code == 0, err
    assert json_codec.loads(out)["settings"]["popup_url"] == redact_url(moved)
    printed = out + err

    await worker.stop()
    prefix = settings_env.settings.topic_prefix
    command_topic = settings_env.settings.topic(SETTINGS_COMMAND).name
    written = await every_record(settings_env.settings, prefix, command_topic)
    counts = {name.removeprefix(prefix): len(records) for name, records in written.items()}
    # The worker's outputs and both tables' changelogs were all read, none empty.
    for suffix in ("settings.result", "settings.state", "-ledger-changelog", "-apps-changelog"):
        assert any(name.endswith(suffix) and n for name, n in counts.items()), counts
    everything = b"\n".join(b"\n".join(records) for records in written.values())
    everything += worker.log().encode() + printed.encode()
    for value in (secret, password, rotated, later, token):
        assert value.encode() not in everything, value
