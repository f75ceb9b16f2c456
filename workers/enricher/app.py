"""``create_app(settings, replication)``: the enricher's faust app, topics, agents and timer.

The app id carries the topic prefix, so environments (and tests) sharing one cluster get their
own consumer group, internal topics and changelogs. Internal topics (by-caller, ticks) and
changelogs have the call topics' partition count, declared here, so faust never meets a
``PartitionsMismatch``. Nothing here reads the environment: everything comes from ``settings``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import PartitionsMismatch

from topics.catalog import (
    CALL_PARTITIONS,
    MISSED_CALL_ENRICHED,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_REJECTED,
)
from workers.config import Settings
from workers.enricher.agents import Enricher, Outputs, Position, now_ms
from workers.enricher.hours import parse_hours_book
from workers.enricher.outbox import InOrderAcks, collecting
from workers.enricher.records import ReadError
from workers.enricher.tables import declare_tables
from workers.errors import RetryableError
from workers.faust_app import catalog_topic, new_app, raw_topic
from workers.offset_guard import continuity_guard, guarded_events
from workers.settings_state import SettingsState

__all__ = ["app_name", "create_app", "handle_when_tables_ready"]

log = logging.getLogger(__name__)


Handler = Callable[[bytes | None, Position], Awaitable[None]]

# How long a record waits for faust to see the changelog topics it has just created.
TABLES_READY_WAITS_S = (0.5, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0)
# Records per agent handled with their outputs still on the way to Kafka (then it waits).
UNACKED_LIMIT = 1000
# Outputs are no longer awaited one by one, so they can share produce requests: a record waits
# up to 5 ms for others (one request instead of several; the broker shares the worker's cores).
# Fetches are handed on in slices, so that one topic's backlog does not keep the by-caller
# records from stage two for seconds (the continuity guard then took them for dropped ones).
# faust holds every agent back while more than 100 table changes wait in its producer buffer
# ("producer buffer full": 478 times in one bench run, about 10% of the throughput). They are
# sent before every commit either way.
CHANGELOG_BUFFER = 2000
BATCHING: dict[str, Any] = {
    "producer_linger": 0.005,
    "producer_max_batch_size": 262_144,
    "broker_max_poll_records": 1000,
}


async def handle_when_tables_ready(
    handler: Handler,
    value: bytes | None,
    where: Position,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Run ``handler``, waiting out faust's metadata at a deployment's first start.

    faust creates the tables' changelog topics just before it subscribes; until its metadata
    knows them (``consumer_metadata_max_age_ms``), a table write raises ``PartitionsMismatch``
    ("... has 0 partitions"). That is no fault of the record: the first records of a new
    deployment went to the rejected topic for ~4 s (1 run in 42 of the rebalance fault test).
    Running a handler again on the same record is safe: it writes the same entries, and its
    dedupe entry holds the record's own position, so the record is not taken for a copy.
    """
    for wait in (*TABLES_READY_WAITS_S, None):
        try:
            await handler(value, where)
            return
        except PartitionsMismatch:
            if wait is None:
                raise
            log.warning("tables not ready for the record at %s; again in %.1f s", where, wait)
            await sleep(wait)


def app_name(settings: Settings) -> str:
    """The worker name (``new_app`` puts the topic prefix into the app id)."""
    return "enricher"


def _internal_topic(app: faust.App, suffix: str) -> Any:
    return raw_topic(
        app, f"{app.conf.id}-{suffix}", key_type=str, partitions=CALL_PARTITIONS, internal=True
    )


def create_app(settings: Settings, replication: int) -> faust.App:
    hours = parse_hours_book(settings.enricher.business_hours)  # bad config fails here
    app = new_app(
        app_name(settings),
        settings,
        replication,
        broker_session_timeout=settings.enricher.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.enricher.session_timeout_seconds / 3),
        **BATCHING,
    )
    missed = catalog_topic(app, settings, WEBHOOK_MISSED_CALL)
    incoming = catalog_topic(app, settings, WEBHOOK_INCOMING_CALL)
    by_caller = _internal_topic(app, "by-caller")
    ticks = _internal_topic(app, "ticks")
    outputs = Outputs(
        by_caller=by_caller,
        enriched=catalog_topic(app, settings, MISSED_CALL_ENRICHED),
        rejected=catalog_topic(app, settings, WEBHOOK_REJECTED),
    )
    view = SettingsState(settings, client_id="exopipe-enricher-settings")
    enricher = Enricher(settings.enricher, declare_tables(app), outputs, hours, view)

    @app.task
    async def follow_settings() -> None:
        await view.run()

    @app.task
    async def roomier_changelog_buffer() -> None:
        app.producer.buffer.max_messages = CHANGELOG_BUFFER

    app.enricher = enricher  # type: ignore[attr-defined]  # for tests and the bench

    async def guarded(handler: Handler, kind: str, event: faust.EventT) -> None:
        message = event.message
        where = Position(message.topic, message.partition, message.offset)
        try:
            await handle_when_tables_ready(handler, event.value, where)
        except (KafkaError, RetryableError, PartitionsMismatch) as exc:
            # The worker's fault, not the record's: stop unacked, read it again after the restart.
            log.error("enricher cannot handle %s record at %s: %r; stopping", kind, where, exc)
            await app.crash(exc)
            raise
        except Exception as exc:  # a bug must not ack silently: keep the record, go on
            log.exception("enricher failed on %s record at %s", kind, where)
            reason = ReadError(f"enricher failed on this record: {exc!r}")
            await enricher.reject(event.value, reason, kind, where)

    def agent(topic: Any, name: str, handler: Handler, kind: str) -> None:
        async def each_event(stream: faust.StreamT) -> None:
            # Acked by hand, in order, once handled and once its outputs are on Kafka: a record
            # the continuity guard turns away (faust dropped one before it at a rebalance)
            # stays unacked and is read again.
            manual = stream.noack()
            async with (
                continuity_guard(app, settings) as guard,
                InOrderAcks(manual.ack, on_failure=app.crash, limit=UNACKED_LIMIT) as acks,
            ):
                async for event in guarded_events(manual, guard):
                    with collecting() as deliveries:
                        await guarded(handler, kind, event)
                    await acks.add(event, deliveries)

        app.agent(topic, name=name)(each_event)

    agent(incoming, "popups", enricher.on_popup, "incoming_call")
    agent(missed, "missed-calls", enricher.on_missed, "missed_call")
    agent(by_caller, "repeat-counts", enricher.on_stage, "")
    agent(ticks, "ticks", enricher.on_tick, "tick")

    owned: set[int] = set()

    @app.timer(settings.enricher.tick_seconds)
    async def send_ticks() -> None:
        """Tick each owned partition that has something due (nothing is sent when idle)."""
        name = ticks.get_topic_name()
        actives = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == name}
        if actives != owned:
            owned.clear()
            owned.update(actives)
            enricher.forget_partitions()
        now = now_ms()
        for partition in sorted(owned):
            if enricher.expiry.needs_tick(partition, now):
                await ticks.send(key="tick", value=b"", partition=partition)

    return app
