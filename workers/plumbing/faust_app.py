"""The one place faust apps are configured, and :func:`run_worker` that runs one.

Each faust worker package (``settings``, ``archiver``, ``stream-archiver``) exposes
``create_app(settings, replication) -> faust.App`` built with :func:`new_app`; its agents read
catalog topics through :func:`catalog_topic`. Every worker is its own faust app (its own consumer
group and table changelogs), so each can be deployed and scaled on its own.

Before a worker starts, the catalog's topics are created if missing: faust would otherwise let
the broker or itself create a source topic with the wrong partition count, and tables then fail
with ``PartitionsMismatch``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from importlib import import_module
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from topics.catalog import CATALOG, TopicSpec
from workers.config import Settings
from workers.logs import logging_config
from workers.plumbing.ops_http import OpsHttp
from workers.plumbing.recovery_watch import RecoveryWatchService
from workers.plumbing.worker_metrics import PrometheusSensor
from workers.topic_admin import prepare_catalog

__all__ = ["FAUST_WORKERS", "catalog_topic", "new_app", "raw_topic", "run_worker"]

log = logging.getLogger(__name__)

# name -> module exposing create_app(settings: Settings, replication: int) -> faust.App
FAUST_WORKERS: dict[str, str] = {
    "archiver": "workers.archiver.app",
    "settings": "workers.settings_applier.app",
    "stream-archiver": "workers.stream_archiver.app",
}


class _IdempotentProducer(aiokafka_driver.Producer):
    """faust's Kafka producer with aiokafka's idempotence on.

    faust asks for it only with exactly-once processing. Without it, a batch sent again after its
    acknowledgement was lost (a connection reset between worker and broker) is written twice:
    tests/faults/test_kafka_network_faults.py wrote 50 of 51 records twice.
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class _App(faust.App):
    """A faust app whose producer is idempotent (its outcomes, results, ledger, changelogs)."""

    def _new_producer(self) -> Any:
        return _IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)


def new_app(worker_name: str, settings: Settings, replication: int, **overrides: Any) -> faust.App:
    """A faust app with the project's defaults; ``overrides`` go to ``faust.App`` as is."""
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")]
    options: dict[str, Any] = {
        "broker": brokers,
        # Tables live in memory and are rebuilt from their changelog topics on start.
        "store": "memory://",
        # faust keeps a per-app directory even with memory tables; never in the working dir.
        "datadir": str(settings.worker_data_dir / "{conf.name}-data"),
        "web_enabled": False,
        "topic_partitions": CATALOG[0].partitions,
        "topic_replication_factor": replication,
        # The leader topic is only for faust's timers across workers; we use none, and creating
        # it has been reported to fail on Kafka 4 (faust-streaming #667).
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        # faust creates its internal topics (changelogs, repartitions) just before subscribing;
        # a topic the first assignment missed is only picked up at the next metadata refresh
        # (5 minutes by default), during which its agent reads nothing.
        "consumer_metadata_max_age_ms": 5_000,
        "producer_acks": -1,
        # No standby replicas of tables. With one, a worker that had been standby for a
        # partition and then got it as active kept it in its standby set too: the standby seek
        # moved the changelog to its end and the active recovery waited forever for records
        # (seen in tests/faults/test_settings_rebalance.py after the second handover). Without
        # standbys a new owner reads the (compacted) changelog from the start: slower to take
        # over, never stuck.
        "table_standby_replicas": 0,
    }
    options.update(overrides)
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    # The app id names the consumer group and the table changelog topics: it takes the topic
    # prefix too, so environments (and tests) sharing a cluster never share a group or a table.
    return _App(f"{settings.topic_prefix}exopipe-{worker_name}", **options)


def raw_topic(
    app: faust.App, name: str, *, partitions: int, key_type: type = bytes, **options: Any
) -> Any:
    """A topic whose keys and values stay raw bytes both ways (faust's codecs never run).

    ``options`` go to ``app.topic`` as is (``internal``, ``compacting``, ...).
    """
    return app.topic(
        name,
        key_type=key_type,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        **options,
    )


def catalog_topic(app: faust.App, settings: Settings, spec: TopicSpec) -> Any:
    """A catalog topic as raw bytes: values are CloudEvents parsed by ``topics.events``."""
    resolved = settings.topic(spec)
    return raw_topic(app, resolved.name, partitions=resolved.partitions)


def run_worker(name: str, settings: Settings) -> int:
    """Run one worker until SIGTERM or SIGINT; faust handles the signals and a clean stop."""
    module = import_module(FAUST_WORKERS[name])
    replication = asyncio.run(prepare_catalog(settings))
    app = module.create_app(settings, replication)
    app.sensors.add(PrometheusSensor(app, name))
    services: list[Any] = [RecoveryWatchService(app)]
    if settings.worker_http_port:
        services.append(OpsHttp(app, settings.worker_http_host, settings.worker_http_port))
    worker = faust.Worker(
        app,
        *services,
        loglevel=settings.log_level.lower(),
        # Text keeps faust's own formatter (it renders partition sets as tables that people and
        # tests read); JSON replaces it for log shippers.
        logging_config=logging_config(settings) if settings.log_format == "json" else None,
        quiet=True,
    )
    # At WARNING and above faust adds a terminal spinner handler and sets the root logger to
    # DEBUG, so every library's debug records would be built on the hot path (11% of the
    # settings worker's CPU under load) only for the handlers to drop them.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
