"""Every outcome of a command, end to end: real Kafka, the worker process, the Exotel double."""

from __future__ import annotations

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
from workers.exotel_double.runner import DoubleServer

REC = "https://hooks.example.com/recording"


async def test_every_outcome_once_and_no_token_anywhere(
    settings_env: PipelineEnv,
    apps: Apps,
    ctl: AsyncDoubleControl,
    double: DoubleServer,
    start_worker: Callable[..., Worker],
    unique: Callable[[str], str],
) -> None:
    customer = unique("cust")
    good, bad_token, dry = unique("app"), unique("app"), unique("app")
    await apps.add(customer, good)
    await apps.add(customer, dry, {"popup_url": "https://old.example.com/p"})
    await apps.add(customer, bad_token)
    # The double knows a different token than the secrets file: 401.
    await ctl.register_app(customer, bad_token, "not-the-configured-token")
    await apps.add(customer, "ghost")
    await ctl.delete_app(customer, "ghost")  # token configured, app gone at Exotel: 404
    # The API refuses this PUT with 400, which the worker must not retry.
    await ctl.fail_next(
        1, 400, method="PUT", path_prefix=f"/v2/integrations/{customer}/apps/{good}/"
    )

    applied = command_event(customer, good, {"recording_enabled": True, "recording_url": REC})
    rejected = command_event(customer, good, {"recording_enabled": False})
    invalid = command_event(customer, good, {"popup_url": "ftp://x"})
    invalid.data["settings"] |= {"recording_enabled": "yes", "colour": "red"}
    empty = command_event(customer, good, {})
    unauthorized = command_event(customer, bad_token, {"recording_enabled": True})
    not_found = command_event(customer, "ghost", {"recording_enabled": True})
    no_token = command_event(customer, unique("unconfigured"), {"recording_enabled": True})
    dry_run = command_event(
        customer, dry, {"callback_url": "https://new.example.com/cb"}, dry_run=True
    )
    # A PUT with 400 comes first for `good`; then the valid command for it is applied.
    order = [rejected, applied, invalid, empty, unauthorized, not_found, no_token, dry_run]
    await send_commands(settings_env, [*order, (f"{customer}/{good}", b"\x00\xffnot json at all")])
    worker = start_worker()

    found = await results(settings_env, len(order) + 1)
    grouped = by_command(event for event in found if event.data["command_id"])
    assert all(len(copies) == 1 for copies in grouped.values()), grouped
    outcome = {cid: copies[0].data for cid, copies in grouped.items()}

    assert outcome[applied.data["command_id"]]["outcome"] == "applied"
    assert outcome[applied.data["command_id"]]["settings"]["recording_url"] == REC
    assert outcome[applied.data["command_id"]]["updated_at"]
    assert outcome[applied.data["command_id"]]["http_status"] == 200

    first = outcome[rejected.data["command_id"]]
    assert (first["outcome"], first["http_status"], first["attempts"]) == ("rejected", 400, 1)
    assert first["api_error"]["error"]["code"] == 400

    bad = outcome[invalid.data["command_id"]]
    assert bad["outcome"] == "invalid" and bad["attempts"] == 0
    joined = " ".join(bad["errors"])
    assert "colour" in joined and "recording_enabled" in joined and "popup_url" in joined
    assert outcome[empty.data["command_id"]]["outcome"] == "invalid"

    assert outcome[unauthorized.data["command_id"]]["outcome"] == "unauthorized"
    assert outcome[unauthorized.data["command_id"]]["http_status"] == 401
    assert outcome[not_found.data["command_id"]]["outcome"] == "not_found"
    assert outcome[not_found.data["command_id"]]["http_status"] == 404
    assert outcome[no_token.data["command_id"]]["outcome"] == "unauthorized"
    assert outcome[no_token.data["command_id"]]["attempts"] == 0

    preview = outcome[dry_run.data["command_id"]]
    assert preview["outcome"] == "dry_run"
    assert preview["settings"]["callback_url"] == "https://new.example.com/cb"
    assert preview["settings"]["popup_url"] == "https://old.example.com/p"

    (raw,) = [event.data for event in found if event.data["command_id"] is None]
    assert raw["outcome"] == "invalid" and raw["raw"]["encoding"] == "base64"

    # Exotel saw exactly the fields of the applied command; invalid ones never reached it.
    puts = [r for r in await ctl.requests(method="PUT") if f"/{good}/" in r["path"]]
    assert [r["json"] for r in puts] == [
        {"recording_enabled": False},
        {"recording_enabled": True, "recording_url": REC},
    ]
    assert all(r["headers"]["content-type"] == "application/json" for r in puts)
    assert all(r["auth_scheme"] == "Bearer" for r in puts)
    dry_puts = [r for r in await ctl.requests(method="PUT") if f"/{dry}/" in r["path"]]
    assert dry_puts == []
    assert (await ctl.app_settings(customer, dry))["callback_url"] is None

    states = await collect(settings_env.settings, SETTINGS_STATE, count=1, wait_seconds=10)
    assert [(key, event.data["kind"]) for key, event in states] == [
        (f"{customer}/{good}".encode(), "applied")
    ]

    await worker.stop()
    # No token in any record or log line.
    everything = worker.log() + "".join(e.to_bytes().decode() for e in found)
    everything += "".join(event.to_bytes().decode() for _, event in states)
    for token in apps.tokens.values():
        assert token not in everything
    assert "not-the-configured-token" not in everything
