"""Where an accepted webhook goes: Kafka within a bound, else the spool; and the spool's drain.

The guarantee: :meth:`Sink.deliver` returns only once the record is acknowledged by Kafka
(idempotent producer, acks=all) or fsynced to the spool; otherwise it raises and the caller must
not answer 2xx. A caller may let a record pass the spool's bound by ``headroom`` bytes: a live
stream's last record, so that a stream cut off by a full spool still says how it ended.

Order per call: every record gets a sequence number on arrival. While the spool holds anything
(or a spool write is in progress), new records go to the spool too, behind it. The drain sends
the spool oldest first and never passes a lower sequence number that is still being decided, so
a later event for a call never overtakes a spooled one.

No duplicates from the timeout: a send that missed the bound is not cancelled; it stays in the
producer and its delivery future is kept with the spool entry. The drain never sends an entry
again while that future is pending: when it succeeds the entry is deleted, when it fails the
entry is sent again. The idempotent producer retries a batch until the broker takes it (it does
not expire batches whose partition leader is known), so within one process each record has at
most one copy in flight. Across a restart, sends still pending at exit die with the process;
they were not acknowledged, so when the broker was down they never reached it and the spool's
copy is the only one (exactly once). If a broker wrote a batch but its acknowledgement was lost
just before exit, the spool sends it again: at least once, and the deterministic CloudEvent id
lets consumers drop the repeat.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from workers.ingress.metrics import IngressMetrics
from workers.ingress.spool import Spool, SpoolFull, SpoolRecord
from workers.retry import RetryPolicy

__all__ = ["Sink", "SpoolFull"]

log = logging.getLogger(__name__)

# Spooled records sent ahead before waiting for their acknowledgements (order is kept by the
# idempotent producer, per partition).
_DRAIN_WINDOW = 256
# Backoff between reconnects and failed drain rounds; attempts are not bounded here because
# the broker may be away for hours and the spool must still drain when it returns.
_BACKOFF = RetryPolicy(max_attempts=1_000_000, base_delay=0.2, max_delay=5.0)

ProducerFactory = Callable[[], AIOKafkaProducer]


@dataclass
class _Entry:
    record: SpoolRecord
    # The one send of this record that may still be in the producer, if any.
    inflight: asyncio.Future[Any] | None = None


class Sink:
    """Delivers records to Kafka or the spool; owns the producer and the drain task."""

    def __init__(
        self,
        spool: Spool,
        producer_factory: ProducerFactory,
        metrics: IngressMetrics,
        *,
        produce_timeout_s: float,
    ) -> None:
        self._spool = spool
        self._factory = producer_factory
        self._metrics = metrics
        self._timeout = produce_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._entries: dict[int, _Entry] = {}
        self._order: list[int] = []  # sequence numbers of _entries, ascending
        self._open: set[int] = set()  # arrived, not yet acked nor spooled
        self._writing = 0
        self._orphans: set[asyncio.Future[Any]] = set()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._broker_ok = False
        self._rng = random.Random()  # noqa: S311 - backoff jitter

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        for record in await asyncio.to_thread(self._spool.open):
            self._add(_Entry(record))
        if self._order:
            log.info("spool holds %d records from a previous run; draining", len(self._order))
        self._tasks = [
            asyncio.create_task(self._connect(), name="ingress-connect"),
            asyncio.create_task(self._drain(), name="ingress-drain"),
        ]

    async def close(self, timeout_s: float) -> None:
        """Stop draining, give pending sends until the deadline, stop the producer, unlock."""
        deadline = time.monotonic() + timeout_s
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        pending = {e.inflight for e in self._entries.values() if e.inflight is not None}
        pending |= self._orphans
        pending = {f for f in pending if not f.done()}
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        for entry in list(self._entries.values()):
            if _succeeded(entry.inflight):
                await self._remove(entry)
        if self._producer is not None:
            try:
                await asyncio.wait_for(
                    self._producer.stop(), timeout=max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                log.warning(
                    "Kafka did not take every pending record before shutdown; %d stay in the "
                    "spool and are sent after restart",
                    len(self._entries),
                )
        self._spool.close()

    # -- state ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Producer connected and answering, and room in the spool."""
        return self._producer is not None and self._broker_ok and not self._spool.full

    @property
    def spool_full(self) -> bool:
        return self._spool.full

    @property
    def depth(self) -> int:
        return len(self._entries)

    # -- delivery ---------------------------------------------------------------------------

    async def deliver(self, topic: str, key: str, value: bytes, *, headroom: int = 0) -> str:
        """``"kafka"`` once acked, ``"spooled"`` once fsynced; raises :class:`SpoolFull`."""
        started = time.monotonic()
        seq = self._spool.reserve()
        self._open.add(seq)
        try:
            if self._producer is None or self._entries or self._writing:
                await self._to_spool(seq, topic, key, value, inflight=None, headroom=headroom)
                outcome = "spooled"
            else:
                outcome = await self._try_kafka(seq, topic, key, value, headroom)
        finally:
            self._open.discard(seq)
            self._changed.set()
        self._metrics.produced(outcome, time.monotonic() - started)
        return outcome

    async def _try_kafka(self, seq: int, topic: str, key: str, value: bytes, headroom: int) -> str:
        producer = self._producer
        assert producer is not None  # noqa: S101 - deliver() checked, nothing awaited since
        delivery: asyncio.Future[Any] | None = None
        try:
            async with asyncio.timeout(self._timeout):
                # The enqueue runs in the request's own task, not in a task of its own: the
                # record joins the batch being built now instead of one loop turn later (a
                # quarter more webhooks/s at 32 connections). Cancelled by the bound while it
                # waits (metadata, a full batch), it leaves nothing in the producer.
                delivery = await producer.send(topic, value, key=key.encode())
                # shield: the bound stops the wait, never the send (see "No duplicates").
                await asyncio.shield(delivery)
        except Exception:  # noqa: S110 - the bound, or Kafka refused: decided below
            pass
        if _succeeded(delivery):
            self._broker_ok = True
            return "kafka"
        self._broker_ok = False
        inflight = delivery if delivery is not None and not delivery.done() else None
        try:
            await self._to_spool(seq, topic, key, value, inflight=inflight, headroom=headroom)
        except BaseException:
            if inflight is not None:
                # Not ours to track any more, but it may still be delivered: wait for it at exit.
                self._orphans.add(inflight)
                inflight.add_done_callback(self._orphans.discard)
            raise
        return "spooled"

    async def _send(self, topic: str, key: str, value: bytes) -> Any:
        producer = self._producer
        if producer is None:
            raise KafkaError("producer not connected")
        delivery = await producer.send(topic, value, key=key.encode())
        return await delivery

    async def _to_spool(
        self,
        seq: int,
        topic: str,
        key: str,
        value: bytes,
        *,
        inflight: asyncio.Future[Any] | None,
        headroom: int = 0,
    ) -> None:
        self._writing += 1
        try:
            record = await self._spool.append(seq, topic, key, value, headroom=headroom)
        finally:
            self._writing -= 1
        self._add(_Entry(record, inflight))
        self._metrics.spooled.inc()

    def _add(self, entry: _Entry) -> None:
        seq = entry.record.seq
        self._entries[seq] = entry
        bisect.insort(self._order, seq)
        if entry.inflight is not None:
            entry.inflight.add_done_callback(_retrieve)
        self._update_gauges()
        self._changed.set()

    async def _remove(self, entry: _Entry) -> None:
        seq = entry.record.seq
        if self._entries.pop(seq, None) is None:
            return
        self._order.remove(seq)
        await self._spool.remove(entry.record)
        self._metrics.drained.inc()
        self._update_gauges()

    def _update_gauges(self) -> None:
        self._metrics.spool_depth.set(len(self._entries))
        self._metrics.spool_bytes.set(self._spool.bytes_used)

    # -- background tasks -------------------------------------------------------------------

    async def _connect(self) -> None:
        """Start a producer, retrying for as long as it takes (the ingress runs without one)."""
        attempt = 0
        while True:
            producer = self._factory()
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                attempt += 1
                wait = _BACKOFF.delay(attempt, rng=self._rng)
                log.warning(
                    "Kafka not reachable (attempt %d), retrying in %.2fs: %s", attempt, wait, exc
                )
                await asyncio.sleep(wait)
                continue
            self._producer = producer
            self._broker_ok = True
            self._changed.set()
            log.info("Kafka producer connected")
            return

    def _window(self) -> list[_Entry]:
        """Spooled entries ready to send, oldest first, stopping at an undecided earlier arrival."""
        lowest_open = min(self._open) if self._open else None
        window = []
        for seq in self._order[:_DRAIN_WINDOW]:
            if lowest_open is not None and lowest_open < seq:
                break
            window.append(self._entries[seq])
        return window

    async def _drain(self) -> None:
        failures = 0
        while True:
            window = self._window() if self._producer is not None else []
            if not window:
                self._changed.clear()
                await self._changed.wait()
                continue
            for entry in window:
                if entry.inflight is None:
                    entry.inflight = asyncio.ensure_future(
                        self._send(entry.record.topic, entry.record.key, entry.record.value)
                    )
                    entry.inflight.add_done_callback(_retrieve)
            failed = False
            for entry in window:
                inflight = entry.inflight
                assert inflight is not None  # noqa: S101 - set just above
                # asyncio.wait, not await: cancelling the drain at shutdown must not cancel a
                # send that may still reach the broker.
                await asyncio.wait({inflight})
                if _succeeded(inflight):
                    await self._remove(entry)
                else:
                    entry.inflight = None
                    failed = True
            if failed:
                self._broker_ok = False
                failures += 1
                wait = _BACKOFF.delay(failures, rng=self._rng)
                log.warning("spool drain: Kafka refused records, retrying in %.2fs", wait)
                await asyncio.sleep(wait)
            else:
                self._broker_ok = True
                failures = 0


def _succeeded(future: asyncio.Future[Any] | None) -> bool:
    return (
        future is not None
        and future.done()
        and not future.cancelled()
        and future.exception() is None
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a send's exception as seen: a failure is handled by the drain, not logged by asyncio."""
    if not future.cancelled():
        future.exception()
