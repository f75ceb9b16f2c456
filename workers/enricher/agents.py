"""The enricher's stream logic: join by call_sid, hold for late popups, count by caller, emit.

Stage one reads ``exotel.webhook.missed_call`` and ``exotel.webhook.incoming_call`` (both
keyed by call_sid, same partition count, so partition p of both lands on the same worker with
the ``popups``/``handled``/``pending`` tables of partition p). It forwards each missed call,
with its popup if any, to the by-caller topic keyed ``app|caller``. Stage two reads that topic,
keeps the rolling count per caller and writes ``exotel.missed_call.enriched``.

Errors are decided here, never left to faust (which would ack a message whose handler raised):
a bad input record is written to ``exotel.webhook.rejected`` and acked; a Kafka failure while
producing propagates, the worker stops, and the uncommitted input is read again on restart.
Handlers never await between reading a table value and writing it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from topics.catalog import MISSED_CALL_ENRICHED, WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL
from topics.events import deterministic_id, format_time, make_event
from topics.schemas import SchemaViolation
from workers import json_codec
from workers.config import EnricherSettings
from workers.enricher.counting import record_call
from workers.enricher.expiry import ExpiryQueues
from workers.enricher.hours import HoursBook
from workers.enricher.outbox import delivered_here, publish
from workers.enricher.priority import priority
from workers.enricher.records import (
    CallEvent,
    ReadError,
    enriched_data,
    from_ms,
    read_call,
    stage_message,
)
from workers.enricher.rejects import rejected_event
from workers.enricher.tables import EnricherTables, JsonTable
from workers.settings_state import SettingsState

__all__ = ["SOURCE", "Enricher", "Outputs", "Position", "now_ms", "publish"]

log = logging.getLogger(__name__)
SOURCE = "exopipe/enricher"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Position:
    """Where a record was read: tells a redelivery (same place) from a duplicate (elsewhere)."""

    topic: str
    partition: int
    offset: int

    def token(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass
class Outputs:
    """The faust topics the handlers write to (``send(key=, value=, partition=)``)."""

    by_caller: Any
    enriched: Any
    rejected: Any


@dataclass
class Counters:
    enriched: int = 0
    duplicates: int = 0
    rejected: int = 0
    held: int = 0
    released_late: int = 0
    released_without_popup: int = 0


@dataclass
class Enricher:
    config: EnricherSettings
    tables: EnricherTables
    outputs: Outputs
    hours: HoursBook
    settings_view: SettingsState
    expiry: ExpiryQueues = field(default_factory=ExpiryQueues)
    counters: Counters = field(default_factory=Counters)
    # call_sids being forwarded right now: a popup and a tick must not both release one.
    in_flight: set[str] = field(default_factory=set)
    # Held calls a popup has forwarded, by event id, with their deliveries: the hold stays in
    # its table until its due time, when the tick forgets it once Kafka has the forwards.
    forwarded: dict[str, Awaitable[Any]] = field(default_factory=dict)

    # ---- stage one: call_sid ------------------------------------------------------------

    async def on_popup(self, value: bytes | None, where: Position) -> None:
        try:
            call = read_call(value, WEBHOOK_INCOMING_CALL)
        except ReadError as exc:
            await self.reject(value, exc, "incoming_call", where)
            return
        popup = {"ms": call.at_ms, "p": where.partition}
        self.keep(self.tables.popups, call.call_sid, popup, self.config.popup_ttl_seconds, where)
        held = self.tables.pending.get(call.call_sid)
        if held is None or call.call_sid in self.in_flight:
            return
        # Forward the held calls now; the hold itself is forgotten at its due time (on_tick),
        # once these are on Kafka: dropping it here, before their deliveries, could lose them.
        unsent = [(eid, f) for eid, f in held["calls"].items() if eid not in self.forwarded]
        if unsent:
            self.counters.released_late += 1
        for event_id, fields in unsent:
            self.forwarded[event_id] = await self.forward(CallEvent(**fields), call.at_ms)

    async def on_missed(self, value: bytes | None, where: Position) -> None:
        try:
            call = read_call(value, WEBHOOK_MISSED_CALL)
        except ReadError as exc:
            await self.reject(value, exc, "missed_call", where)
            return
        seen = self.tables.handled.get(call.call_sid) or {"ids": {}, "p": where.partition}
        first_at = seen["ids"].get(call.event_id)
        if first_at is not None and first_at != where.token():
            self.counters.duplicates += 1
            log.info("duplicate missed call %s (event %s) dropped", call.call_sid, call.event_id)
            return
        if first_at is None:
            seen["ids"][call.event_id] = where.token()
            ttl = self.config.dedupe_ttl_seconds
            self.keep(self.tables.handled, call.call_sid, seen, ttl, where)
        popup = self.tables.popups.get(call.call_sid)
        if popup is not None or self.config.grace_seconds <= 0:
            await self.forward(call, None if popup is None else popup["ms"])
            return
        # No popup yet: hold the call for the grace period (see the README's out-of-order rule).
        held = self.tables.pending.get(call.call_sid) or {"calls": {}, "p": where.partition}
        held["calls"][call.event_id] = call.to_dict()
        # A hold keeps its first due time: a call read again after a rebalance must not wait a
        # new grace while the caller's later calls, still due, go out before it.
        grace = self.config.grace_seconds
        self.keep(self.tables.pending, call.call_sid, held, grace, where, renew=False)
        self.counters.held += 1

    def keep(
        self,
        table: JsonTable,
        key: str,
        value: dict[str, Any],
        ttl: float,
        where: Position,
        *,
        renew: bool = True,
    ) -> None:
        """Store ``value`` for ``ttl`` seconds: stamp its ``due``, queue its expiry.

        ``renew=False`` keeps a ``due`` the value already has. The expiry queue is ``where``'s
        partition: only the owner of that partition ticks it.
        """
        if renew or "due" not in value:
            value["due"] = now_ms() + int(ttl * 1000)
        table.set(key, value)
        self.expiry.push(where.partition, value["due"], table.name, key)

    async def release(self, call_sid: str, held: dict[str, Any], popup_ms: int | None) -> None:
        """At a hold's due time: forward its calls a popup has not forwarded, then forget them.

        Forget only once Kafka has every forward of the hold (a crash repeats, never loses):
        the ones made here and those a popup made before. Only the calls forwarded are
        forgotten: another event of the same call may have been held while the forwards were
        awaited, and it waits for its own release.
        """
        self.in_flight.add(call_sid)
        try:
            earlier = []
            async with delivered_here():
                for event_id, fields in held["calls"].items():
                    delivery = self.forwarded.pop(event_id, None)
                    if delivery is None:
                        await self.forward(CallEvent(**fields), popup_ms)
                    else:
                        earlier.append(delivery)
            for delivery in earlier:
                await delivery
            current = self.tables.pending.get(call_sid)
            if current is not None:
                for event_id in held["calls"]:
                    current["calls"].pop(event_id, None)
                if current["calls"]:
                    self.tables.pending.set(call_sid, current)
                else:
                    self.tables.pending.delete(call_sid)
        finally:
            self.in_flight.discard(call_sid)

    async def forward(self, call: CallEvent, popup_ms: int | None) -> Awaitable[Any]:
        stage = stage_message(call, popup_ms, self.config.default_region)
        return await publish(self.outputs.by_caller, stage["key"], json_codec.dumps(stage))

    def forget_partitions(self) -> None:
        """After a rebalance: rebuild the expiry queues from the tables, and forward again.

        A hold that moved away and back may have been released by another worker meanwhile;
        a call forwarded twice is dropped by stage two as a copy (same event id).
        """
        self.expiry.forget()
        self.forwarded.clear()

    # ---- housekeeping: ticks -------------------------------------------------------------

    async def on_tick(self, value: bytes | None, where: Position) -> None:
        """Release held calls and delete expired entries of the tick's partition that are due."""
        partition = where.partition
        if partition not in self.expiry.seeded:
            self.seed(partition)
        for due in self.expiry.pop_due(partition, now_ms()):
            table = self.tables.by_name(due.table)
            value = table.get(due.key)
            if value is None or value.get("due") != due.due_ms:
                continue  # deleted or renewed since it was queued
            if table is self.tables.pending:
                if due.key not in self.in_flight:
                    if any(eid not in self.forwarded for eid in value["calls"]):
                        self.counters.released_without_popup += 1
                    popup = self.tables.popups.get(due.key)
                    await self.release(due.key, value, None if popup is None else popup["ms"])
            else:
                table.delete(due.key)

    def seed(self, partition: int) -> None:
        tables = (self.tables.popups, self.tables.handled, self.tables.pending, self.tables.callers)
        for table in tables:
            for key, value in table.items():
                if value.get("p") == partition and "due" in value:
                    self.expiry.push(partition, value["due"], table.name, key)
        self.expiry.seeded.add(partition)

    # ---- stage two: app|caller ------------------------------------------------------------

    async def on_stage(self, value: bytes | None, where: Position) -> None:
        try:
            stage = json_codec.loads(value or b"")
            key = stage["key"]
        except (json_codec.JSONDecodeError, KeyError, TypeError) as exc:
            # Only stage one writes this topic: a bad record here is a bug, not bad input.
            log.error("unreadable by-caller record at %s: %r", where, exc)
            return
        if not self.settings_view.ready.is_set():
            await self.settings_view.ready.wait()  # once, at start: know every app first
        history = self.tables.callers.get(key) or {"entries": [], "p": where.partition}
        result = record_call(
            history["entries"],
            event_id=stage["event_id"],
            t_ms=stage["missed_ms"],
            position=where.token(),
            enriched_at=format_time(datetime.now(UTC)),
            window_ms=int(self.config.repeat_window_seconds * 1000),
            slack_ms=int(self.config.late_slack_seconds * 1000),
        )
        if result.status == "duplicate":
            self.counters.duplicates += 1
            return
        if result.status == "new":
            history["entries"] = result.entries
            ttl = self.config.repeat_window_seconds + self.config.late_slack_seconds
            self.keep(self.tables.callers, key, history, ttl, where)
        await self.emit(stage, result.count, result.first_ms, result.enriched_at, where)

    async def emit(
        self, stage: dict[str, Any], count: int, first_ms: int, enriched_at: str, where: Position
    ) -> None:
        within = self.hours.within(stage["customer_id"], from_ms(stage["missed_ms"]))
        data = enriched_data(
            stage,
            count=count,
            first_ms=first_ms,
            callback_url_configured=self.settings_view.callback_url_configured(
                stage["customer_id"], stage["app_id"]
            ),
            within_business_hours=within,
            priority=priority(count, within, self.config.repeat_threshold),
            enriched_at=enriched_at,
        )
        try:
            event = make_event(
                MISSED_CALL_ENRICHED,
                data,
                source=SOURCE,
                # The same input gives the same id, so a re-emitted record is recognizable.
                event_id=deterministic_id("missed_call.enriched", stage["event_id"]),
                time=enriched_at,
                customer_id=stage["customer_id"],
                app_id=stage["app_id"],
            )
        except SchemaViolation as exc:
            log.error("enriched record for %s breaks its schema: %s", stage["call_sid"], exc)
            await self.reject(
                json_codec.dumps(stage), ReadError("enriched record invalid", exc.errors), "", where
            )
            return
        await publish(self.outputs.enriched, stage["call_sid"].encode(), event.to_bytes())
        self.counters.enriched += 1

    # ---- errors ---------------------------------------------------------------------------

    async def reject(self, value: bytes | None, exc: ReadError, kind: str, where: Position) -> None:
        self.counters.rejected += 1
        log.warning("rejected %s record at %s: %s", kind or "by-caller", where, exc.reason)
        key, event = rejected_event(value, exc.reason, exc.errors, kind=kind or None, source=SOURCE)
        await publish(self.outputs.rejected, key.encode(), event.to_bytes())
