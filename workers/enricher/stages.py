"""The enricher's stream logic: join by call_sid, hold for late popups, count by caller, emit.

Stage one reads ``exotel.webhook.missed_call`` and ``exotel.webhook.incoming_call`` (both
keyed by call_sid, same partition count, so partition p of both lands on the same worker with
the ``popups``/``handled``/``pending`` stores of partition p). It forwards each missed call,
with its popup if any, to the by-caller topic keyed ``app|caller``. Stage two reads that topic,
keeps the rolling count per caller and writes ``exotel.missed_call.enriched``.

This is a job of the batch core (``workers.plumbing.batch_worker``): every handler runs
synchronously on one record of a batch, reads and writes stores and emits records into the
batch's outbox; the core writes the outputs, then the store changes, then commits. Errors are
decided here: a bad input record is written to ``exotel.webhook.rejected``; a record that makes
a handler fail (a bug) is rejected with the error, never dropped in silence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from topics.catalog import MISSED_CALL_ENRICHED, WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL
from topics.events import deterministic_id, format_ms, make_event
from topics.schemas import SchemaViolation
from workers import json_codec
from workers.config import EnricherSettings
from workers.enricher.counting import record_call
from workers.enricher.expiry import ExpiryQueues
from workers.enricher.hours import HoursBook
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
from workers.enricher.stores import EnricherStores, JsonStore
from workers.plumbing.batch_worker import Outbox, Records
from workers.plumbing.changelog_store import ChangelogStore
from workers.settings_state import SettingsState

__all__ = ["SOURCE", "Enricher", "Position", "Topics", "now_ms"]

log = logging.getLogger(__name__)
SOURCE = "exopipe/enricher"


def now_ms() -> int:
    return int(time.time() * 1000)


class Position(NamedTuple):
    """Where a record was read: tells a redelivery (same place) from a duplicate (elsewhere)."""

    topic: str
    partition: int
    offset: int

    def token(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Topics:
    """The real names (prefix included) of what the enricher reads and writes."""

    incoming: str
    missed: str
    by_caller: str
    enriched: str
    rejected: str


@dataclass
class Counters:
    enriched: int = 0
    duplicates: int = 0
    rejected: int = 0
    held: int = 0
    released_late: int = 0
    released_without_popup: int = 0


Handler = Callable[[bytes | None, Position, Outbox], None]


@dataclass
class Enricher:
    config: EnricherSettings
    stores: EnricherStores
    names: Topics
    hours: HoursBook
    settings_view: SettingsState
    expiry: ExpiryQueues = field(default_factory=ExpiryQueues)
    counters: Counters = field(default_factory=Counters)

    # ---- the batch core's job -------------------------------------------------------------

    @property
    def topics(self) -> list[str]:
        return [self.names.incoming, self.names.missed, self.names.by_caller]

    @property
    def outputs(self) -> list[str]:
        return [self.names.by_caller, self.names.enriched, self.names.rejected]

    @property
    def changelog_stores(self) -> list[ChangelogStore]:
        return [store.store for store in self.stores.all()]

    def handle(self, records: Records, out: Outbox) -> None:
        """Popups first, then missed calls, then stage two: a popup read in the same batch as
        its missed call is joined with it, whichever Kafka gave first."""
        order: list[tuple[str, Handler, str]] = [
            (self.names.incoming, self.on_popup, "incoming_call"),
            (self.names.missed, self.on_missed, "missed_call"),
            (self.names.by_caller, self.on_stage, ""),
        ]
        for topic, handler, kind in order:
            for tp, batch in records.items():
                if tp.topic != topic:
                    continue
                for record in batch:
                    where = Position(topic, tp.partition, record.offset)
                    try:
                        handler(record.value, where, out)
                    except Exception as exc:  # a bug must not drop the record in silence
                        log.exception("enricher failed on %s record at %s", kind, where)
                        reason = ReadError(f"enricher failed on this record: {exc!r}")
                        self.reject(record.value, reason, kind, where, out)

    def tick(self, now: int, out: Outbox) -> None:
        """Release held calls and delete expired entries that are due, in every partition."""
        for partition in list(self.expiry.heaps):
            for due in self.expiry.pop_due(partition, now):
                store = self.stores.by_name(due.table)
                try:
                    value = store.get(partition, due.key)
                except KeyError:
                    continue  # the partition moved away since
                if value is None or value.get("due") != due.due_ms:
                    continue  # deleted or renewed since it was queued
                if store is self.stores.pending:
                    self.counters.released_without_popup += 1
                    popup = self.stores.popups.get(partition, due.key)
                    self.release(
                        partition, due.key, value, None if popup is None else popup["ms"], out
                    )
                else:
                    store.delete(partition, due.key)

    def assigned(self, partitions: frozenset[TopicPartition]) -> None:
        self._seed()

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self._seed()

    def _seed(self) -> None:
        """Expiry queues rebuilt from what the stores hold now (after a restore or a revoke)."""
        self.expiry.forget()
        for store in self.stores.all():
            for partition in sorted(store.store.owned):
                # A store on disk lists its entries by key, not in the order they were written:
                # ties in due time are put back in read order, never by key (holds older than
                # "o" keep key order among themselves).
                entries = sorted(
                    (value["due"], value.get("o", -1), key)
                    for key, value in store.items(partition)
                    if "due" in value
                )
                for due, _, key in entries:
                    self.expiry.push(partition, due, store.name, key)

    # ---- stage one: call_sid ------------------------------------------------------------

    def on_popup(self, value: bytes | None, where: Position, out: Outbox) -> None:
        try:
            call = read_call(value, WEBHOOK_INCOMING_CALL)
        except ReadError as exc:
            self.reject(value, exc, "incoming_call", where, out)
            return
        p = where.partition
        popup = {"ms": call.at_ms, "p": p}
        self.keep(self.stores.popups, p, call.call_sid, popup, self.config.popup_ttl_seconds)
        held = self.stores.pending.get(p, call.call_sid)
        if held is not None:
            # Late popup: its held calls go out now, joined. Forgetting the hold in the same
            # batch is safe: the core writes store changes only once the forwards are on Kafka.
            self.counters.released_late += 1
            self.release(p, call.call_sid, held, call.at_ms, out)

    def on_missed(self, value: bytes | None, where: Position, out: Outbox) -> None:
        try:
            call = read_call(value, WEBHOOK_MISSED_CALL)
        except ReadError as exc:
            self.reject(value, exc, "missed_call", where, out)
            return
        p = where.partition
        seen = self.stores.handled.get(p, call.call_sid) or {"ids": {}, "p": p}
        first_at = seen["ids"].get(call.event_id)
        if first_at is not None and first_at != where.token():
            self.counters.duplicates += 1
            log.info("duplicate missed call %s (event %s) dropped", call.call_sid, call.event_id)
            return
        if first_at is None:
            seen["ids"][call.event_id] = where.token()
            self.keep(self.stores.handled, p, call.call_sid, seen, self.config.dedupe_ttl_seconds)
        popup = self.stores.popups.get(p, call.call_sid)
        if popup is not None or self.config.grace_seconds <= 0:
            self.forward(call, None if popup is None else popup["ms"], out)
            return
        # No popup yet: hold the call for the grace period (see the README's out-of-order rule).
        # "o": where the hold began in its partition, so holds due in the same millisecond go
        # out in the order they were read, also after a restore (see ``_seed``).
        held = self.stores.pending.get(p, call.call_sid) or {"calls": {}, "p": p, "o": where.offset}
        held["calls"][call.event_id] = call.to_dict()
        # A hold keeps its first due time: a call read again after a rebalance must not wait a
        # new grace while the caller's later calls, still due, go out before it.
        grace = self.config.grace_seconds
        self.keep(self.stores.pending, p, call.call_sid, held, grace, renew=False)
        self.counters.held += 1

    def keep(
        self,
        store: JsonStore,
        partition: int,
        key: str,
        value: dict[str, Any],
        ttl: float,
        *,
        renew: bool = True,
    ) -> None:
        """Store ``value`` for ``ttl`` seconds: stamp its ``due``, queue its expiry.

        ``renew=False`` keeps a ``due`` the value already has.
        """
        if renew or "due" not in value:
            value["due"] = now_ms() + int(ttl * 1000)
        store.set(partition, key, value)
        self.expiry.push(partition, value["due"], store.name, key)

    def release(
        self, partition: int, call_sid: str, held: dict[str, Any], popup_ms: int | None, out: Outbox
    ) -> None:
        """Forward a hold's calls, in the order they were held, and forget the hold."""
        for fields in held["calls"].values():
            self.forward(CallEvent(**fields), popup_ms, out)
        self.stores.pending.delete(partition, call_sid)

    def forward(self, call: CallEvent, popup_ms: int | None, out: Outbox) -> None:
        stage = stage_message(call, popup_ms, self.config.default_region)
        # The record's enriched_at, fixed here: stage two may run again on this record after a
        # crash (its store changes are written after its outputs), and must write it the same.
        stage["handled_ms"] = now_ms()
        out.emit(self.names.by_caller, stage["key"].encode(), json_codec.dumps(stage))

    # ---- stage two: app|caller ------------------------------------------------------------

    def on_stage(self, value: bytes | None, where: Position, out: Outbox) -> None:
        try:
            stage = json_codec.loads(value or b"")
            key = stage["key"]
        except (json_codec.JSONDecodeError, KeyError, TypeError) as exc:
            # Only stage one writes this topic: a bad record here is a bug, not bad input.
            log.error("unreadable by-caller record at %s: %r", where, exc)
            return
        p = where.partition
        history = self.stores.callers.get(p, key) or {"entries": [], "p": p}
        result = record_call(
            history["entries"],
            event_id=stage["event_id"],
            t_ms=stage["missed_ms"],
            position=where.token(),
            # Records a faust enricher wrote have no handled_ms: those take the time now.
            enriched_at=format_ms(stage.get("handled_ms") or now_ms()),
            window_ms=int(self.config.repeat_window_seconds * 1000),
            slack_ms=int(self.config.late_slack_seconds * 1000),
        )
        if result.status == "duplicate":
            self.counters.duplicates += 1
            return
        if result.status == "new":
            history["entries"] = result.entries
            ttl = self.config.repeat_window_seconds + self.config.late_slack_seconds
            self.keep(self.stores.callers, p, key, history, ttl)
        self.emit(stage, result.count, result.first_ms, result.enriched_at, where, out)

    def emit(
        self,
        stage: dict[str, Any],
        count: int,
        first_ms: int,
        enriched_at: str,
        where: Position,
        out: Outbox,
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
            reason = ReadError("enriched record invalid", exc.errors)
            self.reject(json_codec.dumps(stage), reason, "", where, out)
            return
        out.emit(self.names.enriched, stage["call_sid"].encode(), event.to_bytes())
        self.counters.enriched += 1

    # ---- errors ---------------------------------------------------------------------------

    def reject(
        self, value: bytes | None, exc: ReadError, kind: str, where: Position, out: Outbox
    ) -> None:
        self.counters.rejected += 1
        log.warning("rejected %s record at %s: %s", kind or "by-caller", where, exc.reason)
        key, event = rejected_event(value, exc.reason, exc.errors, kind=kind or None, source=SOURCE)
        out.emit(self.names.rejected, key.encode(), event.to_bytes())
