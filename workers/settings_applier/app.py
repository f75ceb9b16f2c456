"""``exopipe worker settings``: the faust app that applies settings commands.

Commands on ``exotel.settings.command`` are validated, applied with ``PUT`` through
:class:`~workers.exotel_client.ExotelClient`, and answered with exactly one record on
``exotel.settings.result``; applied settings also go to ``exotel.settings.state`` (compacted) and
into the ``apps`` table that the reconciler compares with Exotel. Clients (the HTTP client, the
scanning consumer) are created once when the agent starts and closed when it stops.

This module only wires things; it must never read the environment (``Settings`` is passed in)
or touch a token (the client takes it from the secrets store per request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import faust

from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT, SETTINGS_STATE
from workers.config import Settings
from workers.exotel_client import ExotelClient
from workers.plumbing.faust_app import catalog_topic, new_app
from workers.plumbing.offset_guard import continuity_guard
from workers.retry import RetryPolicy
from workers.secret_store import SecretStore
from workers.settings_applier.agents import register_agent
from workers.settings_applier.applier import Applier
from workers.settings_applier.delivery import Outbox
from workers.settings_applier.processor import CommandProcessor
from workers.settings_applier.reconcile import Reconciler
from workers.settings_applier.state import DurableTable

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# Kafka writes (ledger, results) are retried a little before the worker gives up and restarts.
_KAFKA_POLICY = RetryPolicy(max_attempts=5, base_delay=0.2, max_delay=5.0)
_PRUNE_EVERY_S = 3600.0


class _Runtime:
    """What the agent opened, shared with the timers while it runs."""

    client: ExotelClient | None = None
    outbox: Outbox | None = None


def _table(app: faust.App, name: str, partitions: int) -> Any:
    # bytes key and value types make faust use its "raw" codec for the changelog, both when
    # writing and when recovering (a Schema here would not: its types would fall back to json).
    # Values are JSON made by workers.json_codec.
    return app.Table(name, key_type=bytes, value_type=bytes, partitions=partitions)


def create_app(settings: Settings, replication: int) -> faust.App:
    cfg = settings.applier
    app = new_app(
        "settings",
        settings,
        replication,
        broker_session_timeout=cfg.session_timeout,
        broker_heartbeat_interval=min(3.0, cfg.session_timeout / 3),
    )
    secrets = SecretStore.load(settings.secrets_file)
    source = catalog_topic(app, settings, SETTINGS_COMMAND)
    partitions = settings.topic(SETTINGS_COMMAND).partitions
    ledger = DurableTable(_table(app, "settings-ledger", partitions), app)
    apps = DurableTable(_table(app, "settings-apps", partitions), app)
    slots = asyncio.Semaphore(cfg.in_flight)
    api_policy = RetryPolicy(
        max_attempts=cfg.retry_attempts,
        base_delay=cfg.retry_base_delay,
        max_delay=cfg.retry_max_delay,
    )
    runtime = _Runtime()
    # Produce/consume targets must exist as faust topics for the producer's metadata.
    for spec in (SETTINGS_RESULT, SETTINGS_STATE):
        catalog_topic(app, settings, spec)

    @asynccontextmanager
    async def make_processor() -> AsyncIterator[CommandProcessor]:
        client = ExotelClient.from_settings(settings, secrets)
        outbox = Outbox(app, settings, SETTINGS_RESULT, SETTINGS_STATE)
        await outbox.start()
        runtime.client, runtime.outbox = client, outbox
        try:
            yield CommandProcessor(
                ledger=ledger,
                apps=apps,
                applier=Applier(client, api_policy, slots),
                outbox=outbox,
                kafka_policy=_KAFKA_POLICY,
                raw_cap=cfg.raw_cap_bytes,
            )
        finally:
            runtime.client = runtime.outbox = None
            await outbox.stop()
            await client.aclose()

    register_agent(
        app,
        source,
        max_pending=cfg.max_pending,
        make_processor=make_processor,
        make_guard=lambda: continuity_guard(app, settings),
    )

    if cfg.reconcile_interval > 0:

        @app.timer(cfg.reconcile_interval, name="reconcile-settings")
        async def reconcile() -> None:
            if runtime.client is None or runtime.outbox is None:
                return
            try:
                await Reconciler(apps, runtime.client, runtime.outbox, slots).run_once()
            except Exception:
                # A failed round is retried at the next tick; it must not stop the worker.
                log.exception("reconcile round failed")

    if cfg.dedup_retention > 0:

        @app.timer(min(_PRUNE_EVERY_S, cfg.dedup_retention), name="prune-settings-ledger")
        async def prune() -> None:
            try:
                dropped = await ledger.prune(cfg.dedup_retention)
            except Exception:
                log.exception("pruning the ledger failed")
                return
            if dropped:
                log.info("forgot %d command ids older than %.0fs", dropped, cfg.dedup_retention)

    return app
