"""``exopipe worker enricher``: the enricher's job on the batch core, its topics and its ops port.

The group id carries the topic prefix, so environments (and tests) sharing one cluster get their
own consumer group, by-caller topic and changelogs, named as the faust app before it named them
(``<prefix>exopipe-enricher``, ``...-by-caller``, ``...-<store>-changelog``): a deployment that
ran the faust enricher keeps its state. Internal topics have the call topics' partition count,
so partition p of every topic and store lands on one worker. Nothing here reads the
environment: everything comes from ``settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

from aiokafka.admin import NewTopic

from topics.catalog import (
    CALL_PARTITIONS,
    MISSED_CALL_ENRICHED,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_REJECTED,
)
from workers.config import Settings
from workers.enricher.hours import parse_hours_book
from workers.enricher.stages import Enricher, Topics
from workers.enricher.stores import STORE_NAMES, EnricherStores, changelog_topic
from workers.kafka import admin_client
from workers.plumbing.batch_worker import BatchConfig, BatchWorker
from workers.plumbing.ops_http import serve_ops
from workers.settings_state import SettingsState
from workers.topic_admin import create_internal_topics, prepare_catalog

__all__ = ["create_enricher", "group_id", "run"]

log = logging.getLogger(__name__)

# 7 days, like the call topics: a by-caller record waits out a worker down over a weekend.
BY_CALLER_RETENTION_MS = 7 * 24 * 3600 * 1000


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}exopipe-enricher"


def create_enricher(settings: Settings) -> Enricher:
    """The job, its stores declared (bad business-hours config fails here)."""
    hours = parse_hours_book(settings.enricher.business_hours)
    group = group_id(settings)
    names = Topics(
        incoming=settings.topic(WEBHOOK_INCOMING_CALL).name,
        missed=settings.topic(WEBHOOK_MISSED_CALL).name,
        by_caller=f"{group}-by-caller",
        enriched=settings.topic(MISSED_CALL_ENRICHED).name,
        rejected=settings.topic(WEBHOOK_REJECTED).name,
    )
    stores = EnricherStores.declare(group, (names.incoming, names.missed), names.by_caller)
    view = SettingsState(settings, client_id="exopipe-enricher-settings")
    return Enricher(settings.enricher, stores, names, hours, view)


def _internal_topics(settings: Settings, replication: int) -> list[NewTopic]:
    group = group_id(settings)
    compacted = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}
    by_caller = {"cleanup.policy": "delete", "retention.ms": str(BY_CALLER_RETENTION_MS)}
    return [
        NewTopic(f"{group}-by-caller", CALL_PARTITIONS, replication, topic_configs=by_caller),
        *(
            NewTopic(
                changelog_topic(group, name), CALL_PARTITIONS, replication, topic_configs=compacted
            )
            for name in STORE_NAMES
        ),
    ]


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the enricher until ``stop`` is set."""
    replication = await prepare_catalog(settings)
    async with admin_client(settings) as admin:
        await create_internal_topics(admin, _internal_topics(settings, replication))
    enricher = create_enricher(settings)
    config = BatchConfig(
        group_id=group_id(settings),
        client_id="exopipe-enricher",
        tick_seconds=settings.enricher.tick_seconds,
        session_timeout_ms=int(settings.enricher.session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(min(3.0, settings.enricher.session_timeout_seconds / 3) * 1000),
        # A day of state is about 10 GiB: on disk, checkpointed, caught up after a restart.
        state_dir=settings.worker_data_dir / group_id(settings),
    )
    worker = BatchWorker(settings, config, enricher, "enricher")
    view = asyncio.create_task(enricher.settings_view.run(), name="settings-state")
    ops = None
    if settings.worker_http_port:
        ops = await serve_ops(
            settings.worker_http_host,
            settings.worker_http_port,
            alive=lambda: not view.done(),
            ready=lambda: worker.running and worker.ready.is_set(),
        )
    try:
        # Stage two needs every app's settings: read them before the first record.
        ready = asyncio.create_task(enricher.settings_view.ready.wait())
        await asyncio.wait([ready, view], return_when=asyncio.FIRST_COMPLETED)
        if view.done():
            view.result()  # the reader failed: say why
        ready.cancel()
        gc.freeze()  # start-up objects out of the collector's way (shorter full collections)
        await worker.run(stop)
    finally:
        view.cancel()
        await asyncio.gather(view, return_exceptions=True)
        if ops is not None:
            await ops.cleanup()


def run(settings: Settings) -> int:
    """``exopipe worker enricher``: until SIGTERM or SIGINT, then a clean stop (all committed)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    log.info("enricher stopped")
    return 0
