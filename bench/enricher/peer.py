"""The enricher's job written with Quix Streams 3.x, for the bench's ``enricher_peer`` path only.

    python -m bench.enricher.peer        # reads EXOPIPE_* like the worker, until SIGTERM

Idiomatic Quix: the popup and missed-call topics concatenated into one dataframe (both keyed
by call_sid, co-partitioned), a stateful ``apply`` that keeps the popup and the seen event ids
per call_sid in Quix's RocksDB state, ``group_by`` the caller key (Quix's own repartition
topic), a second stateful ``apply`` with the caller's 24 h history, and ``to_topic``. State
changelogs, rebalances and commits are Quix's (at least once, its default 5 s commit interval).
The parsing, counting and record building are the project's own functions, so the bench
compares the frameworks, not two implementations of the logic.

What it leaves out (bench/README.md says so too): no hold for a late popup (Quix has no
processing-time timers; the bench produces each popup before its missed call), no rejected
records (the bench sends none), no settings view (``callback_url_configured`` is null).
A bench-only dependency: no worker imports this module or quixstreams.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from typing import Any

from quixstreams import Application, State, message_context

from topics.catalog import (
    MISSED_CALL_ENRICHED,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
)
from topics.events import deterministic_id, format_ms, make_event
from workers.config import Settings
from workers.enricher.counting import record_call
from workers.enricher.hours import HoursBook, parse_hours_book
from workers.enricher.priority import priority
from workers.enricher.records import ReadError, enriched_data, from_ms, read_call, stage_message
from workers.enricher.stages import SOURCE, now_ms

__all__ = ["build_app", "stage_one", "stage_two"]

log = logging.getLogger("bench.enricher.peer")


def stage_one(
    value: bytes, topic_is_popup: bool, position: str, state: State, region: str
) -> list[dict[str, Any]]:
    """By call_sid: remember the popup; forward each new missed call joined with it."""
    try:
        call = read_call(value, WEBHOOK_INCOMING_CALL if topic_is_popup else WEBHOOK_MISSED_CALL)
    except ReadError as exc:
        log.warning("peer: refused a record: %s", exc.reason)
        return []
    if topic_is_popup:
        state.set("popup", call.at_ms)
        return []
    seen: dict[str, str] = state.get("seen", {})
    first_at = seen.get(call.event_id)
    if first_at is not None and first_at != position:
        return []  # a duplicate
    if first_at is None:
        seen[call.event_id] = position
        state.set("seen", seen)
    return [stage_message(call, state.get("popup"), region)]


def stage_two(
    stage: dict[str, Any],
    position: str,
    state: State,
    hours: HoursBook,
    window_s: float,
    slack_s: float,
    threshold: int,
) -> dict[str, Any] | None:
    """By caller: the rolling count, then the enriched CloudEvent (as a dict)."""
    entries = state.get("entries", [])
    result = record_call(
        entries,
        event_id=stage["event_id"],
        t_ms=stage["missed_ms"],
        position=position,
        enriched_at=format_ms(now_ms()),
        window_ms=int(window_s * 1000),
        slack_ms=int(slack_s * 1000),
    )
    if result.status == "duplicate":
        return None
    if result.status == "new":
        state.set("entries", result.entries)
    within = hours.within(stage["customer_id"], from_ms(stage["missed_ms"]))
    data = enriched_data(
        stage,
        count=result.count,
        first_ms=result.first_ms,
        callback_url_configured=None,
        within_business_hours=within,
        priority=priority(result.count, within, threshold),
        enriched_at=result.enriched_at,
    )
    event = make_event(
        MISSED_CALL_ENRICHED,
        data,
        source=SOURCE,
        event_id=deterministic_id("missed_call.enriched", stage["event_id"]),
        time=result.enriched_at,
        customer_id=stage["customer_id"],
        app_id=stage["app_id"],
    )
    return event.to_dict()


def build_app(settings: Settings, state_dir: str) -> Application:
    config = settings.enricher
    hours = parse_hours_book(config.business_hours)
    app = Application(
        broker_address=settings.kafka_bootstrap,
        consumer_group=f"{settings.topic_prefix}exopipe-enricher-peer",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        processing_guarantee="at-least-once",
        loglevel="INFO",
    )
    raw = {"key_deserializer": "str", "value_deserializer": "bytes"}
    popups = app.topic(settings.topic(WEBHOOK_INCOMING_CALL).name, **raw)
    missed = app.topic(settings.topic(WEBHOOK_MISSED_CALL).name, **raw)
    enriched = app.topic(
        settings.topic(MISSED_CALL_ENRICHED).name, key_serializer="str", value_serializer="json"
    )

    def by_call(value: bytes, key: Any, timestamp: int, headers: Any, state: State) -> Any:
        ctx = message_context()
        position = f"{ctx.partition}:{ctx.offset}"
        return stage_one(value, ctx.topic == popups.name, position, state, config.default_region)

    def by_caller(value: dict[str, Any], key: Any, timestamp: int, headers: Any, state: State):
        ctx = message_context()
        return stage_two(
            value,
            f"{ctx.partition}:{ctx.offset}",
            state,
            hours,
            config.repeat_window_seconds,
            config.late_slack_seconds,
            config.repeat_threshold,
        )

    calls = app.dataframe(popups).concat(app.dataframe(missed))
    stages = calls.apply(by_call, stateful=True, metadata=True, expand=True)
    counted = stages.group_by(lambda stage: stage["key"], name="by-caller")
    out = counted.apply(by_caller, stateful=True, metadata=True).filter(lambda v: v is not None)
    out.to_topic(enriched, key=lambda event: event["data"]["call_sid"])
    return app


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="exopipe-peer-state-") as state_dir:
        app = build_app(settings, state_dir)
        log.info("peer ready: %s, at %s", app.config.consumer_group, datetime.now(UTC))
        app.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
